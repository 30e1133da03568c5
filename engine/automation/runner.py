"""Replay a flow's steps on a Playwright page, with a masked screenshot after each step."""

import asyncio
import contextlib
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator as PwLocator
from playwright.async_api import Page, Request, Response, expect

from engine.automation.errors import FlowFailed
from engine.automation.guard import NavigationGuard
from engine.automation.language import (
    Condition,
    Expectation,
    Flow,
    FlowError,
    Fragment,
    Locator,
    Step,
    load_fragment,
    render,
    uses_secret,
)
from engine.automation.screenshot import MARK_JS, Camera, Mark
from engine.automation.totp import TotpLedger, fresh_code
from engine.constants import (
    CLICK_QUIET_S,
    CLICK_SETTLE_S,
    FRAGMENT_MAX_DEPTH,
    PAGER_SETTLE_S,
)

POLL_S = 0.1
TICK_JS = "() => new Promise(done => requestAnimationFrame(() => setTimeout(done, 0)))"
"""Resolve after the page's next frame and the task after it."""
REDACTED = "•••"
BENIGN_REQUEST_FAILURES = ("ERR_BLOCKED_BY_CLIENT", "ERR_ABORTED")
"""Request failures that are Usher's own guard or a navigation cutting a fetch short."""
ACTING = ("goto", "click", "fill", "select", "check", "uncheck", "press", "upload", "totp")
"""Steps that may start a request; a network wait counts what came since the last one began."""
STRICT_MODE = re.compile(r"strict mode violation: .*? resolved to (\d+) elements")
COVERED = re.compile(r"- (.+?) intercepts pointer events")

STRIPPED_HTML_JS = """() => {
  const root = document.documentElement.cloneNode(true);
  for (const el of root.querySelectorAll('input, textarea, select, option')) {
    el.removeAttribute('value');
    if (el.tagName === 'TEXTAREA') el.textContent = '';
  }
  return '<!doctype html>\\n' + root.outerHTML;
}"""


@dataclass
class StepResult:
    """What one step did, as recorded on the Step row."""

    position: int
    name: str
    kind: str
    status: str
    duration_ms: int
    locator: str | None
    url: str | None
    error: str | None = None
    failed_locator: str | None = None
    """Set when only a fallback matched: the locators tried before it, which found nothing."""


@dataclass
class Artifact:
    """One evidence file produced by a step."""

    kind: str
    data: bytes
    content_type: str
    suffix: str


class StepSink(Protocol):
    """Where the runner hands each step's result and evidence as it happens."""

    async def record(self, result: StepResult, artifacts: list[Artifact]) -> None:
        """Keep one step's result and its evidence."""
        ...


@dataclass
class FlowOutcome:
    """How a flow ended: `already` when it found the state already so."""

    already: bool = False
    extracted: dict[str, str] = field(default_factory=dict)
    rows: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    fragments: dict[str, str] = field(default_factory=dict)
    """The SHA-256 of each fragment the run used, by name: part of its provenance."""


@dataclass
class RunContext:
    """Everything a flow may read, and the guards around secrets."""

    base_url: str
    secrets: dict[str, str]
    variables: dict[str, Any]
    ledger: TotpLedger
    totp_account: str
    allowed_hosts: list[str] = field(default_factory=list)
    step_timeout_ms: int = 10_000
    files_dir: Path | None = None
    halt: Callable[[], str | None] | None = None
    """Asked before every step: a reason to stop now (the job lost its lease), or None."""
    fragments_dir: Path | None = None
    """The app's `_fragments` folder, where `use:` finds fragments."""


class _Already(Exception):
    """Stop a flow whose state is already so."""


class SecretAhead(Exception):
    """A run told to stop before typing a secret reached a step that would type one."""


def types_secret(step: Step) -> bool:
    """Tell whether a step types a secret: a templated value that reads one, or a TOTP code."""
    return step.kind == "totp" or uses_secret(step.value)


