"""`extract_rows` follows "Load more" (append) and "Next" (replace), waits for the new rows,
drops repeats by a key column and reads attributes as well as text."""

import asyncio
from collections.abc import Iterator

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine.automation.browser import BrowserPool
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import goto, html, run_flow, serve

TOTAL = 23
BATCH = 5
DELAY_S = 0.3
ROW_JS = """
function row(item) {
  const tr = document.createElement('tr');
  tr.className = 'row';
  tr.dataset.id = item.id;
  tr.innerHTML = '<td class=name></td><td><a></a></td>' +
    '<td><button aria-haspopup=menu>Actions</button>' +
    '<div role=menu hidden><a role=menuitem>Open</a></div></td>';
  tr.querySelector('.name').textContent = item.name;
  tr.querySelector('td a').textContent = item.email;
  tr.querySelector('td a').href = '/people/' + item.id;
  tr.querySelector('[role=menuitem]').href = '/people/' + item.id + '/edit';
  return tr;
}
"""
LOAD_MORE = html(
    "<table><tbody id=rows></tbody></table><button id=more>Load more</button><script>"
    + ROW_JS
    + """
    let offset = 0;
    async function more() {
      const r = await fetch('/api/items?offset=' + offset);
      const page = await r.json();
      page.items.forEach(i => document.getElementById('rows').appendChild(row(i)));
      offset = page.next;
      if (page.next === null) document.getElementById('more').remove();
    }
    more();
    document.getElementById('more').onclick = more;
    </script>"""
)
NEXT = html(
    "<table><tbody id=rows></tbody></table><button id=next>Next</button><script>"
    + ROW_JS
    + """
    let offset = 0;
    async function show() {
      const r = await fetch('/api/items?overlap=0&offset=' + offset);
      const page = await r.json();
      const body = document.getElementById('rows');
      body.replaceChildren(...page.items.map(row));
      offset = page.next;
      const next = document.getElementById('next');
      if (page.next === null) next.setAttribute('aria-disabled', 'true');
    }
    show();
    document.getElementById('next').onclick = () => {
      if (document.getElementById('next').getAttribute('aria-disabled') !== 'true') show();
    };
    </script>"""
)
STUCK = html(
    "<table><tr class=row data-id=p0><td class=name>Only</td></tr></table>"
    "<button>Load more</button>"
)


async def items(request: Request) -> Response:
    """Answer a batch of people after a delay; each batch repeats the last one's final row."""
    await asyncio.sleep(DELAY_S)
    offset = int(request.query_params.get("offset", "0"))
    overlap = request.query_params.get("overlap", "1") == "1"
    start = max(offset - 1, 0) if overlap else offset
    people = [
        {"id": f"p{n}", "name": f"Person {n}", "email": f"person{n}@example.com"}
        for n in range(start, min(offset + BATCH, TOTAL))
    ]
    following = offset + BATCH if offset + BATCH < TOTAL else None
    return JSONResponse({"items": people, "next": following})


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve a list behind Load more, a list behind Next, and a Load more that adds nothing."""
    routes = {"/more": LOAD_MORE, "/next": NEXT, "/stuck": STUCK, "/api/items": items}
    with serve(routes) as server:
        yield server


def read(**paging: object) -> dict:
    """Return an extract_rows step over the people rows, with paging options."""
    return {
        "name": "Read every person",
        "extract_rows": {"css": "tr.row"},
        "columns": {
            "key": {"css": ":scope", "attribute": "data-id"},
            "name": {"css": "td.name"},
            "email": {"css": "td a", "nth": 0},
            "page": {"css": "td a", "attribute": "href", "nth": 0},
            "edit": {"css": "[role=menuitem]", "has_text": "Open", "attribute": "href"},
        },
        "into": "people",
        **paging,
    }


def expected() -> list[dict[str, str]]:
    """Return every person, once, as the columns read them."""
    return [
        {
            "key": f"p{n}",
            "name": f"Person {n}",
            "email": f"person{n}@example.com",
            "page": f"/people/p{n}",
            "edit": f"/people/p{n}/edit",
        }
        for n in range(TOTAL)
    ]


async def test_load_more_appends_and_repeats_are_dropped(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Five slow Load more clicks, overlapping batches: every person once, attributes read."""
    steps = [
        goto("/more"),
        {"wait_for": {"css": "tr.row"}, "state": "attached"},
        read(load_more={"role": "button", "name": "Load more"}, unique_by="key"),
    ]
    ran = await run_flow(browsers, site.url, redis_url, steps)
    assert ran.failure is None, ran.failure
    assert ran.outcome is not None and ran.outcome.rows["people"] == expected()


async def test_without_unique_by_the_overlap_shows(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The same list read without a key column keeps the repeated rows: unique_by matters."""
    steps = [
        goto("/more"),
        {"wait_for": {"css": "tr.row"}, "state": "attached"},
        read(load_more={"role": "button", "name": "Load more"}),
    ]
    ran = await run_flow(browsers, site.url, redis_url, steps)
    assert ran.outcome is not None
    keys = [r["key"] for r in ran.outcome.rows["people"]]
    assert len(keys) == TOTAL + 4 and len(set(keys)) == TOTAL


async def test_next_replaces_the_rows_and_each_page_is_waited_for(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Next loads the next page in place after a delay; a disabled Next ends the reading."""
    steps = [
        goto("/next"),
        {"wait_for": {"css": "tr.row"}, "state": "attached"},
        read(next_page={"role": "button", "name": "Next"}, unique_by="key"),
    ]
    ran = await run_flow(browsers, site.url, redis_url, steps)
    assert ran.failure is None, ran.failure
    assert ran.outcome is not None and ran.outcome.rows["people"] == expected()


async def test_more_pages_than_the_bound_fail_the_step(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Two pages allowed, five needed: the step fails instead of returning a partial list."""
    steps = [
        goto("/next"),
        {"wait_for": {"css": "tr.row"}, "state": "attached"},
        read(next_page={"role": "button", "name": "Next"}, max_pages=2),
    ]
    ran = await run_flow(browsers, site.url, redis_url, steps)
    assert ran.failure is not None
    assert "more rows remain after max_pages=2 pages: raise max_pages" in str(ran.failure)


async def test_a_load_more_that_adds_nothing_fails_the_step(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A Load more button that stays and never adds a row: no endless wait, a failed step."""
    steps = [
        goto("/stuck"),
        {**read(load_more={"role": "button", "name": "Load more"}), "timeout_ms": 500},
    ]
    ran = await run_flow(browsers, site.url, redis_url, steps)
    assert ran.failure is not None
    assert "no new rows appeared within 500 ms of paging" in str(ran.failure)
