"""Stateless sign-in: a signed session cookie, CSRF tokens bound to it, who is asking."""

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.constants import SESSION_MAX_AGE_S, TOKEN_BYTES
from engine.settings import Settings
from engine.storage.models import ApiToken, Operator, Role, utcnow
from engine.storage.tokens import hash_token


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in operator or an API token, with its role."""

    name: str
    role: str
    nonce: str | None = None
    """A session's random nonce, which its CSRF token is derived from; None for a token."""

    @property
    def admin(self) -> bool:
        """Tell whether this principal may change things."""
        return self.role == Role.admin


def session_secret(settings: Settings) -> str:
    """Return the secret that signs cookies: the setting, else a random key kept owner-only."""
    if settings.session_secret:
        return settings.session_secret
    path: Path = settings.session_key_path
    settings.ensure_data_dir()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(TOKEN_BYTES))
    return path.read_text().strip()


class Sessions:
    """Issue and read session cookies and CSRF tokens; no row is written per session."""

    def __init__(self, secret: str, *, max_age_s: int = SESSION_MAX_AGE_S) -> None:
        self.secret = secret.encode()
        self.max_age_s = max_age_s
        self.session_signer = URLSafeTimedSerializer(secret, salt="usher-session")
        self.login_signer = URLSafeTimedSerializer(secret, salt="usher-login")

    def issue(self, operator: Operator) -> str:
        """Return a session cookie's value for an operator who just signed in."""
        return self.session_signer.dumps({"o": operator.id, "n": secrets.token_urlsafe(16)})

    def read(self, cookie: str | None) -> tuple[str, str] | None:
        """Return (operator id, nonce) of a valid, unexpired cookie; None otherwise."""
        if not cookie:
            return None
        try:
            claims = self.session_signer.loads(cookie, max_age=self.max_age_s)
        except BadSignature:
            return None
        if not isinstance(claims, dict) or not {"o", "n"} <= claims.keys():
            return None
        return str(claims["o"]), str(claims["n"])

    def login_nonce(self) -> tuple[str, str]:
        """Return a fresh sign-in nonce and the signed cookie that carries it."""
        nonce = secrets.token_urlsafe(16)
        return nonce, self.login_signer.dumps(nonce)

    def read_login_nonce(self, cookie: str | None) -> str | None:
        """Return the nonce of a valid sign-in cookie, None otherwise."""
        if not cookie:
            return None
        try:
            return str(self.login_signer.loads(cookie, max_age=self.max_age_s))
        except BadSignature:
            return None

    def csrf_token(self, nonce: str) -> str:
        """Return the CSRF token of a nonce: a form must send it back with the cookie."""
        return hmac.new(self.secret, f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, nonce: str | None, token: str | None) -> bool:
        """Tell whether a form's CSRF token belongs to the cookie's nonce."""
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.csrf_token(nonce), token)


async def session_principal(
    session: AsyncSession, sessions: Sessions, cookie: str | None
) -> Principal | None:
    """Return the operator of a session cookie, reading (never writing) their row."""
    claims = sessions.read(cookie)
    if claims is None:
        return None
    operator = await session.get(Operator, claims[0])
    if operator is None or operator.disabled:
        return None
    return Principal(operator.username, operator.role, claims[1])


async def token_principal(session: AsyncSession, token: str) -> Principal | None:
    """Return the principal of an operator API token, noting when it was last used."""
    found = (
        await session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    ).first()
    if found is None:
        return None
    found.last_used_at = utcnow()
    session.add(found)
    await session.commit()
    return Principal(f"token:{found.name}", found.role)
