"""Fragments: `use: NAME` with explicit parameters, checked like flows, recursion refused."""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.apps.template import load_app
from engine.automation.browser import BrowserPool
from engine.automation.check import check_app, check_flow
from engine.automation.language import FRAGMENTS_DIR, Flow, fragment_hashes
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import goto, html, run_flow, serve

PEOPLE = html(
    """<ul><li data-key=u1><a href=#>Ann</a> <span class=plan>Pro</span></li>
    <li data-key=u2><a href=#>Bo</a> <span class=plan>Free</span></li></ul>"""
)
READ_PERSON = """version: 1
fragment: read_person
description: Read one person's plan, or say there is none.
params:
  name: {description: The person's name}
  into: {description: Unused here, default: plan}
steps:
  - name: "{{ params.name }} listed?"
    unless_visible: {role: link, name: "{{ params.name }}", exact: true}
    then:
      - name: "{{ params.name }} is not listed"
        fail: "no {{ params.name }} on the page"
  - name: "{{ params.name }} known already?"
    if_visible: {css: "li.done", has_text: "{{ params.name }}"}
    then:
      - name: "{{ params.name }} already read"
        already: "{{ params.name }} was read before"
  - name: "Read {{ params.name }}'s plan"
    extract: {css: "li", has_text: "{{ params.name }}"}
    into: last_plan
"""


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve a list of people."""
    with serve(
        {"/people": PEOPLE, "/done": html("<ul><li class=done><a href=#>Ann</a></li></ul>")}
    ) as server:
        yield server


@pytest.fixture
def fragments(tmp_path: Path) -> Path:
    """Write the read_person fragment into a fragments folder."""
    folder = tmp_path / FRAGMENTS_DIR
    folder.mkdir()
    (folder / "read_person.yaml").write_text(READ_PERSON)
    return folder


def use(name: str) -> dict:
    """Return a step that reads one person through the fragment."""
    return {"use": "read_person", "with": {"name": name}}


async def test_a_fragment_runs_with_its_parameters_and_sets_vars(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str, fragments: Path
) -> None:
    """Used twice with different names; its extract reaches the caller; its hash is kept."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/people"),
            {**use("{{ user.first }}"), "name": "Read Ann"},
            {"name": "Ann's plan was read", "screenshot": "{{ vars.last_plan }}"},
            use("Bo"),
        ],
        variables={"user": {"first": "Ann"}},
        fragments_dir=fragments,
    )
    assert ran.failure is None, ran.failure
    assert ran.outcome is not None
    assert ran.outcome.extracted["last_plan"] == "Bo Free"
    digest = hashlib.sha256((fragments / "read_person.yaml").read_bytes()).hexdigest()
    assert ran.outcome.fragments == {"read_person": digest}
    assert ran.sink.named("Read Ann").locator == f"fragment read_person sha256={digest}"
    names = [r.name for r in ran.sink.results]
    assert "Read Ann's plan" in names and "Read Bo's plan" in names
    assert ran.sink.named("Ann's plan was read").status == "ok"


async def test_already_inside_a_fragment_ends_the_action(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str, fragments: Path
) -> None:
    """The fragment's `already` ends the whole action, successfully; nothing after it runs."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/done"), use("Ann"), {"name": "After", "click": {"text": "Nothing here"}}],
        fragments_dir=fragments,
    )
    assert ran.failure is None and ran.outcome is not None and ran.outcome.already
    assert ran.sink.results[-1].name == "Ann already read"
    assert ran.sink.results[-1].status == "already"


async def test_fail_inside_a_fragment_ends_the_action(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str, fragments: Path
) -> None:
    """The fragment's `fail` fails the action at that step; nothing after it runs."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/people"), use("Cy"), {"name": "After", "screenshot": "after"}],
        fragments_dir=fragments,
    )
    assert ran.failure is not None
    assert "'Cy is not listed'" in str(ran.failure) and "no Cy on the page" in str(ran.failure)
    assert "After" not in [r.name for r in ran.sink.results]


