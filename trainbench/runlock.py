"""One writer per run directory: an exclusive ``flock`` on ``RUN/.lock``.

The kernel releases the lock when its process dies (even by ``kill -9``), so a lock is
never stale. The file names the holder (pid, host, start time, command) for the error the
second process gets.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import IO

from trainbench.errors import InputError
from trainbench.results import now

try:
    import fcntl
except ImportError:  # not POSIX: no locking (documented)
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


def holder(run_path: Path) -> str:
    """Who holds (or last held) the lock, in words."""
    try:
        info = json.loads((run_path / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return "an unknown process"
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, since {info.get('since', '?')}, "
            f"running '{info.get('command', '?')}'")


def busy_message(run_path: Path) -> str:
    return (f"{run_path} is being written by another trainbench process ({holder(run_path)}). "
            "Wait for it to finish, stop it, or use another --out.")


class RunLock:
    def __init__(self, run_path: Path) -> None:
        self.run_path = run_path
        self._f: IO[str] | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise InputError naming the holder."""
        self.run_path.mkdir(parents=True, exist_ok=True)
        f = (self.run_path / LOCK_NAME).open("a+")
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                raise InputError(busy_message(self.run_path)) from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now(),
                            "command": " ".join(sys.argv)}))
        f.flush()
        self._f = f
        return self

    def release(self) -> None:
        if self._f is not None:
            self._f.close()  # closing the descriptor releases the flock
            self._f = None


def is_locked(run_path: Path) -> bool:
    """Whether another process holds the run's lock right now."""
    if fcntl is None or not (run_path / LOCK_NAME).exists():
        return False
    with (run_path / LOCK_NAME).open("a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return False
