"""Every browser test needs Chromium, node and the built frontend (tests/e2e/support.py)."""

from __future__ import annotations

import os

import pytest

from tests.e2e.support import missing_prerequisite


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    reason = missing_prerequisite()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run under CI=true: {reason}")
    pytest.skip(reason)
