"""One SCIM request served end to end, so that the HTTP route only reads, calls and enqueues."""

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import NamedTuple

from scim2_models import UnauthorizedException
from scim2_server.handler import AsyncScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Operation
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.constants import SCIM_BUSY_RETRY_AFTER_S
from engine.jobs.outbox import Outbox
from engine.scim.cache import Tenant
from engine.scim.columns import storable
from engine.scim.dialect import normalise_body, normalise_query
from engine.scim.log import log_entry, log_refused
from engine.scim.provider import AppService, ScimServices
from engine.scim.storage import SqlScimStorage
from engine.storage.db import Database, database_busy
from engine.storage.models import Integration, Job
from engine.storage.tokens import same_hash

log = logging.getLogger(__name__)

REFUSED = "a valid bearer token for this integration is required"
BUSY = "the database is busy with other writes; send the request again shortly"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
WRITES = frozenset(
    {Operation.create, Operation.replace, Operation.patch, Operation.delete, Operation.bulk}
)
"""The operations that change resources; every other one is served by a reader."""


class Served(NamedTuple):
    """The answer to one SCIM request, and the jobs its commit queued, to enqueue next."""

    response: ScimResponse
    jobs: list[Job]


def scim_error(
    status: HTTPStatus, detail: str, headers: dict[str, str] | None = None
) -> ScimResponse:
    """Return a SCIM error response built here rather than by scim2-server."""
    body = {"schemas": [ERROR_SCHEMA], "status": str(int(status)), "detail": detail}
    return ScimResponse(status, body, headers or {})


def busy(integration_id: str) -> ScimResponse:
    """Answer a request the busy database could not take with a 503 and when to retry."""
    log.warning(
        "integration %s: a SCIM write found the database busy; answered 503", integration_id
    )
    retry = {"Retry-After": str(SCIM_BUSY_RETRY_AFTER_S)}
    return scim_error(HTTPStatus.SERVICE_UNAVAILABLE, BUSY, retry)


def bearer(request: ScimRequest) -> str | None:
    """Return the bearer token of a request, if it has one."""
    header = request.header("Authorization") or ""
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def read_tenant(db: Database, integration_id: str) -> Tenant | None:
    """Read what a SCIM request needs of an integration, through a reader."""
    async with db.reader() as session:
        integration = await session.get(Integration, integration_id)
    if integration is None:
        return None
    return Tenant(integration.id, integration.app, integration.scim_token_hash)


async def authenticated(
    db: Database,
    services: ScimServices,
    integration_id: str,
    request: ScimRequest,
    *,
    needs_auth: bool,
) -> Tenant:
    """Return the integration addressed; 401 alike for a bad token and an unknown id.

    The integration's token hash is trusted for SCIM_AUTH_CACHE_S; a token that does not
    match it is checked against the database at once, so a new token works immediately
    and a rotated one is refused within that time in every process.
    """
    token = bearer(request)
    if not storable(integration_id) or (needs_auth and token is None):
        raise UnauthorizedException(detail=REFUSED)
    tenant = services.tenants.get(integration_id)
    if tenant is None or (token is not None and not same_hash(token, tenant.token_hash)):
        tenant = await read_tenant(db, integration_id)
        if tenant is None:
            services.tenants.drop(integration_id)
            raise UnauthorizedException(detail=REFUSED)
        services.tenants.put(integration_id, tenant)
    if needs_auth and (token is None or not same_hash(token, tenant.token_hash)):
        raise UnauthorizedException(detail=REFUSED)
    return tenant


