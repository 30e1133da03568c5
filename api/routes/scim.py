"""SCIM over HTTP per integration: the engine serves each request; the route reads and enqueues."""

import json
import re
from functools import partial
from http import HTTPStatus
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from scim2_models import PayloadTooLargeException
from scim2_server.responses import ScimResponse

from api.deps import DbDep, QueueDep
from engine.constants import JOB_ID_HEADER, SCIM_MAX_BODY_BYTES
from engine.scim.service import scim_error, serve_scim

router = APIRouter(tags=["scim"])
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
"""Every method, so that scim2-server answers the unsupported ones with a SCIM 405."""
URL_HEADERS = frozenset({"location", "content-location"})
SCIM_PREFIX = "/scim/"


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
    return _to_response(scim_error(HTTPStatus(status_code), detail))


@router.api_route("/scim/v2/{integration_id}", methods=METHODS, include_in_schema=False)
@router.api_route("/scim/v2/{integration_id}/{path:path}", methods=METHODS)
async def scim(
    integration_id: str,
    request: Request,
    db: DbDep,
    queue: QueueDep,
) -> Response:
    """Serve one SCIM request for one integration, then enqueue the jobs it committed."""
    served = await serve_scim(
        db,
        request.app.state.scim_services,
        integration_id=integration_id,
        method=request.method,
        base_url=f"{str(request.base_url).rstrip('/')}/scim/v2/{integration_id}",
        path=request.path_params.get("path", ""),
        query=request.query_params,
        headers=list(request.headers.items()),
        read_body=partial(_read_body, request),
    )
    await queue.enqueue_all(served.jobs)
    response = _to_response(served.response)
    if served.jobs:
        response.headers[JOB_ID_HEADER] = ", ".join(job.id for job in served.jobs)
    return response