async def test_parameters_are_explicit_at_run_time(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str, fragments: Path
) -> None:
    """A use without a required parameter fails as a step naming it."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/people"), {"name": "Read nobody", "use": "read_person"}],
        fragments_dir=fragments,
    )
    assert ran.failure is not None
    assert "use read_person: unknown parameters [], missing parameters ['name']" in str(ran.failure)


async def test_a_fragment_that_uses_itself_stops_at_the_depth_bound(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str, fragments: Path
) -> None:
    """Unchecked recursion still ends: the nesting bound fails the action."""
    (fragments / "again.yaml").write_text(
        "version: 1\nfragment: again\nsteps:\n  - {screenshot: once}\n  - {use: again}\n"
    )
    ran = await run_flow(
        browsers, site.url, redis_url, [goto("/people"), {"use": "again"}], fragments_dir=fragments
    )
    assert ran.failure is not None
    assert "fragments nest deeper than 8: does again use itself?" in str(ran.failure)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """Return a minimal app whose flows use fragments."""
    folder = tmp_path / "flows" / "shop"
    (folder / FRAGMENTS_DIR).mkdir(parents=True)
    (folder / "app.yaml").write_text(
        "name: shop\nlabel: Shop\nattributes: [email]\n"
        "actions: [login, create_user, update_user, deactivate_user, reactivate_user,"
        " list_users]\n"
    )
    steps = '  - {goto: "{{ integration.base_url }}/x"}\n  - {expect: {text: Signed in}}\n'
    for action in ("login", "update_user", "deactivate_user", "reactivate_user", "list_users"):
        (folder / f"{action}.yaml").write_text(f"version: 1\naction: {action}\nsteps:\n{steps}")
    (folder / FRAGMENTS_DIR / "find.yaml").write_text(
        "version: 1\nfragment: find\nparams:\n  email: {}\nsteps:\n"
        '  - {fill: {label: Search}, value: "{{ params.email }}"}\n'
        "  - {extract: {test_id: id}, into: account_key}\n"
    )
    return folder


def write_create(app_dir: Path, *steps: str) -> Path:
    """Write the create_user flow of the minimal app."""
    path = app_dir / "create_user.yaml"
    path.write_text("version: 1\naction: create_user\nsteps:\n" + "".join(steps))
    return path


def test_check_knows_parameters_and_the_vars_a_fragment_sets(app_dir: Path) -> None:
    """A good use passes; the fragment's account_key is known after it; bad uses are named."""
    app = load_app(app_dir.parent, "shop")
    good = write_create(
        app_dir,
        '  - {use: find, with: {email: "{{ user.email }}"}}\n',
        '  - {goto: "{{ integration.base_url }}/u/{{ vars.account_key }}"}\n',
    )
    assert check_flow(good, app) == []
    bad = write_create(
        app_dir,
        "  - {use: find}\n",
        "  - {use: find, with: {email: a, mail: b}}\n",
        "  - {use: lost}\n",
    )
    said = [f"{p.where}: {p.message}" for p in check_flow(bad, app)]
    assert said == [
        "steps[0] (use find): find needs parameters ['email']",
        "steps[1] (use find): find has no parameters ['mail'] (it takes ['email'])",
        "steps[2] (use lost): no fragment 'lost': write _fragments/lost.yaml beside the flows",
    ]


def test_check_refuses_implicit_inputs_and_recursion(app_dir: Path) -> None:
    """A fragment reading user.* instead of a parameter, and a cycle a -> b -> a, are refused."""
    write_create(app_dir, '  - {use: find, with: {email: "{{ user.email }}"}}\n')
    fragments = app_dir / FRAGMENTS_DIR
    (fragments / "find.yaml").write_text(
        "version: 1\nfragment: find\nparams:\n  email: {}\nsteps:\n"
        '  - {fill: {label: Search}, value: "{{ user.email }}"}\n'
    )
    (fragments / "ping.yaml").write_text("version: 1\nfragment: ping\nsteps:\n  - {use: pong}\n")
    (fragments / "pong.yaml").write_text("version: 1\nfragment: pong\nsteps:\n  - {use: ping}\n")
    problems = check_app(app_dir.parent, "shop")
    said = sorted(f"{p.file.name}: {p.where}: {p.message}" for p in problems)
    assert said == [
        "find.yaml: steps[0] (fill label='Search'): unknown variable 'user' in '{{ user.email }}'",
        "ping.yaml: use: fragment ping uses itself: ping -> pong -> ping",
        "pong.yaml: use: fragment pong uses itself: pong -> ping -> pong",
    ]


def test_fragment_hashes_follow_nested_uses(tmp_path: Path) -> None:
    """A flow's provenance names every fragment it may run, nested ones too, once each."""
    folder = tmp_path / FRAGMENTS_DIR
    folder.mkdir()
    (folder / "outer.yaml").write_text(
        "version: 1\nfragment: outer\nsteps:\n  - {use: inner}\n  - {use: inner}\n"
    )
    (folder / "inner.yaml").write_text("version: 1\nfragment: inner\nsteps:\n  - {screenshot: a}\n")
    flow = Flow.model_validate(
        {
            "action": "t",
            "steps": [
                {"if_visible": {"text": "x"}, "then": [{"use": "outer"}]},
                {"use": "missing"},
            ],
        }
    )
    digest = {
        name: hashlib.sha256((folder / f"{name}.yaml").read_bytes()).hexdigest()
        for name in ("inner", "outer")
    }
    assert fragment_hashes(flow.steps, folder) == digest