async def serve_scim(
    db: Database,
    services: ScimServices,
    *,
    integration_id: str,
    method: str,
    base_url: str,
    path: str,
    query: Mapping[str, str],
    headers: Sequence[tuple[str, str]],
    read_body: Callable[[], Awaitable[bytes]],
) -> Served:
    """Serve one SCIM request for one integration, committing its resources and jobs together.

    `base_url` is the integration's SCIM root URL and `path` the part after it. The body is
    read through `read_body` only once the integration is authenticated; a SCIM exception it
    raises (such as a 413) is answered like any other. A read is served by a reader, which
    never takes SQLite's write lock, and its log line is written with the next batch; a
    write is one write transaction, begun only once the body is read and valid. Nothing
    is enqueued here: the caller enqueues `jobs` once this returns, after the commit.
    """
    front = services.front
    scim_request = ScimRequest(
        method=method,
        base_url=base_url,
        path=front.split_path("/" + path),
        query=normalise_query(query),
        headers=list(headers),
    )
    jobs: list[Job] = []
    logged = False
    try:
        needs_auth = front.needs_auth(scim_request)
        tenant = await authenticated(
            db, services, integration_id, scim_request, needs_auth=needs_auth
        )
        body = await read_body()
        scim_request.body = normalise_body(scim_request.method, scim_request.path, body)
        app = services.app(tenant.app)
        front = app.front
        if front.service.match(scim_request).operation in WRITES:
            response, jobs = await _write(db, services, app, tenant, scim_request, path)
        else:
            response, logged = await _read(db, services, app, tenant, scim_request, path), True
    except Exception as exception:
        if not database_busy(exception):
            response = front.handle_exception(scim_request, exception)
        else:
            response = busy(integration_id)
            services.log.keep(db, log_entry(integration_id, method, path, 503, None, []))
            logged = True  # with the next batch: the busy database would only wait again
    status = int(response.status)
    if status >= 400 and not logged and storable(integration_id):
        refused = log_entry(integration_id, method, path, status, None, [])
        await log_refused(db, refused)
    return Served(front.finalize_response(scim_request, response), jobs)


def _storage(
    session: AsyncSession, app: AppService, tenant: Tenant, outbox: Outbox
) -> SqlScimStorage:
    """Return the SCIM storage of one request's transaction, with no savepoint per operation:
    a failed request is rolled back whole (Usher serves no bulk requests)."""
    return SqlScimStorage(
        session,
        tenant.id,
        outbox,
        provider=app.service.provider,
        catalogue=app.template.entitlements,
        savepoints=False,
    )


async def _read(
    db: Database,
    services: ScimServices,
    app: AppService,
    tenant: Tenant,
    scim_request: ScimRequest,
    path: str,
) -> ScimResponse:
    """Serve a read in a reader; its log line, whatever its answer, goes with the next batch."""
    try:
        async with db.reader() as session:
            storage = _storage(session, app, tenant, Outbox(session, app.template))
            response = await AsyncScimHandler(app.service, storage).handle(scim_request)
    except Exception as exception:
        response = app.front.handle_exception(scim_request, exception)
    status = int(response.status)
    body = response.body if status < 400 else None
    services.log.keep(db, log_entry(tenant.id, scim_request.method, path, status, body, []))
    return response


async def _write(
    db: Database,
    services: ScimServices,
    app: AppService,
    tenant: Tenant,
    scim_request: ScimRequest,
    path: str,
) -> tuple[ScimResponse, list[Job]]:
    """Serve a write in one transaction: the resources, their jobs and its log line.

    The rows go to the database with the commit; a unique index refusing them there is
    answered 409 like a clash found before.
    """
    async with db.session() as session:
        outbox = Outbox(session, app.template)
        storage = _storage(session, app, tenant, outbox)
        try:
            response = await AsyncScimHandler(app.service, storage).handle(scim_request)
            status = int(response.status)
            if status >= 400:
                return response, []
            jobs = list(outbox.pending.values())
            entry = log_entry(tenant.id, scim_request.method, path, status, response.body, jobs)
            session.add(entry)
            await services.log.prune_if_due(session, tenant.id)
            await session.commit()
        except IntegrityError:
            await session.rollback()
            clash = await storage.clash()
            if clash is None:
                raise
            return app.front.handle_exception(scim_request, clash), []
    return response, jobs
