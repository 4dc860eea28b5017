"""The suite's own guard: every test has a time limit, so a slow path fails by name."""

from __future__ import annotations

import pytest


def test_every_test_has_a_timeout(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.hasplugin("timeout")  # pytest-timeout, in the dev extra
    assert float(pytestconfig.getini("timeout")) == 120
