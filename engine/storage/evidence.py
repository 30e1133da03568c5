"""Evidence storage: screenshots and failure dumps, each with its SHA-256."""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engine.settings import Settings


@dataclass(frozen=True)
class StoredFile:
    """Where an evidence file went and what it hashes to."""

    key: str
    sha256: str
    size: int


class EvidenceStore(Protocol):
    """Keep evidence files; a directory by default, a shared store for several machines."""

    def put(self, key: str, data: bytes) -> StoredFile:
        """Store data under a key and return its hash."""
        ...

    def get(self, key: str) -> bytes:
        """Return the data stored under a key."""
        ...

    def locate(self, key: str) -> str:
        """Return where an operator finds the file (a path or a URL)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the file stored under a key, if there is one (retention pruning)."""
        ...


class DirectoryEvidenceStore:
    """Store evidence files under a directory, owner-only."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        """Return the file of a key, refusing keys that climb out of the root."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"evidence key escapes the store: {key!r}")
        return path

    def put(self, key: str, data: bytes) -> StoredFile:
        """Write the file atomically, so a crash never leaves half a screenshot."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        tmp.replace(path)
        return StoredFile(key=key, sha256=hashlib.sha256(data).hexdigest(), size=len(data))

    def get(self, key: str) -> bytes:
        """Read a stored file."""
        return self._path(key).read_bytes()

    def locate(self, key: str) -> str:
        """Return the file's path."""
        return str(self.root / key)

    def delete(self, key: str) -> None:
        """Remove the file; one already gone is no error."""
        self._path(key).unlink(missing_ok=True)


def evidence_store(settings: Settings) -> EvidenceStore:
    """Return the evidence store the settings choose."""
    return DirectoryEvidenceStore(settings.evidence_dir)
