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


# Under `pytest -n 2 --dist loadscope --no-loadscope-reorder` (`make test`) each test file,
# or test class, runs on one worker (its module-scoped fixtures, such as the DDP jobs or the
# Ray runtime, are made once), and files start in collection order (xdist's default order,
# most tests first, started the few-test, minutes-long files last: a 3-minute tail on one
# worker). These, the longest (about 1-3 minutes each on a 2-core CPU), are moved to the front
# so that the two workers finish together.
LONGEST_FIRST = ("tests/test_run_cli.py::TestSmokeCifar10", "tests/test_distributed.py",
                 "tests/test_run_cli.py::TestSmokeGpuScale", "tests/test_executors.py",
                 "tests/test_budgets_fidelity.py", "tests/data/test_stream.py", "tests/test_run_cli.py",
                 "tests/test_benchmarks.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {scope: i for i, scope in enumerate(LONGEST_FIRST)}
    # xdist's scope of a test: its nodeid up to the last '::' (the class, else the file)
    items.sort(key=lambda item: rank.get(item.nodeid.rsplit("::", 1)[0], len(rank)))


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`-n 2`, as `make test` runs) each worker process gets one of the
    cores: one torch thread, and one for the processes it starts (launchers, Ray workers)."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)
