"""Typed dependencies shared by the routes."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.keys import is_integration_key, key_holder
from engine.constants import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE
from engine.jobs.assignments import Requester
from engine.jobs.queue import JobQueue
from engine.operators.sessions import Principal, Sessions, session_principal, token_principal
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.evidence import EvidenceStore


def get_settings(request: Request) -> Settings:
    """Return the app's Settings."""
    return request.app.state.settings


def get_db(request: Request) -> Database:
    """Return the app's Database."""
    return request.app.state.db


def get_queue(request: Request) -> JobQueue:
    """Return the app's job queue."""
    return request.app.state.queue


def get_evidence(request: Request) -> EvidenceStore:
    """Return the app's evidence store."""
    return request.app.state.evidence


async def get_session(db: Annotated[Database, Depends(get_db)]) -> AsyncIterator[AsyncSession]:
    """Yield a session for one request."""
    async with db.session() as session:
        yield session


async def get_reader(db: Annotated[Database, Depends(get_db)]) -> AsyncIterator[AsyncSession]:
    """Yield a read-only session for one request: a page view never takes the write lock."""
    async with db.reader() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
EvidenceDep = Annotated[EvidenceStore, Depends(get_evidence)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
ReaderDep = Annotated[AsyncSession, Depends(get_reader)]

_bearer = HTTPBearer(auto_error=False)


def get_sessions(request: Request) -> Sessions:
    """Return the app's session cookie signer."""
    return request.app.state.sessions


SessionsDep = Annotated[Sessions, Depends(get_sessions)]


class SignInRequired(Exception):
    """A page was asked for without a valid session: the app answers with the sign-in page."""


async def current_operator(
    request: Request,
    db: DbDep,
    sessions: SessionsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Return who asks, by operator API token or session cookie, or answer 401.

    Each look-up ends its own transaction, so the route's own writes never wait for it.
    """
    if credentials is not None:
        async with db.session() as session:
            principal = await token_principal(session, credentials.credentials)
    else:
        async with db.reader() as session:
            cookie = request.cookies.get(SESSION_COOKIE)
            principal = await session_principal(session, sessions, cookie)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid operator API token is required (usher tokens create)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


CurrentOperator = Annotated[Principal, Depends(current_operator)]


async def admin_operator(
    request: Request, principal: CurrentOperator, sessions: SessionsDep
) -> Principal:
    """Return an admin, or answer 403; a session (not a token) must also send its CSRF header."""
    if not principal.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a viewer reads and changes nothing")
    if principal.nonce is not None and not sessions.csrf_ok(
        principal.nonce, request.headers.get(CSRF_HEADER)
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"the {CSRF_HEADER} header is missing")
    return principal


AdminOperator = Annotated[Principal, Depends(admin_operator)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _key_requester(
    db: Database, credentials: HTTPAuthorizationCredentials | None
) -> Requester | None:
    """Return the integration an API key speaks for; None for an operator; 401 for a bad key."""
    if credentials is None or not is_integration_key(credentials.credentials):
        return None
    async with db.session() as session:
        holder = await key_holder(session, credentials.credentials)
    if holder is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this API key is unknown or revoked (usher integrations keys ID lists them)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Requester(holder.actor, holder.integration_id)


async def assignment_reader(
    request: Request, db: DbDep, sessions: SessionsDep, credentials: BearerDep
) -> Requester:
    """Return who reads assignments: an integration's API key (its own), or any operator."""
    by_key = await _key_requester(db, credentials)
    if by_key is not None:
        return by_key
    principal = await current_operator(request, db, sessions, credentials)
    return Requester(principal.name)


async def assignment_writer(
    request: Request, db: DbDep, sessions: SessionsDep, credentials: BearerDep
) -> Requester:
    """Return who changes assignments: an integration's API key (its own), or an admin."""
    by_key = await _key_requester(db, credentials)
    if by_key is not None:
        return by_key
    principal = await current_operator(request, db, sessions, credentials)
    admin = await admin_operator(request, principal, sessions)
    return Requester(admin.name)


AssignmentReader = Annotated[Requester, Depends(assignment_reader)]
AssignmentWriter = Annotated[Requester, Depends(assignment_writer)]


async def page_operator(request: Request, db: DbDep, sessions: SessionsDep) -> Principal:
    """Return the signed-in operator of a page, or send the browser to sign in."""
    async with db.reader() as session:
        cookie = request.cookies.get(SESSION_COOKIE)
        principal = await session_principal(session, sessions, cookie)
    if principal is None:
        raise SignInRequired
    return principal


PageOperator = Annotated[Principal, Depends(page_operator)]


async def page_admin(request: Request, principal: PageOperator, sessions: SessionsDep) -> Principal:
    """Return the admin who posted a page's form with its CSRF token, or answer 403."""
    if not principal.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a viewer reads and changes nothing")
    form = await request.form()
    token = form.get(CSRF_FIELD)
    if not sessions.csrf_ok(principal.nonce, token if isinstance(token, str) else None):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form's CSRF token is wrong")
    return principal


PageAdmin = Annotated[Principal, Depends(page_admin)]
