"""Run inline flows against small pages served over HTTP, keeping every step and artifact."""

import io
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.async_api import Page
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from engine.automation.browser import BrowserPool
from engine.automation.errors import FlowFailed
from engine.automation.language import Flow
from engine.automation.runner import Artifact, FlowOutcome, FlowRunner, RunContext, StepResult
from engine.automation.totp import RedisTotpLedger
from fixtures.server import ThreadedServer

Handler = Callable[[Request], Any]


class KeepingSink:
    """Keep every step the runner records with its artifacts."""

    def __init__(self) -> None:
        self.results: list[StepResult] = []
        self.artifacts: list[list[Artifact]] = []

    async def record(self, result: StepResult, artifacts: list[Artifact]) -> None:
        """Keep the step and its evidence."""
        self.results.append(result)
        self.artifacts.append(artifacts)

    def named(self, name: str) -> StepResult:
        """Return the one step recorded under a name."""
        found = [r for r in self.results if r.name == name]
        assert len(found) == 1, [r.name for r in self.results]
        return found[0]

    def screenshot_of(self, name: str) -> bytes:
        """Return the screenshot of the step recorded under a name."""
        index = self.results.index(self.named(name))
        shots = [a for a in self.artifacts[index] if a.kind == "screenshot"]
        assert shots, f"step {name!r} has no screenshot"
        return shots[0].data


@dataclass
class Ran:
    """What one inline flow did: its outcome or failure, its steps, its runner."""

    sink: KeepingSink
    runner: FlowRunner
    outcome: FlowOutcome | None = None
    failure: FlowFailed | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def html(body: str) -> Handler:
    """Return a handler that serves one page."""

    async def serve(_: Request) -> Response:
        return HTMLResponse(f"<!doctype html><title>t</title>{body}")

    return serve


def as_json(make: Callable[[Request], Any]) -> Handler:
    """Return a handler that answers JSON made from the request."""

    async def serve(request: Request) -> Response:
        return JSONResponse(make(request))

    return serve


@contextmanager
def serve(routes: dict[str, Handler]) -> Iterator[ThreadedServer]:
    """Serve handlers by path on 127.0.0.1 for one test module."""
    app = Starlette(
        routes=[Route(path, handler, methods=["GET", "POST"]) for path, handler in routes.items()]
    )
    with ThreadedServer(app) as server:
        yield server


def goto(path: str) -> dict[str, str]:
    """Return a goto step on the test site."""
    return {"goto": "{{ integration.base_url }}" + path}


async def run_flow(
    browsers: BrowserPool,
    base_url: str,
    redis_url: str,
    flow: Flow | list[dict[str, Any]],
    *,
    variables: dict[str, Any] | None = None,
    viewport: dict[str, int] | None = None,
    prepare: Callable[[Page], Awaitable[None]] | None = None,
    secrets: dict[str, str] | None = None,
    files_dir: Path | None = None,
    read_page: Callable[[Page], Awaitable[Any]] | None = None,
    fragments_dir: Path | None = None,
) -> Ran:
    """Run a flow (or inline steps) on a fresh page; keep its failure instead of raising it.

    `read_page` reads the page after the flow, with Playwright itself rather than the
    runner, into `extra["page"]`: what a step did is checked past the step under test.
    """
    if not isinstance(flow, Flow):
        flow = Flow.model_validate({"action": "t", "steps": flow})
    context = RunContext(
        base_url=base_url,
        secrets=secrets or {},
        variables={"integration": {"base_url": base_url}, **(variables or {})},
        ledger=RedisTotpLedger(Redis.from_url(redis_url)),
        totp_account="pages",
        step_timeout_ms=2000,
        files_dir=files_dir,
        fragments_dir=fragments_dir,
    )
    sink = KeepingSink()
    async with browsers.context() as browser_context:
        page = await browser_context.new_page()
        if viewport:
            await page.set_viewport_size(viewport)  # type: ignore[arg-type]
        if prepare:
            await prepare(page)
        runner = FlowRunner(page, context)
        await runner.guard_navigation()
        ran = Ran(sink, runner)
        try:
            ran.outcome = await runner.run(flow, sink)
        except FlowFailed as error:
            ran.failure = error
        if read_page is not None:
            ran.extra["page"] = await read_page(page)
        return ran


def evaluated(script: str) -> Callable[[Page], Awaitable[Any]]:
    """Return a `read_page` that evaluates a JavaScript expression on the page."""

    async def read(page: Page) -> Any:
        return await page.evaluate(script)

    return read


def pixels_of(png: bytes, colour: tuple[int, ...]) -> int:
    """Count the pixels of a screenshot painted in one colour."""
    data = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    return sum(1 for i in range(0, len(data), 3) if tuple(data[i : i + 3]) == colour)
