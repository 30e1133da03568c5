"""One Chromium for every flow-language test file: none of them breaks its browser."""

from collections.abc import AsyncIterator

import pytest

from engine.automation.browser import BrowserPool
from engine.settings import Settings


@pytest.fixture(scope="session")
async def browsers() -> AsyncIterator[BrowserPool]:
    """Run one Chromium for the flow-language tests, each test in a context of its own."""
    pool = BrowserPool(Settings(isolated_dns=True, step_timeout_ms=2000))
    await pool.start()
    yield pool
    await pool.stop()
