"""Metrics over HTTP outside the API's routes: SCIM latency as the IdP sees it, and the
endpoint a worker process serves on its own port (`usher worker --metrics-port`).

A worker has no web server, and each worker process counts its own jobs; so each serves its
registry on a port of its own, from a thread, and Prometheus scrapes every process. This is
not prometheus_client's multiprocess mode, which shares files in one directory and so only
one machine's processes, while Usher's workers may run on several.
"""

import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.routes.scim import SCIM_PREFIX
from engine.metrics import allowed, observe_scim
from engine.settings import Settings

METRICS_PATH = "/metrics"


class ScimMetrics:
    """Time every request under /scim/ from its arrival to its answer, and count its status.

    A pure ASGI middleware: it sees errors answered before the SCIM route too (a 404 for
    no route, a 500), and adds no task or buffering to the request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, noting the status it is answered with and when."""
        if scope["type"] != "http" or not scope["path"].startswith(SCIM_PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = [500]

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting)
        finally:
            observe_scim(scope["method"], scope["path"], answered[0], time.perf_counter() - started)


class MetricsUnavailable(Exception):
    """A worker's metrics port could not be bound; the message says which and why."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """Answer each scrape in a thread of its own, so a slow scraper holds up no other."""

    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    """Log no line per scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        """Say nothing: a scrape every few seconds is no news."""


def worker_app(settings: Settings) -> Callable[..., Iterable[bytes]]:
    """Return the WSGI app of a worker's metrics: /metrics only, behind the metrics token."""
    registry_app = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"metrics are at /metrics\n"]
        if not allowed(settings.metrics_token, environ.get("HTTP_AUTHORIZATION")):
            headers = [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")]
            start_response("401 Unauthorized", headers)
            return [b"the metrics token is required (USHER_METRICS_TOKEN)\n"]
        return registry_app(environ, start_response)

    return app


class WorkerMetrics:
    """A worker's metrics endpoint, served from a daemon thread until stopped."""

    def __init__(self, settings: Settings) -> None:
        host, port = settings.metrics_host, settings.metrics_port
        try:
            self.server = make_server(
                host, port, worker_app(settings), _ThreadingServer, handler_class=_Quiet
            )
        except OSError as error:
            raise MetricsUnavailable(
                f"cannot serve metrics on {host}:{port}: {error.strerror or error}"
            ) from error
        self.url = f"http://{host}:{self.server.server_port}{METRICS_PATH}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="usher-metrics", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        """Stop answering and free the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
