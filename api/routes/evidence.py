"""Evidence files for operators, served only to an operator (token or signed-in session)."""

from fastapi import APIRouter, HTTPException, Response, status

from api.deps import CurrentOperator, EvidenceDep, SessionDep
from engine.storage.models import Evidence

router = APIRouter(prefix="/api/evidence", tags=["evidence"])


@router.get("/{evidence_id}", name="read_evidence")
async def read_evidence(
    evidence_id: str, session: SessionDep, store: EvidenceDep, _operator: CurrentOperator
) -> Response:
    """Return one evidence file with its SHA-256 in a header."""
    item = await session.get(Evidence, evidence_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no evidence {evidence_id}")
    try:
        data = await store.get(item.key)
    except FileNotFoundError as error:
        raise HTTPException(status.HTTP_410_GONE, "the evidence file is missing") from error
    except ValueError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "outside the evidence store") from error
    headers = {"X-Content-SHA256": item.sha256, "Cache-Control": "private, max-age=3600"}
    return Response(content=data, media_type=item.content_type, headers=headers)
