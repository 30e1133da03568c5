"""Evidence storage: screenshots and failure dumps, each with its SHA-256.

Two stores keep the same contract (tests/storage/test_evidence_stores.py): a directory, the
default, and the database (`USHER_EVIDENCE_STORE=database`), for workers on several machines
that share no disk. A key that would leave the store is refused with ValueError; a key with
nothing stored raises FileNotFoundError.
"""

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from sqlalchemy import delete

from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import EvidenceBlob

DATABASE_LOCATION = "database:"
"""What `locate` prefixes a key with when the database keeps the file."""


@dataclass(frozen=True)
class StoredFile:
    """Where an evidence file went and what it hashes to."""

    key: str
    sha256: str
    size: int


class EvidenceStore(Protocol):
    """Keep evidence files; a directory by default, a shared store for several machines."""

    async def put(self, key: str, data: bytes) -> StoredFile:
        """Store data under a key and return its hash."""
        ...

    async def get(self, key: str) -> bytes:
        """Return the data stored under a key."""
        ...

    def locate(self, key: str) -> str:
        """Return where an operator finds the file (a path or a URL)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the file stored under a key, if there is one (retention pruning)."""
        ...


def stored(key: str, data: bytes) -> StoredFile:
    """Return what a store reports for data it kept under a key."""
    return StoredFile(key=key, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def check_key(key: str) -> str:
    """Return a key that stays inside a store: relative, without `..`, never empty."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or "\\" in key or "\x00" in key:
        raise ValueError(f"evidence key escapes the store: {key!r}")
    return key


class DirectoryEvidenceStore:
    """Store evidence files under a directory, owner-only."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        """Return the file of a key, refusing keys that climb out of the root."""
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"evidence key escapes the store: {key!r}")
        return path

    def put_now(self, key: str, data: bytes) -> StoredFile:
        """Write the file atomically, so a crash never leaves half a screenshot."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        tmp.replace(path)
        return stored(key, data)

    async def put(self, key: str, data: bytes) -> StoredFile:
        """Write the file atomically, off the event loop."""
        return await asyncio.to_thread(self.put_now, key, data)

    async def get(self, key: str) -> bytes:
        """Read a stored file."""
        return await asyncio.to_thread(self._path(key).read_bytes)

    def locate(self, key: str) -> str:
        """Return the file's path."""
        return str(self.root / key)

    async def delete(self, key: str) -> None:
        """Remove the file; one already gone is no error."""
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)


class DatabaseEvidenceStore:
    """Store evidence files as rows of the database every worker already shares."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, key: str, data: bytes) -> StoredFile:
        """Keep the file in its own short transaction, replacing one under the same key."""
        result = stored(check_key(key), data)
        async with self.db.session() as session:
            await session.exec(delete(EvidenceBlob).where(EvidenceBlob.key == key))
            session.add(EvidenceBlob(key=key, data=data, sha256=result.sha256, size=result.size))
            await session.commit()
        return result

    async def get(self, key: str) -> bytes:
        """Return the stored bytes; FileNotFoundError when none are kept under the key."""
        async with self.db.reader() as session:
            blob = await session.get(EvidenceBlob, check_key(key))
        if blob is None:
            raise FileNotFoundError(f"no evidence stored under {key!r}")
        return blob.data

    def locate(self, key: str) -> str:
        """Return the key, marked as kept in the database."""
        return f"{DATABASE_LOCATION}{key}"

    async def delete(self, key: str) -> None:
        """Remove the row; one already gone is no error."""
        async with self.db.session() as session:
            await session.exec(delete(EvidenceBlob).where(EvidenceBlob.key == check_key(key)))
            await session.commit()


def evidence_store(settings: Settings, db: Database) -> EvidenceStore:
    """Return the evidence store the settings choose."""
    if settings.evidence_store == "database":
        return DatabaseEvidenceStore(db)
    return DirectoryEvidenceStore(settings.evidence_dir)
