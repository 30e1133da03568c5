"""The integrations' pages: what the IT admin pastes into the IdP, the SCIM log, the people."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from sqlmodel.ext.asyncio.session import AsyncSession

from api.deps import PageAdmin, PageOperator, ReaderDep, SessionDep, SettingsDep
from api.pages import render
from engine.apps.integrations import IntegrationError, describe_integration, list_integrations
from engine.apps.integrations import rotate_token as rotate_scim_token
from engine.apps.webhooks import describe_webhook
from engine.constants import PEOPLE_PAGE_SIZE
from engine.jobs.guard import guard_view
from engine.jobs.people import list_people, recent_counts
from engine.jobs.ui_drift import integration_fallbacks
from engine.operators.sessions import Principal
from engine.scim.log import read_log
from engine.settings import Settings
from engine.storage.models import Integration
from engine.storage.vault import Vault

router = APIRouter(include_in_schema=False)
Search = Annotated[str | None, Query(max_length=200)]


async def _integration(session: ReaderDep, integration_id: str) -> Integration:
    """Return an integration, or answer 404."""
    integration = await session.get(Integration, integration_id)
    if integration is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no integration {integration_id}")
    return integration


@router.get("/integrations", response_class=HTMLResponse)
async def integrations_page(
    request: Request, session: ReaderDep, operator: PageOperator, settings: SettingsDep
) -> HTMLResponse:
    """List every integration with its health and SCIM base URL."""
    found = await list_integrations(session)
    return render(
        request,
        "integrations.html",
        operator,
        integrations=found,
        public_url=settings.public_url.rstrip("/"),
    )


async def _integration_page(
    request: Request,
    session: AsyncSession,
    settings: Settings,
    operator: Principal,
    integration_id: str,
    token: str | None = None,
) -> HTMLResponse:
    """Render an integration, with a new SCIM token shown this once when there is one.

    Beside what to paste into the IdP: the steps its last runs needed a fallback for (why
    it is degraded) and its latest alert deliveries.
    """
    vault = Vault.from_path(settings.vault_key_path)
    try:
        view = await describe_integration(session, settings, vault, integration_id)
    except IntegrationError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    return render(
        request,
        "integration.html",
        operator,
        view=view,
        counts=await recent_counts(session, integration_id),
        guard=await guard_view(session, integration_id),
        fallbacks=await integration_fallbacks(session, integration_id),
        webhook=await describe_webhook(session, integration_id),
        token=token,
    )


@router.get("/integrations/{integration_id}", response_class=HTMLResponse)
async def integration_page(
    integration_id: str,
    request: Request,
    session: ReaderDep,
    operator: PageOperator,
    settings: SettingsDep,
) -> HTMLResponse:
    """Show what the IT admin pastes into the IdP: SCIM URL, entitlement values, mappings."""
    return await _integration_page(request, session, settings, operator, integration_id)


@router.post("/integrations/{integration_id}/rotate-token", response_class=HTMLResponse)
async def rotate_token_page(
    integration_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    admin: PageAdmin,
) -> HTMLResponse:
    """Replace the SCIM token and show the new one, this once."""
    try:
        token = await rotate_scim_token(session, integration_id, actor=admin.name)
    except IntegrationError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    return await _integration_page(request, session, settings, admin, integration_id, token)


@router.get("/integrations/{integration_id}/scim-log", response_class=HTMLResponse)
async def scim_log_page(
    integration_id: str,
    request: Request,
    session: ReaderDep,
    operator: PageOperator,
    before: Search = None,
) -> HTMLResponse:
    """Show each request the IdP made, newest first, with the job it queued."""
    integration = await _integration(session, integration_id)
    page = await read_log(session, integration.id, before=before)
    return render(request, "scim_log.html", operator, integration=integration, page=page)


@router.get("/integrations/{integration_id}/people", response_class=HTMLResponse)
async def people_page(
    integration_id: str,
    request: Request,
    session: ReaderDep,
    operator: PageOperator,
    q: Search = None,
) -> HTMLResponse:
    """Show each identity's provisioning state, searchable by name or email."""
    integration = await _integration(session, integration_id)
    people = await list_people(session, integration.id, q)
    return render(
        request,
        "people.html",
        operator,
        integration=integration,
        people=people,
        q=q or "",
        limit=PEOPLE_PAGE_SIZE,
    )
