"""Run the API alone (`usher serve`) or with a worker in one process (`usher up`)."""

import asyncio
import contextlib
import logging

import uvicorn

from api.app import create_app
from cli.embedded import EmbeddedRedis
from engine.jobs.worker import build_worker
from engine.settings import Settings

log = logging.getLogger(__name__)


def _server(settings: Settings, redis_url: str) -> uvicorn.Server:
    """Return a uvicorn server for the API."""
    config = uvicorn.Config(
        create_app(settings, redis_url=redis_url),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
    )
    return uvicorn.Server(config)


async def run_serve(settings: Settings, redis_url: str) -> None:
    """Serve the API until SIGINT or SIGTERM."""
    await _server(settings, redis_url).serve()


async def run_up(settings: Settings) -> None:
    """Serve the API and run a worker until SIGINT or SIGTERM, over an embedded Redis if need be."""
    embedded = None if settings.redis_url else EmbeddedRedis(settings.data_dir)
    redis_url = settings.redis_url or (embedded.url if embedded else "")
    worker = build_worker(settings, redis_url, handle_signals=False)
    worker_task = asyncio.create_task(worker.async_run())
    try:
        await _server(settings, redis_url).serve()
    finally:
        worker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker_task
        await worker.close()
        if embedded is not None:
            embedded.close()
