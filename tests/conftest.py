"""Shared test helpers."""

from __future__ import annotations

import pytest


class StopAfter:
    """Stands in for the SIGINT handler: asks the loop to stop after step ``k`` (the loop
    reads ``requested`` once per step)."""

    signum = 2
    exit_code = 130

    def __init__(self, k: int) -> None:
        self.k, self.calls = k, 0

    @property
    def requested(self) -> bool:
        self.calls += 1
        return self.calls >= self.k


@pytest.fixture
def stop_after() -> type[StopAfter]:
    """``stop_after(k)``: a stand-in for the SIGINT handler that stops a run after step k."""
    return StopAfter


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test`: `-n 2 --dist loadscope`, so each test file, or test
    class, runs on one worker and its module-scoped fixtures are made once) each worker
    process gets one of the cores: one torch thread, and one for the processes it starts
    (launchers, Ray workers)."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)
