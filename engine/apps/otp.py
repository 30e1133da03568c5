"""A `totp_seed` secret: the base32 seed, or the otpauth:// URI an app's QR code carries.

Most apps use 30-second, six-digit SHA-1 codes, but not all: the URI carries the period, the
digits and the algorithm, so an admin can paste what the app's enrolment QR code encodes.
"""

import binascii
import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp

from engine.constants import TOTP_DEFAULT_PERIOD_S, TOTP_MIN_SEED_BITS

OTPAUTH_SCHEME = "otpauth"
ALGORITHMS: dict[str, Callable[..., Any]] = {
    "SHA1": hashlib.sha1,
    "SHA256": hashlib.sha256,
    "SHA512": hashlib.sha512,
}
DIGITS = (6, 7, 8)


class TotpSecretError(ValueError):
    """A totp_seed secret that yields no codes; the message never repeats the secret."""


class AppTotp(pyotp.TOTP):
    """A TOTP whose seed the app chose: Usher types its codes, however short the seed."""

    min_secret_length_bits = TOTP_MIN_SEED_BITS


def totp_of(secret: str) -> pyotp.TOTP:
    """Return the TOTP a secret describes, or raise TotpSecretError saying what is wrong."""
    text = secret.strip()
    if text.lower().startswith(f"{OTPAUTH_SCHEME}:"):
        return _from_uri(text)
    return _made(seed=text, interval=TOTP_DEFAULT_PERIOD_S)


def _from_uri(uri: str) -> pyotp.TOTP:
    """Read an otpauth://totp/ URI's seed, period, digits and algorithm."""
    parts = urlsplit(uri)
    if parts.netloc.lower() != "totp":
        raise TotpSecretError("the otpauth URI is not for TOTP (otpauth://totp/...)")
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    algorithm = query.get("algorithm", "SHA1").upper()
    if algorithm not in ALGORITHMS:
        raise TotpSecretError(
            f"the otpauth URI's algorithm {algorithm} is not one of SHA1, SHA256, SHA512"
        )
    try:
        digits = int(query.get("digits", "6"))
        period = int(query.get("period", str(TOTP_DEFAULT_PERIOD_S)))
    except ValueError:
        raise TotpSecretError("the otpauth URI's digits and period must be numbers") from None
    if digits not in DIGITS or period <= 0:
        raise TotpSecretError("the otpauth URI needs 6 to 8 digits and a positive period")
    return _made(
        seed=query.get("secret", ""), interval=period, digits=digits, digest=ALGORITHMS[algorithm]
    )


def _made(seed: str, **options: Any) -> pyotp.TOTP:
    """Build the TOTP and make one code, so a bad seed fails when stored, not at sign-in."""
    cleaned = "".join(seed.split()).upper().rstrip("=")
    if not cleaned:
        raise TotpSecretError("the TOTP seed is empty")
    try:
        totp = AppTotp(cleaned, **options)
        totp.at(0)
    except (ValueError, binascii.Error):
        raise TotpSecretError(
            f"the TOTP seed is not base32 (letters A-Z, digits 2-7) of at least "
            f"{TOTP_MIN_SEED_BITS} bits"
        ) from None
    return totp