class FlowRunner:
    """Run flows on one page, one step at a time, recording every step."""

    def __init__(self, page: Page, run: RunContext) -> None:
        self.page = page
        self.run_context = run
        self.sink: StepSink | None = None
        self.position = 0
        self.extracted: dict[str, str] = {}
        self.rows: dict[str, list[dict[str, str]]] = {}
        self.secret_targets: list[PwLocator] = []
        self.console: list[str] = []
        self.guard = NavigationGuard(page, run.base_url, run.allowed_hosts)
        self.faults: list[str] = []
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("response", self._watch_response)
        page.on("requestfailed", self._watch_failed_request)
        self.network: list[tuple[str, str]] = []
        """("request" | "response", URL) seen since the last acting step began."""
        self.loop_vars: dict[str, dict[str, str]] = {}
        self.params: list[dict[str, str]] = []
        """The parameters of each fragment being run, innermost last."""
        self.fragments: dict[str, str] = {}
        self.calling: tuple[Fragment, dict[str, str]] | None = None
        self.focus: PwLocator | None = None
        """The element the current step acts on or asserts, outlined in its screenshot."""
        self.marks = 0
        """Screenshots that marked their step's element so far: each mark's number."""
        self.camera = Camera(page)
        self.missed: str | None = None
        """The current step's locators that found nothing before one of its fallbacks did."""
        page.on("request", lambda request: self.network.append(("request", request.url)))
        page.on("requestfinished", lambda request: self.network.append(("response", request.url)))
        self.crashed = False
        page.on("crash", self._on_crash)
        self.until_secret = False
        """The current run stops before a step that would type a secret (SecretAhead)."""

    def _on_crash(self, _: Page) -> None:
        """Note that the page's renderer crashed: every later call on it fails."""
        self.crashed = True

    @property
    def dead(self) -> bool:
        """Tell whether the page can no longer be used: crashed, closed or its browser gone."""
        browser = self.page.context.browser
        return self.crashed or self.page.is_closed() or not (browser and browser.is_connected())

    def _gone(self, error: BaseException) -> str | None:
        """Return what died under a Playwright error: the page, its browser; None if alive."""
        if self.crashed:
            return "the page crashed"
        if type(error).__name__ != "TargetClosedError" and not self.page.is_closed():
            return None
        browser = self.page.context.browser
        return "the page closed" if browser and browser.is_connected() else "the browser closed"

    def _watch_response(self, response: Response) -> None:
        """Note a 5xx answer, fetches included: a failure after it is worth another try."""
        if response.status >= 500:
            self.faults.append(f"the app answered {response.status} for {response.url}")

    def _watch_failed_request(self, request: Request) -> None:
        """Note a request the network failed; the guard's own blocks and aborts are not faults."""
        failure = request.failure or ""
        if not any(benign in failure for benign in BENIGN_REQUEST_FAILURES):
            self.faults.append(f"{failure or 'a network error'} for {request.url}")

    async def guard_navigation(self) -> None:
        """Block top-level navigation to hosts the app's template does not allow."""
        await self.guard.install()

    async def run(self, flow: Flow, sink: StepSink, *, until_secret: bool = False) -> FlowOutcome:
        """Run every step of a flow into a sink; raise FlowFailed with step, locator and URL.

        Each run starts with no extracted values: one flow never reads another's. With
        `until_secret`, the run raises SecretAhead instead of running a step that would type
        a secret: what it ran before stays recorded.
        """
        self.until_secret = until_secret
        self.sink = sink
        self.extracted.clear()
        self.rows.clear()
        self.faults.clear()
        self.loop_vars.clear()
        self.params.clear()
        self.fragments.clear()
        self.calling = None
        already = False
        try:
            await self._run_steps(flow.steps)
        except _Already:
            already = True
        finally:
            self.sink = None
        return FlowOutcome(
            already=already,
            extracted=dict(self.extracted),
            rows=dict(self.rows),
            fragments=dict(self.fragments),
        )

    async def _run_steps(self, steps: list[Step]) -> None:
        """Run a list of steps in order."""
        for step in steps:
            await self._run_step(step)

    def _variables(self) -> dict[str, Any]:
        """Return the template variables, extracted values included."""
        return {
            **self.run_context.variables,
            "secrets": self.run_context.secrets,
            "vars": {**self.extracted, **self.rows, **self.loop_vars},
            "params": self.params[-1] if self.params else {},
        }

    def _render(self, template: str) -> str:
        """Render a step field against the run's variables."""
        return render(template, self._variables())

    async def _run_step(self, step: Step) -> None:
        """Run one step, screenshot it and record it; branch steps run their branch after."""
        halted = self.run_context.halt() if self.run_context.halt else None
        if halted:
            raise FlowFailed(f"stopped before step {self.position + 1}: {halted}", transient=True)
        if self.until_secret and types_secret(step):
            raise SecretAhead(step.title)
        self.position += 1
        position, started = self.position, time.monotonic()
        if step.kind in ACTING:
            self.network.clear()
        self.focus, self.missed = None, None
        matched: str | None = self._describe(step.locator) if step.locator else None
        status, branch = "ok", None
        try:
            matched, status, branch = await self._perform(step)
            self.guard.check_escape()
        except _Already:
            await self._record(step, position, started, "already", matched, None)
            raise
        except FlowError as error:
            await self._fail(step, position, started, matched, str(error), transient=False)
        except FlowFailed as error:
            await self._fail(step, position, started, matched, str(error), error.transient, error)
        except (PlaywrightError, TimeoutError, AssertionError) as error:
            if gone := self._gone(error):
                reason = f"{gone} during step {position} ({_first_line(error)})"
                await self._fail(step, position, started, matched, reason, True)
            await self._fail(step, position, started, matched, explain(error), False)
        except re.error as error:
            reason = f"not a regular expression: {error}"
            await self._fail(step, position, started, matched, reason, False)
        await self._record(step, position, started, status, matched, None)
        if branch:
            await self._run_steps(branch)
        if step.repeat is not None:
            await self._repeat(step)
        if step.for_each is not None:
            await self._for_each(step)
        if self.calling is not None:
            await self._call(step, *self.calling)

    async def _call(self, step: Step, fragment: Fragment, params: dict[str, str]) -> None:
        """Run a fragment's steps with its parameters; `already` and `fail` end the action."""
        self.calling = None
        if len(self.params) >= FRAGMENT_MAX_DEPTH:
            reason = f"fragments nest deeper than {FRAGMENT_MAX_DEPTH}: does {step.use} use itself?"
            await self._fail_after(step, reason)
        self.params.append(params)
        try:
            await self._run_steps(fragment.steps)
        finally:
            self.params.pop()

    def _prepare_use(self, step: Step) -> str:
        """Load the fragment a `use` names and render its parameters; return its provenance."""
        folder = self.run_context.fragments_dir
        if folder is None:
            raise FlowFailed(f"use {step.use}: this run has no fragments folder")
        path = folder / f"{step.use}.yaml"
        fragment = load_fragment(path)
        unknown = sorted(set(step.with_) - set(fragment.params))
        missing = sorted(fragment.required() - set(step.with_))
        if unknown or missing:
            raise FlowFailed(
                f"use {step.use}: unknown parameters {unknown}, missing parameters {missing}"
            )
        params = {name: param.default or "" for name, param in fragment.params.items()}
        params.update({name: self._render(value) for name, value in step.with_.items()})
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        self.fragments[fragment.fragment] = digest
        self.calling = (fragment, params)
        return f"fragment {fragment.fragment} sha256={digest}"

    async def _repeat(self, step: Step) -> None:
        """Run a loop's steps while (or until) its condition holds; fail at its bound."""
        spec = step.repeat
        assert spec is not None
        for _ in range(spec.max):
            if spec.while_ is not None and not await self._holds(step, spec.while_):
                return
            await self._run_steps(step.steps)
            if spec.until is not None and await self._holds(step, spec.until):
                return
        if spec.while_ is not None and not await self._holds(step, spec.while_):
            return
        said = "still holds" if spec.while_ is not None else "never held"
        reason = (
            f"the loop reached its bound of {spec.max} rounds and"
            f" {self._describe(spec.condition)} {said}"
        )
        await self._fail_after(step, reason)

    async def _for_each(self, step: Step) -> None:
        """Run a loop's steps once per row read by an extract_rows, as vars.<as>."""
        for row in self.rows.get(step.for_each or "", []):
            self.loop_vars[step.as_] = row
            try:
                await self._run_steps(step.steps)
            finally:
                self.loop_vars.pop(step.as_, None)

    async def _holds(self, step: Step, condition: Condition) -> bool:
        """Evaluate a loop's condition now; a Playwright error fails the loop as a step."""
        try:
            return await self._check_condition(condition, step.frame)
        except (PlaywrightError, AssertionError) as error:
            await self._fail_after(step, f"its condition could not be read: {explain(error)}")

    async def _fail_after(self, step: Step, reason: str) -> NoReturn:
        """Record a loop's failure as a further step of its own, then raise FlowFailed."""
        self.position += 1
        condition = step.repeat.condition if step.repeat else None
        matched = self._describe(condition) if condition else None
        await self._fail(step, self.position, time.monotonic(), matched, reason, False)

    async def _perform(self, step: Step) -> tuple[str | None, str, list[Step] | None]:
        """Do what a step says; return the matched locator, status and branch to run."""
        kind = step.kind
        timeout_ms = step.timeout_ms or self.run_context.step_timeout_ms
        if kind == "goto":
            await self._goto(self._render(step.goto or ""), timeout_ms)
            return None, "ok", None
        if kind in ("if_visible", "unless_visible", "if_all"):
            hit, seen = await self._condition_holds(step)
            branch = step.then if hit else step.otherwise
            return seen, "ok", branch
        if kind == "screenshot":
            return None, "ok", None
        if kind == "use":
            return self._prepare_use(step), "ok", None
        if kind == "repeat" and step.repeat is not None:
            return self._describe(step.repeat.condition), "ok", None
        if kind == "for_each":
            if step.for_each not in self.rows:
                raise FlowFailed(f"no rows named {step.for_each!r}: read them with extract_rows")
            return f"{len(self.rows[step.for_each])} row(s) of vars.{step.for_each}", "ok", None
        waits = getattr(step, kind) if kind in ("expect", "wait_for") else None
        if isinstance(waits, Expectation) and (waits.response or waits.request):
            which = "response" if waits.response else "request"
            pattern = waits.response or waits.request or ""
            return await self._wait_network(which, pattern, timeout_ms), "ok", None
        if kind == "dialog":
            self._arm_dialog(step.dialog == "accept")
            return None, "ok", None
        if kind == "dismiss_overlay" and step.dismiss_overlay is not None:
            await self._dismiss_overlay(step)
            return self._describe(step.dismiss_overlay), "ok", None
        if kind == "extract_rows" and step.extract_rows is not None:
            await self._extract_rows(step, timeout_ms)
            return self._describe(step.extract_rows), "ok", None
        if kind == "wait_for" and isinstance(step.wait_for, Locator) and step.state:
            target = self._build(step.wait_for, step.frame).first
            await target.wait_for(state=step.state, timeout=timeout_ms)
            return self._describe(step.wait_for), "ok", None
        if kind == "already":
            raise _Already(self._render(step.already or ""))
        if kind == "fail":
            raise FlowFailed(self._render(step.fail or ""))
        if kind == "needs_human":
            raise FlowFailed(self._render(step.needs_human or ""), needs_human=True)
        if kind == "refused":
            raise FlowFailed(self._render(step.refused or ""), refused=True)
        if kind in ("expect", "wait_for") and isinstance(getattr(step, kind), Expectation):
            await self._expect_page(getattr(step, kind), timeout_ms)
            return None, "ok", None
        if kind == "expect" and step.state in ("hidden", "detached"):
            return await self._expect_gone(step, timeout_ms), "ok", None
        target, matched = await self._resolve(step, timeout_ms)
        self.focus = target
        await self._act(step, target, timeout_ms)
        return matched, "ok", None

    async def _expect_gone(self, step: Step, timeout_ms: int) -> str:
        """Assert that no locator of the step shows an element (hidden) or finds one (detached).

        Resolving first would wait for the very element that should be gone, so this is
        asserted on the locators themselves, fallbacks included: each names the same element.
        """
        specs = [s for s in (step.locator, *step.fallbacks) if s is not None]
        for spec in specs:
            target = self._build(spec, step.frame)
            if step.state == "detached":
                await expect(target).to_have_count(0, timeout=timeout_ms)
            else:
                await expect(target.first).to_be_hidden(timeout=timeout_ms)
        return " | ".join(self._describe(s) for s in specs)

    async def _wait_network(self, which: str, template: str, timeout_ms: int) -> str:
        """Wait for a request sent, or a response received, since the last acting step began."""
        pattern = re.compile(self._render(template))
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            for kind, url in self.network:
                if kind == which and pattern.search(url):
                    return self.redact(f"{which} {url}")
            if time.monotonic() >= deadline:
                raise FlowFailed(
                    f"no {which} matching {pattern.pattern!r} since the last acting step"
                    f" began, within {timeout_ms} ms"
                )
            await self.page.wait_for_timeout(POLL_S * 1000)

    async def _goto(self, url: str, timeout_ms: int) -> None:
        """Open a URL on the integration's origin, afresh; a 5xx page is worth another attempt.

        A single-page app's route (a URL with a #fragment) that the page already shows is
        reloaded: a browser would otherwise do nothing and keep what it shows, such as the
        error a retried action is retried from. Any other URL is opened with a fresh GET,
        never a reload: the page may be the answer to a POST, which a reload would send
        again.
        """
        if not self.guard.allowed(url):
            raise FlowFailed(f"refused to open {url}: not the integration's origin")
        if url == self.page.url and "#" in url:
            response = await self.page.reload(timeout=timeout_ms, wait_until="load")
        else:
            response = await self.page.goto(url, timeout=timeout_ms, wait_until="load")
        if response is not None and response.status >= 500:
            raise FlowFailed(f"the app answered {response.status}", transient=True)

    def _build(self, spec: Locator, frame: str | None = None) -> PwLocator:
        """Turn a locator spec, rendered, into a Playwright locator, inside a frame if given."""
        root: Any = self.page.frame_locator(self._render(frame)) if frame else self.page
        return self._narrow(self._find(root, spec), spec)

    def _narrow(self, loc: PwLocator, spec: Locator) -> PwLocator:
        """Apply a spec's refinements: the text its elements contain, and which one."""
        if spec.has_text:
            loc = loc.filter(has_text=self._render(spec.has_text))
        return loc.nth(spec.nth) if spec.nth is not None else loc

    def _find(self, root: Any, spec: Locator) -> PwLocator:
        """Apply a spec's one strategy under a page, a frame or an element (all share the API)."""
        r = self._render
        if spec.role:
            name = r(spec.name) if spec.name else None
            return root.get_by_role(spec.role, name=name, exact=spec.exact)
        if spec.label:
            return root.get_by_label(r(spec.label), exact=spec.exact)
        if spec.placeholder:
            return root.get_by_placeholder(r(spec.placeholder), exact=spec.exact)
        if spec.text:
            return root.get_by_text(r(spec.text), exact=spec.exact)
        if spec.test_id:
            return root.get_by_test_id(r(spec.test_id))
        return root.locator(r(spec.css or ""))

    async def _resolve(self, step: Step, timeout_ms: int) -> tuple[PwLocator, str]:
        """Return the first of the step's locators that is visible, polling until the timeout.

        A match through a fallback notes the locators before it in `missed`: the UI drifted.
        """
        specs = [s for s in (step.locator, *step.fallbacks) if s is not None]
        candidates = [(self._build(s, step.frame), self._describe(s)) for s in specs]
        needs_visible = step.kind not in ("extract",)
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            for index, (loc, description) in enumerate(candidates):
                count = await loc.count()
                if count and (not needs_visible or await loc.first.is_visible()):
                    self._note_fallback([d for _, d in candidates[:index]])
                    return loc, description
            if time.monotonic() >= deadline:
                tried = " | ".join(d for _, d in candidates)
                raise FlowFailed(f"no element matched {tried} within {timeout_ms} ms")
            await self.page.wait_for_timeout(POLL_S * 1000)

    def _note_fallback(self, missed: list[str]) -> None:
        """Keep the locators that found nothing before a fallback matched; none: no drift."""
        self.missed = " | ".join(missed) or None

    async def _condition_holds(self, step: Step) -> tuple[bool, str | None]:
        """Evaluate an if_visible, unless_visible or if_all step against the page now.

        Return whether it holds and the locator that was seen (the step's own when none was).
        """
        if step.kind == "if_all":
            for condition in step.if_all or []:
                if not await self._check_condition(condition, step.frame):
                    return False, None
            return True, None
        specs = [s for s in (step.locator, *step.fallbacks) if s is not None]
        seen = None
        for index, spec in enumerate(specs):
            if await self._build(spec, step.frame).first.is_visible():
                seen = self._describe(spec)
                self._note_fallback([self._describe(s) for s in specs[:index]])
                break
        visible = seen is not None
        shown = seen or (self._describe(step.locator) if step.locator else None)
        return (visible if step.kind == "if_visible" else not visible), shown

    async def _check_condition(self, condition: Condition, frame: str | None) -> bool:
        """Tell whether one element is visible and has the value, text or state asked."""
        target = self._build(condition, frame).first
        if not await target.is_visible():
            return False
        value, contains = condition.value, condition.contains
        if value is not None and await target.input_value() != self._render(value):
            return False
        if contains is not None and self._render(contains) not in await target.inner_text():
            return False
        return condition.checked is None or await target.is_checked() == condition.checked

    def _arm_dialog(self, accept: bool) -> None:
        """Answer the next JavaScript dialog the page opens."""

        async def answer(dialog: Any) -> None:
            self.console.append(f"dialog: {dialog.type} {dialog.message!r} answered")
            await (dialog.accept() if accept else dialog.dismiss())

        self.page.once("dialog", answer)

    async def _dismiss_overlay(self, step: Step) -> None:
        """Register a handler that closes an overlay whenever it blocks an action."""
        assert step.dismiss_overlay is not None and step.close is not None
        overlay = self._build(step.dismiss_overlay, step.frame)
        close = self._build(step.close, step.frame)

        async def clear(_: Any) -> None:
            await close.first.click()

        await self.page.add_locator_handler(overlay, clear)

    async def _extract_rows(self, step: Step, timeout_ms: int) -> None:
        """Read every row into a variable, following `next_page` or `load_more` to the end."""
        assert step.extract_rows is not None
        found = self._build(step.extract_rows, step.frame)
        pager = step.next_page or step.load_more
        records: list[dict[str, str]] = []
        seen: set[str] = set()
        start = 0
        for page in range(1, step.max_pages + 1):
            count = await found.count()
            for index in range(start, count):
                record = await self._read_row(found.nth(index), step)
                key = record.get(step.unique_by) if step.unique_by else None
                if key and key in seen:
                    continue
                if key:
                    seen.add(key)
                records.append(record)
            if pager is None:
                break
            control = self._build(pager, step.frame).first
            if not await self._pager_ready(control):
                break
            if page == step.max_pages:
                raise FlowFailed(
                    f"more rows remain after max_pages={step.max_pages} pages: raise max_pages"
                )
            before = await _texts(found)
            await self._click(control, timeout_ms)
            await self._wait_new_rows(found, control, before, timeout_ms)
            start = count if step.load_more is not None else 0
        self.rows[step.into or ""] = records

    async def _read_row(self, row: PwLocator, step: Step) -> dict[str, str]:
        """Read one row's columns: each element's text, or the attribute a column names."""
        record = {}
        for name, spec in step.columns.items():
            cell = self._narrow(self._find(row, spec), spec).first
            if not await cell.count():
                record[name] = ""
            elif spec.attribute:
                record[name] = (await cell.get_attribute(spec.attribute) or "").strip()
            else:
                record[name] = (await cell.inner_text()).strip()
        return record

    async def _wait_new_rows(
        self, found: PwLocator, control: PwLocator, before: list[str], timeout_ms: int
    ) -> None:
        """Wait until the rows differ from before the click, or the control has gone."""
        deadline = time.monotonic() + timeout_ms / 1000
        while await _texts(found) == before:
            if not await _shown(control):
                return
            if time.monotonic() >= deadline:
                raise FlowFailed(f"no new rows appeared within {timeout_ms} ms of paging")
            await self.page.wait_for_timeout(POLL_S * 1000)

    async def _pager_ready(self, control: PwLocator) -> bool:
        """Tell whether paging goes on: the control shown and enabled, given a moment to enable."""
        deadline = time.monotonic() + PAGER_SETTLE_S
        while await _shown(control):
            if await control.get_attribute("aria-disabled") != "true" and (
                await control.is_enabled()
            ):
                return True
            if time.monotonic() >= deadline:
                return False
            await self.page.wait_for_timeout(POLL_S * 1000)
        return False

    async def _act(self, step: Step, target: PwLocator, timeout_ms: int) -> None:
        """Perform the step's action on the resolved element."""
        kind = step.kind
        if kind == "click":
            await self._click(target, timeout_ms)
        elif kind == "fill":
            await self._fill(target, step.value or "", timeout_ms)
        elif kind == "totp":
            await self._type_totp(target, step.secret, timeout_ms)
        elif kind == "select":
            await self._select(target, self._render(step.value or ""), timeout_ms, step.frame)
        elif kind == "upload":
            await target.set_input_files(self._files(step.files), timeout=timeout_ms)
        elif kind in ("check", "uncheck"):
            await target.set_checked(kind == "check", timeout=timeout_ms)
        elif kind == "press":
            await target.press(step.key or "", timeout=timeout_ms)
        elif kind == "extract":
            await self._extract(step, target)
        elif kind in ("expect", "wait_for"):
            await self._expect_element(step, target, timeout_ms)

    async def _click(self, target: PwLocator, timeout_ms: int) -> None:
        """Click, then wait for what the click started: the page it opened, loaded, or the
        requests it sent, settled (at most CLICK_SETTLE_S); nothing started, no wait."""
        watch = _ClickWatch(self.page)
        watch.listen()
        try:
            await target.click(timeout=timeout_ms)
            await self._settle(watch, timeout_ms)
        finally:
            watch.stop()
        if watch.navigations:
            await self.page.wait_for_load_state("load", timeout=timeout_ms)
            response = await watch.navigations[-1].response()
            if response is not None and response.status >= 500:
                raise FlowFailed(f"the app answered {response.status}", transient=True)

    async def _settle(self, watch: "_ClickWatch", timeout_ms: int) -> None:
        """Let the click's handlers run, then wait for the navigation they started to commit,
        or for the requests they sent to end and the network to stay quiet for
        CLICK_QUIET_S (what an answer's handler starts counts too); all within CLICK_SETTLE_S.
        A click that sent nothing waits for nothing more."""
        deadline = time.monotonic() + CLICK_SETTLE_S
        await self._tick()
        while not watch.navigations:
            left = deadline - time.monotonic()
            if not watch.requests or left <= 0:
                return
            if watch.pending:
                await watch.changed(left)
            elif not await watch.changed(min(CLICK_QUIET_S, left)):
                return
        if not watch.committed:
            await self.page.wait_for_event("framenavigated", timeout=timeout_ms)

    async def _tick(self) -> None:
        """Wait for the page's next frame and the task after it: handlers and the timers they
        set for now have run, and every request they sent has been announced."""
        with contextlib.suppress(PlaywrightError):
            await self.page.evaluate(TICK_JS)

    async def _select(
        self, target: PwLocator, value: str, timeout_ms: int, frame: str | None
    ) -> None:
        """Choose an option: natively in a <select>, else by clicking the option by name,
        in the step's frame, where a custom dropdown keeps its options beside itself."""
        tag = await target.first.evaluate("el => el.tagName")
        if tag == "SELECT":
            await target.select_option(value, timeout=timeout_ms)
            return
        await target.click(timeout=timeout_ms)
        root: Any = self.page.frame_locator(self._render(frame)) if frame else self.page
        await root.get_by_role("option", name=value, exact=True).click(timeout=timeout_ms)

    def _files(self, names: list[str]) -> list[Path]:
        """Return upload files from the app's folder, refusing paths that leave it."""
        root = self.run_context.files_dir
        if root is None:
            raise FlowFailed("upload needs the app's folder to take files from")
        paths = [(root / self._render(name)).resolve() for name in names]
        for path in paths:
            if not path.is_relative_to(root.resolve()) or not path.is_file():
                raise FlowFailed(f"upload file {path.name!r} is not a file in the app's folder")
        return paths

    async def _fill(self, target: PwLocator, template: str, timeout_ms: int) -> None:
        """Fill a field; a secret is typed only on the origin and masked from then on."""
        self.guard.check_escape()
        if uses_secret(template):
            self.guard.check_secret_origin()
            self.secret_targets.append(target)
        await target.fill(self._render(template), timeout=timeout_ms)

    async def _type_totp(self, target: PwLocator, secret: str, timeout_ms: int) -> None:
        """Type a fresh TOTP code from a named secret."""
        seed = self.run_context.secrets.get(secret)
        if not seed:
            raise FlowFailed(f"the integration has no secret {secret!r} for the TOTP step")
        self.guard.check_secret_origin()
        self.secret_targets.append(target)
        account = f"{self.run_context.totp_account}:{secret}"
        code = await fresh_code(seed, account, self.run_context.ledger)
        await target.fill(code, timeout=timeout_ms)

    async def _extract(self, step: Step, target: PwLocator) -> None:
        """Read text or an attribute into a variable for later steps and the account."""
        if step.attribute:
            value = await target.first.get_attribute(step.attribute) or ""
        else:
            value = (await target.first.inner_text()).strip()
        if not value:
            raise FlowFailed(f"extracted an empty value into {step.into!r}")
        self.extracted[step.into or ""] = value

    async def _expect_element(self, step: Step, target: PwLocator, timeout_ms: int) -> None:
        """Assert what the step expects of an element."""
        assertion = expect(target)
        if step.text is not None:
            await assertion.to_contain_text(self._render(step.text), timeout=timeout_ms)
        elif step.value is not None:
            await assertion.to_have_value(self._render(step.value), timeout=timeout_ms)
        elif step.checked is not None:
            await assertion.to_be_checked(checked=step.checked, timeout=timeout_ms)
        else:
            await assertion.to_be_visible(timeout=timeout_ms)

    async def _expect_page(self, expectation: Expectation, timeout_ms: int) -> None:
        """Assert what the step expects of the page itself."""
        if expectation.url is not None:
            pattern = re.compile(self._render(expectation.url))
            await expect(self.page).to_have_url(pattern, timeout=timeout_ms)
        if expectation.load_state is not None:
            await self.page.wait_for_load_state(expectation.load_state, timeout=timeout_ms)
        if expectation.text is not None:
            text = self._render(expectation.text)
            await expect(self.page.get_by_text(text).first).to_be_visible(timeout=timeout_ms)

    async def screenshot(self, full_page: bool = False) -> bytes:
        """Return a PNG of the viewport (or the whole page) with every secret painted over.

        The element the step acted on or asserted is scrolled into view and outlined in the
        picture, so that it shows what the step proves.
        """
        masks = [self.page.locator("input[type=password]"), *self.secret_targets]
        mark = await self._mark(self.focus)
        if full_page:
            return await self.camera.full_page(masks, mark)
        return await self.camera.viewport(masks, mark)

    async def _mark(self, focus: PwLocator | None) -> Mark | None:
        """Scroll the step's element into view and mark it; return the mark, None when the
        element is not shown.

        The evaluation does not wait for the element, so a page that removes or re-renders
        it meanwhile (after the click that replaced it) costs nothing. Each screenshot's
        mark is its own, so a mark an earlier step left in another frame is never outlined.
        """
        if focus is None or self.dead:
            return None
        self.marks += 1
        token = f"{id(self):x}-{self.marks}"
        try:
            top = await focus.evaluate_all(MARK_JS, token)
        except PlaywrightError:
            return None
        return None if top is None else Mark(focus, token, bool(top))

    async def _record(
        self,
        step: Step,
        position: int,
        started: float,
        status: str,
        matched: str | None,
        error: str | None,
        extra: list[Artifact] | None = None,
    ) -> None:
        """Hand the step's result and screenshot to the sink."""
        artifacts = await self._screenshot_artifacts(step)
        result = StepResult(
            position=position,
            name=self.redact(self._safe_title(step)),
            kind=step.kind,
            status=status,
            duration_ms=int((time.monotonic() - started) * 1000),
            locator=matched,
            url=self.redact(self.page.url),
            error=error,
            failed_locator=self.missed,
        )
        self.missed = None
        if self.sink is None:
            raise RuntimeError("a step ran outside FlowRunner.run")
        await self.sink.record(result, artifacts + (extra or []))

    async def _screenshot_artifacts(self, step: Step) -> list[Artifact]:
        """Return the step's screenshot, or none when the page cannot give one: the step stays."""
        try:
            shot = await self.screenshot(full_page=step.full_page)
            return [Artifact("screenshot", shot, "image/png", "png")]
        except (PlaywrightError, TimeoutError) as failure:
            self.console.append(f"usher: no screenshot: {_first_line(failure)}")
            return []

    async def _fail(
        self,
        step: Step,
        position: int,
        started: float,
        matched: str | None,
        reason: str,
        transient: bool,
        raised: FlowFailed | None = None,
    ) -> NoReturn:
        """Record a failed step with the page as it was, then raise FlowFailed.

        The failure is permanent only when the page had loaded and no 5xx or network error
        was seen during the action; otherwise another try may well succeed.
        """
        needs_human = raised is not None and raised.needs_human
        refused = raised is not None and raised.refused
        definite = transient or needs_human or refused
        cause = None if definite else await self._transient_cause()
        if cause is not None:
            transient = True
            reason = f"{reason} (transient: {cause})"
        where = f" ({matched})" if matched else ""
        message = self.redact(
            f"step {position} {self._safe_title(step)!r}{where} failed at {self.page.url}: {reason}"
        )
        extra = await self.failure_artifacts()
        await self._record(step, position, started, "failed", matched, message, extra)
        raise FlowFailed(message, transient=transient, needs_human=needs_human, refused=refused)

    async def _transient_cause(self) -> str | None:
        """Return why a failure may be transient: a fault seen, or a page that never settled."""
        if self.faults:
            return self.faults[0]
        try:
            ready = await self.page.evaluate("document.readyState")
        except PlaywrightError:
            return "the page could not be read"
        return None if ready == "complete" else "the page had not finished loading"

    async def failure_artifacts(self) -> list[Artifact]:
        """Return the page's HTML with input values stripped, and the console log."""
        try:
            html = await self.page.evaluate(STRIPPED_HTML_JS)
        except PlaywrightError:
            html = ""
        console = "\n".join(self.console)
        return [
            Artifact("html", self.redact(html).encode(), "text/html", "html"),
            Artifact("console", self.redact(console).encode(), "text/plain", "log"),
        ]

    def _describe(self, spec: Locator) -> str:
        """Return a locator's description with templates rendered, except secrets."""
        text = spec.describe()
        if "secrets." in text:
            return text
        try:
            return self._render(text)
        except FlowError:
            return text

    def _safe_title(self, step: Step) -> str:
        """Return the step's title with templates rendered, except secrets."""
        try:
            return self._render(step.title) if "secrets." not in step.title else step.title
        except FlowError:
            return step.title

    def redact(self, text: str) -> str:
        """Replace every secret value in a text, so it can reach logs and evidence."""
        for value in self.run_context.secrets.values():
            if value and len(value) >= 4:
                text = text.replace(value, REDACTED)
        return text


