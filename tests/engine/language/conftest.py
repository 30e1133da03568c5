"""One Chromium for every flow-language test file: none of them breaks its browser."""

from collections.abc import AsyncIterator, Iterator

import pytest

from engine.automation.browser import BrowserPool
from engine.settings import Settings
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import serve


@pytest.fixture(scope="session")
async def browsers() -> AsyncIterator[BrowserPool]:
    """Run one Chromium for the flow-language tests, each test in a context of its own."""
    pool = BrowserPool(Settings(isolated_dns=True, step_timeout_ms=2000))
    await pool.start()
    yield pool
    await pool.stop()


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest) -> Iterator[ThreadedServer]:
    """Serve the PAGES of the test file asking; a file with other routes defines its own."""
    with serve(request.module.PAGES) as server:
        yield server
