"""`repeat`: a loop while or until a condition holds, with a hard bound and a clear failure."""

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from engine.automation.browser import BrowserPool
from engine.automation.language import Flow
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import goto, html, run_flow, serve

LOAD_MORE = html(
    """<ul id=list></ul><button id=more>Load more</button>
    <script>
    let shown = 0;
    const total = 23;
    function more() {
      for (let i = 0; i < 5 && shown < total; i++, shown++) {
        const li = document.createElement('li');
        li.className = 'item';
        li.textContent = 'item ' + shown;
        document.getElementById('list').appendChild(li);
      }
      if (shown >= total) document.getElementById('more').remove();
    }
    more();
    document.getElementById('more').onclick = more;
    </script>"""
)
PAGED = html(
    """<p id=page>Page 1</p><button>Next</button>
    <script>let n = 1; document.querySelector('button').onclick = () => {
      n += 1; document.getElementById('page').textContent = 'Page ' + n; };</script>"""
)
LOAD_ALL = {
    "name": "Load every item",
    "repeat": {"while": {"role": "button", "name": "Load more"}, "max": 10},
    "steps": [{"name": "Load more", "click": {"role": "button", "name": "Load more"}}],
}
READ = {
    "name": "Read the items",
    "extract_rows": {"css": "li.item"},
    "columns": {"label": {"css": ":scope"}},
    "into": "items",
}


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve a list behind a Load more button and a pager."""
    with serve({"/more": LOAD_MORE, "/paged": PAGED}) as server:
        yield server


async def test_repeat_while_loads_every_item(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Click Load more while it shows: 23 items in 5 clicks, then the button is gone."""
    ran = await run_flow(browsers, site.url, redis_url, [goto("/more"), LOAD_ALL, READ])
    assert ran.failure is None, ran.failure
    assert ran.outcome is not None
    assert [r["label"] for r in ran.outcome.rows["items"]] == [f"item {n}" for n in range(23)]
    names = [r.name for r in ran.sink.results]
    assert names.count("Load more") == 4
    assert ran.sink.named("Load every item").status == "ok"


async def test_repeat_fails_clearly_at_its_bound(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Two rounds are not enough for 23 items: a failed step says the bound was reached."""
    bounded = {**LOAD_ALL, "repeat": {**LOAD_ALL["repeat"], "max": 2}}  # type: ignore[dict-item]
    ran = await run_flow(browsers, site.url, redis_url, [goto("/more"), bounded, READ])
    assert ran.failure is not None
    message = str(ran.failure)
    assert "'Load every item' (role='button', name='Load more') failed at" in message
    assert message.endswith(
        "the loop reached its bound of 2 rounds and role='button', name='Load more' still holds"
    )
    assert [r.status for r in ran.sink.results][-1] == "failed"
    assert [r.name for r in ran.sink.results].count("Load more") == 2
    assert ran.sink.artifacts[-1][0].kind == "screenshot"


async def test_repeat_until_a_condition(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Click Next until page 4 shows: three rounds, checked after each."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/paged"),
            {
                "name": "Go to page 4",
                "repeat": {"until": {"css": "#page", "contains": "Page 4"}, "max": 5},
                "steps": [{"name": "Next", "click": {"role": "button", "name": "Next"}}],
            },
            {"expect": {"css": "#page"}, "text": "Page 4"},
        ],
    )
    assert ran.failure is None, ran.failure
    assert [r.name for r in ran.sink.results].count("Next") == 3


async def test_repeat_until_that_never_holds_fails(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A condition that never holds ends at the bound, saying it never held."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/paged"),
            {
                "name": "Find page 0",
                "repeat": {"until": {"text": "Page 0", "exact": True}, "max": 3},
                "steps": [{"click": {"role": "button", "name": "Next"}}],
            },
        ],
    )
    assert ran.failure is not None
    assert str(ran.failure).endswith(
        "the loop reached its bound of 3 rounds and text='Page 0' never held"
    )


def test_a_loop_must_say_when_it_ends() -> None:
    """No condition, two conditions, no bound, a bound above the ceiling, no steps: refused."""
    cases = [
        ({"max": 3}, "exactly one of while, until"),
        ({"while": {"text": "a"}, "until": {"text": "b"}, "max": 3}, "exactly one of while"),
        ({"while": {"text": "a"}}, "max"),
        ({"while": {"text": "a"}, "max": 100_000}, "less than or equal to 1000"),
    ]
    for spec, expected in cases:
        with pytest.raises(ValidationError, match=expected):
            Flow.model_validate(
                {"action": "t", "steps": [{"repeat": spec, "steps": [{"screenshot": "x"}]}]}
            )
    with pytest.raises(ValidationError, match="repeat needs steps"):
        Flow.model_validate(
            {"action": "t", "steps": [{"repeat": {"while": {"text": "a"}, "max": 2}}]}
        )
