"""Secrets at rest: Fernet with a key generated into the data dir (0600)."""

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.storage.models import IntegrationSecret, utcnow


class VaultError(Exception):
    """The vault key is missing, unreadable or does not match the stored secrets."""


def load_or_create_key(path: Path) -> bytes:
    """Return the vault key, creating it owner-only on first use."""
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class Vault:
    """Encrypt and decrypt integration secrets; clear text never reaches the database."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_path(cls, path: Path) -> "Vault":
        """Open the vault whose key lives at path."""
        return cls(load_or_create_key(path))

    def encrypt(self, value: str) -> bytes:
        """Return the ciphertext of a secret."""
        return self._fernet.encrypt(value.encode())

    def decrypt(self, token: bytes) -> str:
        """Return the clear text of a ciphertext, or a VaultError that reveals nothing."""
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as error:
            raise VaultError("a stored secret does not match this vault key") from error

    async def put(self, session: AsyncSession, integration_id: str, name: str, value: str) -> None:
        """Store or replace one secret of an integration."""
        row = await session.get(IntegrationSecret, (integration_id, name))
        if row is None:
            row = IntegrationSecret(integration_id=integration_id, name=name, ciphertext=b"")
        row.ciphertext = self.encrypt(value)
        row.updated_at = utcnow()
        session.add(row)

    async def secrets_of(self, session: AsyncSession, integration_id: str) -> dict[str, str]:
        """Return every secret of an integration in clear, for one job's runner."""
        query = select(IntegrationSecret).where(IntegrationSecret.integration_id == integration_id)
        rows = (await session.exec(query)).all()
        return {row.name: self.decrypt(row.ciphertext) for row in rows}

    async def names_of(self, session: AsyncSession, integration_id: str) -> set[str]:
        """Return the names of the secrets an integration holds, without decrypting them."""
        query = select(IntegrationSecret.name).where(
            IntegrationSecret.integration_id == integration_id
        )
        return set((await session.exec(query)).all())
