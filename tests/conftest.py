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
