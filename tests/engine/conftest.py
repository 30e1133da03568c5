"""A real Chromium for the runner's tests."""

from collections.abc import AsyncIterator

import pytest

from engine.automation.browser import BrowserPool
from engine.settings import Settings


@pytest.fixture(scope="module")
async def browsers() -> AsyncIterator[BrowserPool]:
    """Run one Chromium for a test module."""
    pool = BrowserPool(Settings(isolated_dns=True, step_timeout_ms=2000))
    await pool.start()
    yield pool
    await pool.stop()
