"""Run the API alone (`usher serve`) or with a worker in one process (`usher up`)."""

import asyncio
import contextlib
import logging
import signal

import uvicorn

from api.app import create_app
from cli.serving import uvicorn_server
from engine.jobs.worker import run_workers
from engine.settings import Settings

log = logging.getLogger(__name__)


def _server(settings: Settings, redis_url: str) -> uvicorn.Server:
    """Return a uvicorn server for the API."""
    return uvicorn_server(
        create_app(settings, redis_url=redis_url), host=settings.host, port=settings.port
    )


async def run_serve(settings: Settings, redis_url: str) -> None:
    """Serve the API until SIGINT or SIGTERM."""
    await _server(settings, redis_url).serve()


async def run_up(settings: Settings, redis_url: str) -> None:
    """Serve the API and run a worker over one Redis until SIGINT or SIGTERM."""
    server = _server(settings, redis_url)
    # uvicorn re-raises the signal that stopped it once it has shut down; with the default
    # handlers that kills the process before the worker closes and the caller stops the
    # Redis it owns. Route SIGINT and SIGTERM to the server's own handler for the whole run
    # so a stop is always a clean return.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, server.handle_exit)
    workers = asyncio.create_task(run_workers(settings, redis_url, handle_signals=False))
    try:
        await server.serve()
    finally:
        workers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await workers
