"""One SCIM request served end to end, so that the HTTP route only reads, calls and enqueues."""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import NamedTuple

from scim2_models import UnauthorizedException
from scim2_server.applications.base import BaseApplication
from scim2_server.handler import AsyncScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse

from engine.apps.template import load_app
from engine.jobs.outbox import Outbox
from engine.scim.columns import storable
from engine.scim.dialect import normalise_body, normalise_query
from engine.scim.log import log_entry, log_refused, prune
from engine.scim.provider import ScimServices
from engine.scim.storage import SqlScimStorage
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import Integration, Job
from engine.storage.tokens import same_hash

REFUSED = "a valid bearer token for this integration is required"


class Served(NamedTuple):
    """The answer to one SCIM request, and the jobs its commit queued, to enqueue next."""

    response: ScimResponse
    jobs: list[Job]


def bearer(request: ScimRequest) -> str | None:
    """Return the bearer token of a request, if it has one."""
    header = request.header("Authorization") or ""
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def authenticated(
    db: Database, integration_id: str, request: ScimRequest, *, needs_auth: bool
) -> Integration:
    """Return the integration addressed; 401 alike for a bad token and an unknown id."""
    token = bearer(request)
    if not storable(integration_id):
        raise UnauthorizedException(detail=REFUSED)
    async with db.session() as session:
        integration = await session.get(Integration, integration_id)
    if integration is None:
        raise UnauthorizedException(detail=REFUSED)
    if needs_auth and (token is None or not same_hash(token, integration.scim_token_hash)):
        raise UnauthorizedException(detail=REFUSED)
    return integration


async def serve_scim(
    db: Database,
    services: ScimServices,
    settings: Settings,
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
    raises (such as a 413) is answered like any other. Nothing is enqueued here: the caller
    enqueues `jobs` once this returns, after the commit.
    """
    service = services.default
    front = BaseApplication(service.provider, service)
    scim_request = ScimRequest(
        method=method,
        base_url=base_url,
        path=front.split_path("/" + path),
        query=normalise_query(query),
        headers=list(headers),
    )
    jobs: list[Job] = []
    try:
        needs_auth = front.needs_auth(scim_request)
        integration = await authenticated(db, integration_id, scim_request, needs_auth=needs_auth)
        body = await read_body()
        scim_request.body = normalise_body(scim_request.method, scim_request.path, body)
        template = load_app(settings.flows_dir, integration.app)
        service = services.for_app(template)
        front = BaseApplication(service.provider, service)
        async with db.session() as session:
            outbox = Outbox(session, template)
            storage = SqlScimStorage(
                session,
                integration.id,
                outbox,
                provider=service.provider,
                catalogue=template.entitlements,
            )
            response = await AsyncScimHandler(service, storage).handle(scim_request)
            if int(response.status) < 400:
                jobs = list(outbox.pending.values())
                status = int(response.status)
                session.add(log_entry(integration.id, method, path, status, response.body, jobs))
                await prune(session, integration.id)
                await session.commit()
    except Exception as exception:
        response = front.handle_exception(scim_request, exception)
    if int(response.status) >= 400 and storable(integration_id):
        refused = log_entry(integration_id, method, path, int(response.status), None, [])
        await log_refused(db, refused)
    return Served(front.finalize_response(scim_request, response), jobs)
