"""Prometheus metrics of the API process, with what the database alone knows."""

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status

from api.deps import DbDep, SettingsDep
from engine.jobs.health import scrape
from engine.metrics import allowed

router = APIRouter(tags=["metrics"])


def check_scraper(settings: SettingsDep, request: Request) -> None:
    """Answer 404 when metrics are turned off and 401 without the metrics token, if one is set."""
    if not settings.metrics_enabled:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "metrics are off (USHER_METRICS_ENABLED)")
    if not allowed(settings.metrics_token, request.headers.get("authorization")):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the metrics token is required (USHER_METRICS_TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(check_scraper)])
async def metrics(request: Request, db: DbDep) -> Response:
    """Serve this process's counters and the database's gauges in Prometheus' text format."""
    body, content_type = await scrape(db, request.headers.get("accept"))
    return Response(content=body, media_type=content_type)
