"""SCIM 2.0 per integration: authenticate, then serve through scim2-server's handler."""

import json
import logging

from fastapi import APIRouter, Request, Response
from scim2_models import UnauthorizedException
from scim2_server.applications.base import BaseApplication
from scim2_server.handler import AsyncScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.service import ScimService

from api.deps import DbDep, QueueDep, SettingsDep
from engine.apps import load_app
from engine.constants import SCIM_MAX_BODY_BYTES
from engine.db import Database
from engine.directory import SqlScimStorage
from engine.models import Integration
from engine.outbox import Outbox
from engine.tokens import same_hash

log = logging.getLogger(__name__)
router = APIRouter(tags=["scim"])
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _bearer(request: ScimRequest) -> str | None:
    """Return the bearer token of a request, if it has one."""
    header = request.header("Authorization") or ""
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def _integration(
    db: Database, integration_id: str, request: ScimRequest, *, needs_auth: bool
) -> Integration:
    """Return the integration addressed; 401 alike for a bad token and an unknown id."""
    token = _bearer(request)
    async with db.session() as session:
        integration = await session.get(Integration, integration_id)
    if integration is None:
        raise UnauthorizedException(detail="a valid bearer token for this integration is required")
    if needs_auth and (token is None or not same_hash(token, integration.scim_token_hash)):
        raise UnauthorizedException(detail="a valid bearer token for this integration is required")
    return integration


async def _read_body(request: Request) -> bytes | None:
    """Read the body up to the limit; None when it is larger."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > SCIM_MAX_BODY_BYTES:
            return None
    return body


def _to_response(response: ScimResponse) -> Response:
    """Turn a ScimResponse into a FastAPI response, always application/scim+json."""
    content = b"" if response.body is None else json.dumps(response.body).encode()
    return Response(content=content, status_code=int(response.status), headers=response.headers)


@router.api_route("/scim/v2/{integration_id}/{path:path}", methods=METHODS)
async def scim(
    integration_id: str,
    path: str,
    request: Request,
    db: DbDep,
    queue: QueueDep,
    settings: SettingsDep,
) -> Response:
    """Serve one SCIM request for one integration, committing resource and job together."""
    service: ScimService = request.app.state.scim_service
    front = BaseApplication(service.provider, service)
    base_url = f"{str(request.base_url).rstrip('/')}/scim/v2/{integration_id}"
    scim_request = ScimRequest(
        method=request.method,
        base_url=base_url,
        path=front.split_path("/" + path),
        query=dict(request.query_params),
        headers=list(request.headers.items()),
    )
    pending = []
    try:
        body = await _read_body(request)
        if body is None:
            raise service.payload_too_large(SCIM_MAX_BODY_BYTES)
        scim_request.body = body
        needs_auth = front.needs_auth(scim_request)
        integration = await _integration(db, integration_id, scim_request, needs_auth=needs_auth)
        async with db.session() as session:
            outbox = Outbox(session, load_app(settings.flows_dir, integration.app))
            storage = SqlScimStorage(session, integration.id, outbox, provider=service.provider)
            response = await AsyncScimHandler(service, storage).handle(scim_request)
            if int(response.status) < 400:
                await session.commit()
                pending = list(outbox.pending.values())
    except Exception as exception:
        response = front.handle_exception(scim_request, exception)
    await queue.enqueue_all(pending)
    return _to_response(front.finalize_response(scim_request, response))