class _ClickWatch:
    """What a click started on a page: main-frame navigations, and other requests not ended."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.navigations: list[Request] = []
        self.committed = False
        self.pending: set[Request] = set()
        self.requests = 0
        """How many requests other than a main-frame navigation the click started."""
        self._changed = asyncio.Event()

    def listen(self) -> None:
        """Start watching the page's requests and navigations."""
        self.page.on("request", self._started)
        self.page.on("requestfinished", self._ended)
        self.page.on("requestfailed", self._ended)
        self.page.on("framenavigated", self._navigated)

    def stop(self) -> None:
        """Stop watching."""
        self.page.remove_listener("request", self._started)
        self.page.remove_listener("requestfinished", self._ended)
        self.page.remove_listener("requestfailed", self._ended)
        self.page.remove_listener("framenavigated", self._navigated)

    async def changed(self, within_s: float) -> bool:
        """Wait until a request starts or ends, at most `within_s`; False if none did."""
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), within_s)
        except TimeoutError:
            return False
        return True

    def _started(self, request: Request) -> None:
        """Note a request: the main frame's navigation, or one to wait for."""
        if request.is_navigation_request() and request.frame == self.page.main_frame:
            self.navigations.append(request)
        else:
            self.pending.add(request)
            self.requests += 1
        self._changed.set()

    def _ended(self, request: Request) -> None:
        """Note a request that finished or failed."""
        self.pending.discard(request)
        self._changed.set()

    def _navigated(self, frame: Any) -> None:
        """Note that the main frame committed a navigation."""
        if frame == self.page.main_frame:
            self.committed = True
            self._changed.set()


async def _shown(control: PwLocator) -> bool:
    """Tell whether a paging control is on the page and visible."""
    return bool(await control.count()) and await control.is_visible()


async def _texts(rows: PwLocator) -> list[str]:
    """Return the text of every row, to tell when paging changed them."""
    texts: list[str] = await rows.evaluate_all("els => els.map(e => e.innerText)")
    return texts


def explain(error: BaseException) -> str:
    """Say what a Playwright error means for the flow author, without its call log."""
    text = str(error)
    strict = STRICT_MODE.search(text)
    if strict:
        return (
            f"the locator matched {strict.group(1)} elements where one was needed (strict mode):"
            " narrow it with exact, has_text or nth"
        )
    if isinstance(error, AssertionError):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        shown = [line for line in lines[:3] if not line.startswith("Call log")]
        return "; ".join(shown) or "the expectation did not hold"
    reason = _first_line(error)
    if "element was detached from the DOM" in text:
        return f"{reason} (the element was detached: the page removed or re-rendered it)"
    covered = COVERED.search(text)
    if covered:
        return f"{reason} (another element covers it: {covered.group(1)})"
    return reason


def _first_line(error: BaseException) -> str:
    """Return the first line of a Playwright error, without its call log."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
