"""`for_each`: run steps once per row an extract_rows read, the row as vars.<as>."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.apps.template import load_app
from engine.automation.browser import BrowserPool
from engine.automation.check import check_flow
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import goto, html, run_flow, serve
from tests.harness import ROOT

ROWS = html(
    "<table>"
    + "".join(
        f"<tr class=row><td>{key}</td><td>{name}</td>"
        f"<td><button onclick='ok(this)'>Approve {name}</button></td></tr>"
        for key, name in (("u1", "Ann"), ("u2", "Bo"), ("u3", "Cy"))
    )
    + """</table><p id=log></p>
    <script>function ok(b){ b.textContent = 'Approved';
      document.getElementById('log').textContent += b.closest('tr').cells[0].textContent + ' ';
    }</script>"""
)
READ = {
    "name": "Read the rows",
    "extract_rows": {"css": "tr.row"},
    "columns": {"key": {"css": "td:nth-child(1)"}, "name": {"css": "td:nth-child(2)"}},
    "into": "people",
}
EACH = {
    "name": "Approve each person",
    "for_each": "people",
    "as": "person",
    "steps": [
        {
            "name": "Approve {{ vars.person.name }}",
            "click": {"role": "button", "name": "Approve {{ vars.person.name }}"},
        }
    ],
}


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve a table with a button per row."""
    with serve({"/rows": ROWS}) as server:
        yield server


async def test_for_each_runs_its_steps_per_row(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Each row's button is clicked once, in order, named after the row."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/rows"), READ, EACH, {"expect": {"css": "#log"}, "text": "u1 u2 u3"}],
    )
    assert ran.failure is None, ran.failure
    names = [r.name for r in ran.sink.results]
    assert names[names.index("Approve each person") + 1 :][:3] == [
        "Approve Ann",
        "Approve Bo",
        "Approve Cy",
    ]
    assert ran.sink.named("Approve each person").locator == "3 row(s) of vars.people"


async def test_for_each_over_rows_never_read_fails_as_a_step(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Rows no extract_rows read: the loop's step fails and says how to read them."""
    ran = await run_flow(browsers, site.url, redis_url, [goto("/rows"), EACH])
    assert ran.failure is not None
    assert "no rows named 'people': read them with extract_rows" in str(ran.failure)


def test_check_knows_the_row_inside_and_the_rows_before(tmp_path: Path) -> None:
    """`flows check`: vars.person is known inside the loop; rows must be read before it."""
    app = load_app(ROOT / "flows", "acme")
    body = (
        "version: 1\naction: list_users\nsteps:\n"
        '  - {goto: "{{ integration.base_url }}/users"}\n'
        "{read}"
        "  - for_each: people\n    as: person\n    steps:\n"
        '      - {goto: "{{ integration.base_url }}/users/{{ vars.person.key }}"}\n'
        '      - {goto: "{{ integration.base_url }}/users/{{ vars.nobody }}"}\n'
    )
    read = "  - extract_rows: {css: tr}\n    columns: {key: {css: td}}\n    into: people\n"
    path = tmp_path / "list_users.yaml"
    path.write_text(body.replace("{read}", read))
    problems = [str(p) for p in check_flow(path, app)]
    assert len(problems) == 1 and "unknown variable vars.nobody" in problems[0], problems
    path.write_text(body.replace("{read}", ""))
    problems = [str(p) for p in check_flow(path, app)]
    assert any(
        "steps[1] (for_each people): for_each reads vars.people, which no earlier"
        " extract_rows reads" in p
        for p in problems
    ), problems
