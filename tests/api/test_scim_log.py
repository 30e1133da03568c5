"""The SCIM log's storage: newest first, paged by key, pruned after SCIM_LOG_KEEP_DAYS."""

from datetime import timedelta

from sqlmodel import func, select

from engine.apps.integrations import create_integration
from engine.constants import SCIM_LOG_KEEP_DAYS, SCIM_LOG_PAGE_SIZE
from engine.scim.log import log_entry, prune, read_log
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import ScimRequest, utcnow
from tests.harness import ROOT

LINES = SCIM_LOG_PAGE_SIZE * 2 + 7
OLD = 5


async def test_the_log_pages_by_key_and_forgets_old_lines(database: Database) -> None:
    """Every line once across the pages, newest first; lines past retention are pruned."""
    settings = Settings(flows_dir=ROOT / "flows")
    async with database.session() as session:
        integration, _token = await create_integration(
            session, settings, app="acme", base_url="http://127.0.0.1:9"
        )
        now = utcnow()
        for n in range(LINES):
            line = log_entry(integration.id, "PATCH", f"Users/u{n}", 200, None, [])
            line.at = now - timedelta(seconds=n)
            session.add(line)
        for n in range(OLD):
            line = log_entry(integration.id, "GET", "Users", 200, None, [])
            line.at = now - timedelta(days=SCIM_LOG_KEEP_DAYS, seconds=n + 1)
            session.add(line)
        await session.commit()

        seen: list[str] = []
        before = None
        first = await read_log(session, integration.id)
        assert (first.lines[0].path, first.lines[0].identity_id) == ("/Users/u0", "u0")
        while True:
            page = await read_log(session, integration.id, before=before)
            assert len(page.lines) <= SCIM_LOG_PAGE_SIZE
            seen += [line.path for line in page.lines]
            if page.next_before is None:
                break
            before = page.next_before
        assert seen[:LINES] == [f"/Users/u{n}" for n in range(LINES)]
        assert len(seen) == LINES + OLD

        await prune(session, integration.id)
        await session.commit()
        query = select(func.count()).where(ScimRequest.integration_id == integration.id)
        assert (await session.exec(query)).one() == LINES


async def test_a_path_with_a_nul_is_logged_without_it(database: Database) -> None:
    """An IdP's raw id may carry NUL, which PostgreSQL's text refuses: the line still lands."""
    settings = Settings(flows_dir=ROOT / "flows")
    async with database.session() as session:
        integration, _token = await create_integration(
            session, settings, app="acme", base_url="http://127.0.0.1:9"
        )
        session.add(log_entry(integration.id, "GET", "Users/a\x00b", 404, None, []))
        await session.commit()
        page = await read_log(session, integration.id)
        assert [(line.path, line.identity_id) for line in page.lines] == [("/Users/ab", "ab")]
