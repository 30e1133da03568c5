"""SCIM 2.0 per integration: authenticate, normalise the IdP dialect, serve with scim2-server."""

import json
import logging
import re
from http import HTTPStatus
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from scim2_models import PayloadTooLargeException, UnauthorizedException
from scim2_server.applications.base import BaseApplication
from scim2_server.handler import AsyncScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.service import ScimService

from api.deps import DbDep, QueueDep, SettingsDep
from engine.apps.template import load_app
from engine.constants import SCIM_MAX_BODY_BYTES
from engine.jobs.outbox import Outbox
from engine.scim.columns import storable
from engine.scim.dialect import normalise_body, normalise_query
from engine.scim.provider import ScimServices
from engine.scim.storage import SqlScimStorage
from engine.storage.db import Database
from engine.storage.models import Integration
from engine.storage.tokens import same_hash

log = logging.getLogger(__name__)
router = APIRouter(tags=["scim"])
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
"""Every method, so that scim2-server answers the unsupported ones with a SCIM 405."""
URL_HEADERS = frozenset({"location", "content-location"})
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
SCIM_PREFIX = "/scim/"


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
    if not storable(integration_id):
        raise UnauthorizedException(detail="a valid bearer token for this integration is required")
    async with db.session() as session:
        integration = await session.get(Integration, integration_id)
    if integration is None:
        raise UnauthorizedException(detail="a valid bearer token for this integration is required")
    if needs_auth and (token is None or not same_hash(token, integration.scim_token_hash)):
        raise UnauthorizedException(detail="a valid bearer token for this integration is required")
    return integration


async def _read_body(request: Request) -> bytes:
    """Read the body up to the limit, refusing a larger one with a SCIM 413."""
    too_large = PayloadTooLargeException(
        detail=f"The request body exceeds {SCIM_MAX_BODY_BYTES} bytes"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > SCIM_MAX_BODY_BYTES:
        raise too_large
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > SCIM_MAX_BODY_BYTES:
            raise too_large
    return body


def _url_header(value: str) -> str:
    """Percent-encode what a URL header cannot carry: controls, spaces, non-ASCII."""
    return re.sub(r"[^\x21-\x7e]+", lambda m: quote(m.group(), safe=""), value)


def _to_response(response: ScimResponse) -> Response:
    """Turn a ScimResponse into a FastAPI response, always application/scim+json."""
    content = b"" if response.body is None else json.dumps(response.body).encode()
    headers = {
        name: _url_header(value) if name.lower() in URL_HEADERS else value
        for name, value in response.headers.items()
    }
    return Response(content=content, status_code=int(response.status), headers=headers)


def http_error(status_code: int, detail: str) -> Response:
    """Answer an error raised before the SCIM route (no route matched) as a SCIM error."""
    body = {"schemas": [ERROR_SCHEMA], "status": str(status_code), "detail": detail}
    return _to_response(ScimResponse(HTTPStatus(status_code), body))


@router.api_route("/scim/v2/{integration_id}", methods=METHODS, include_in_schema=False)
@router.api_route("/scim/v2/{integration_id}/{path:path}", methods=METHODS)
async def scim(
    integration_id: str,
    request: Request,
    db: DbDep,
    queue: QueueDep,
    settings: SettingsDep,
) -> Response:
    """Serve one SCIM request for one integration, committing resource and job together."""
    path = request.path_params.get("path", "")
    services: ScimServices = request.app.state.scim_services
    service: ScimService = services.default
    front = BaseApplication(service.provider, service)
    base_url = f"{str(request.base_url).rstrip('/')}/scim/v2/{integration_id}"
    scim_request = ScimRequest(
        method=request.method,
        base_url=base_url,
        path=front.split_path("/" + path),
        query=normalise_query(request.query_params),
        headers=list(request.headers.items()),
    )
    pending = []
    try:
        needs_auth = front.needs_auth(scim_request)
        integration = await _integration(db, integration_id, scim_request, needs_auth=needs_auth)
        body = await _read_body(request)
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
                await session.commit()
                pending = list(outbox.pending.values())
    except Exception as exception:
        response = front.handle_exception(scim_request, exception)
    await queue.enqueue_all(pending)
    return _to_response(front.finalize_response(scim_request, response))
