"""Bearer tokens: shown once, stored as SHA-256, compared in constant time."""

import hashlib
import hmac
import secrets

from engine.constants import TOKEN_BYTES


def new_token(prefix: str) -> str:
    """Return a fresh random token; the prefix tells SCIM and operator tokens apart in leaks."""
    return prefix + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """Return the hex SHA-256 of a token, the only form stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_hash(token: str, stored_hash: str) -> bool:
    """Tell whether a token matches a stored hash without leaking timing."""
    return hmac.compare_digest(hash_token(token), stored_hash)
