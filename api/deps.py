"""Typed dependencies shared by the routes."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.jobs.queue import JobQueue
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.evidence import EvidenceStore
from engine.storage.models import ApiToken, utcnow
from engine.storage.tokens import hash_token


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


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
EvidenceDep = Annotated[EvidenceStore, Depends(get_evidence)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False)


async def current_operator(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    """Return the operator token of the request, or answer 401."""
    refused = HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "a valid operator API token is required (usher tokens create)",
        headers={"WWW-Authenticate": "Bearer"},
    )
    if credentials is None:
        raise refused
    query = select(ApiToken).where(ApiToken.token_hash == hash_token(credentials.credentials))
    token = (await session.exec(query)).first()
    if token is None:
        raise refused
    token.last_used_at = utcnow()
    session.add(token)
    await session.commit()
    return token


CurrentOperator = Annotated[ApiToken, Depends(current_operator)]
