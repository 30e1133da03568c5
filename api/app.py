"""The FastAPI app factory: one Settings in, every dependency built once."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import SignInRequired
from api.metrics import ScimMetrics
from api.pages import STATIC_DIR
from api.routes import (
    assignments,
    evidence,
    guard,
    health,
    integration_pages,
    integrations,
    jobs,
    login,
    metrics,
    pages,
    scim,
)
from engine.jobs.queue import JobQueue
from engine.operators.sessions import Sessions, session_secret
from engine.scim.provider import ScimServices
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.evidence import evidence_store
from engine.version import usher_version

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, redis_url: str) -> FastAPI:
    """Build the API for one Settings and one Redis."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database.from_settings(settings)
        await db.migrate()
        app.state.db = db
        app.state.evidence = evidence_store(settings, db)
        app.state.queue = await JobQueue.connect(redis_url)
        try:
            yield
        finally:
            await app.state.scim_services.close(db)
            await app.state.queue.close()
            await db.dispose()

    app = FastAPI(title="Usher", version=usher_version(), lifespan=lifespan)
    app.state.settings = settings
    app.state.scim_services = ScimServices(settings)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.add_middleware(ScimMetrics)
    app.include_router(scim.router)
    app.include_router(jobs.router)
    app.include_router(evidence.router)
    app.include_router(integrations.router)
    app.include_router(guard.router)
    app.include_router(assignments.router)
    app.state.sessions = Sessions(session_secret(settings))
    app.include_router(login.router)
    app.include_router(pages.router)
    app.include_router(integration_pages.router)
    app.include_router(guard.pages)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, _error: SignInRequired) -> RedirectResponse:
        """Send a browser without a valid session to the sign-in page, and back afterwards."""
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        """Answer a bug with a plain 500 and log it; never send a stack trace to a client."""
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        """Answer under /scim/ with a SCIM error, even where no SCIM route matched."""
        if request.url.path.startswith(scim.SCIM_PREFIX):
            return scim.http_error(error.status_code, str(error.detail))
        return await http_exception_handler(request, error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        """Answer bad input with what was wrong, without echoing the input itself."""
        problems = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()
        ]
        return JSONResponse({"detail": problems}, status_code=422)

    return app
