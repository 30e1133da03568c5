"""`extract_rows`: read one record per row with a locator per column, page after page."""

from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from engine.automation.browser import BrowserPool
from engine.automation.language import Step
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import goto, html, run_flow, serve

USERS = [("u1", "a@x"), ("u2", "b@x"), ("u3", "c@x"), ("u4", "")]
PER_PAGE = 2
COLUMNS = {"key": {"css": "td:nth-child(1)"}, "email": {"css": "td.email"}}


async def users(request: Request) -> Response:
    """Serve the users two per page, with a Next link while more remain."""
    page = int(request.query_params.get("page", "1"))
    shown = USERS[(page - 1) * PER_PAGE : page * PER_PAGE]
    rows = "".join(
        f"<tr class=row><td>{key}</td>" + (f"<td class=email>{mail}</td>" if mail else "")
        for key, mail in shown
    )
    more = page * PER_PAGE < len(USERS)
    link = f"<a href='/users?page={page + 1}'>Next</a>" if more else ""
    return HTMLResponse(f"<title>t</title><table>{rows}</table>{link}")


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve the pages of this file."""
    routes = {
        "/users": users,
        "/rows": html(
            """<table><tr class=row><td>u1</td><td>a@x</td></tr>
            <tr class=row><td>u2</td><td>b@x</td></tr></table>"""
        ),
    }
    with serve(routes) as server:  # type: ignore[arg-type]
        yield server


async def test_rows_are_read_into_a_variable(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Each row becomes a record of its columns, in the page's order."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/rows"),
            {
                "extract_rows": {"css": "tr.row"},
                "columns": {"key": {"css": "td:nth-child(1)"}, "email": {"css": "td:nth-child(2)"}},
                "into": "users",
            },
        ],
    )
    assert ran.failure is None and ran.outcome is not None
    assert ran.outcome.rows["users"] == [
        {"key": "u1", "email": "a@x"},
        {"key": "u2", "email": "b@x"},
    ]
    assert all(s.status == "ok" for s in ran.sink.results)


async def test_next_page_is_followed_until_it_is_gone(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Two pages of two rows: all four are read; a missing cell reads as empty."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/users"),
            {
                "extract_rows": {"css": "tr.row"},
                "columns": COLUMNS,
                "next_page": {"role": "link", "name": "Next"},
                "into": "users",
            },
        ],
    )
    assert ran.failure is None and ran.outcome is not None
    assert ran.outcome.rows["users"] == [{"key": k, "email": m} for k, m in USERS]


def test_extract_rows_needs_columns_and_into() -> None:
    """Rows with no columns, or read into nothing, are refused when the flow is read."""
    with pytest.raises(ValidationError, match="extract_rows needs columns"):
        Step.model_validate({"extract_rows": {"css": "tr"}, "into": "users"})
    with pytest.raises(ValidationError, match="extract_rows needs into"):
        Step.model_validate({"extract_rows": {"css": "tr"}, "columns": COLUMNS})
