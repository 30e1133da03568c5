"""Anchors: the audit chain's head, signed with a key kept apart from the database.

A chain stored only in the database proves little to someone who can rewrite the database:
they can recompute every hash. So the head is signed (HMAC-SHA256, USHER_AUDIT_KEY or a
random key in the data dir) and copied out: appended to a file in the data dir on every
worker's timer, written into every export's manifest and every alert. `verify` then finds a
rewritten or shortened chain, because an anchor it did not write disagrees.
"""

import hashlib
import hmac
import json
import os
import secrets
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.constants import ANCHOR_TAIL_BYTES, AUDIT_ANCHOR_CONTEXT, AUDIT_KEY_BYTES
from engine.settings import Settings
from engine.storage import audit
from engine.storage.db import Database
from engine.storage.models import utcnow


@dataclass(frozen=True)
class Anchor:
    """A signed statement: at `at`, the chain's event `seq` hashed to `sha256`."""

    seq: int
    sha256: str
    at: str
    signature: str

    def as_dict(self) -> dict[str, Any]:
        """Return the anchor as JSON-ready data."""
        return asdict(self)


def audit_key(settings: Settings) -> bytes:
    """Return the key that signs anchors: the setting, else a random key kept owner-only."""
    if settings.audit_key:
        return settings.audit_key.encode()
    path = settings.audit_key_path
    settings.ensure_data_dir()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip().encode()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(AUDIT_KEY_BYTES))
    return path.read_text().strip().encode()


def _signature(key: bytes, seq: int, sha256: str, at: str) -> str:
    """Return the HMAC-SHA256 of what an anchor states."""
    message = f"{AUDIT_ANCHOR_CONTEXT}:{seq}:{sha256}:{at}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(key: bytes, head: audit.Head) -> Anchor:
    """Sign the chain's head as of now."""
    at = utcnow().isoformat(timespec="seconds")
    return Anchor(head.seq, head.sha256, at, _signature(key, head.seq, head.sha256, at))


def genuine(key: bytes, anchor: Anchor) -> bool:
    """Tell whether an anchor was signed with this key and not altered since."""
    expected = _signature(key, anchor.seq, anchor.sha256, anchor.at)
    return hmac.compare_digest(expected, anchor.signature)


def parse(data: Any) -> Anchor:
    """Read an anchor from JSON data; raise ValueError when it is not one."""
    try:
        return Anchor(
            int(data["seq"]), str(data["sha256"]), str(data["at"]), str(data["signature"])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an anchor: {data!r:.200}") from exc


def append(path: Path, anchor: Anchor) -> None:
    """Append one anchor line to the file, owner-only; one write, so lines never interleave."""
    line = (json.dumps(anchor.as_dict(), sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path) -> tuple[list[Anchor], list[str]]:
    """Return the anchors of a file and a complaint for each line that is not one."""
    if not path.exists():
        return [], []
    anchors: list[Anchor] = []
    complaints: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            anchors.append(parse(json.loads(line)))
        except ValueError as exc:
            complaints.append(f"{path.name} line {number} is not an anchor ({exc})")
    return anchors, complaints


MANIFEST = "manifest.json"
"""The manifest inside an export's zip; its `anchor` is the chain's head it was made at."""


def read_any(path: Path) -> tuple[list[Anchor], list[str]]:
    """Return the anchors of an anchor file, an export's zip or its manifest.json."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                data = json.loads(archive.read(MANIFEST))
        elif path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            return read(path)
        return [parse(data["anchor"])], []
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        return [], [f"{path.name} holds no anchor ({exc})"]


async def anchor_head(db: Database, settings: Settings) -> Anchor | None:
    """Sign the chain's head and append it to the anchor file; None while the chain is empty.

    Nothing is appended when the newest line already anchors the same head.
    """
    async with db.reader() as session:
        head = await audit.head(session)
    if head is None:
        return None
    anchor = sign(audit_key(settings), head)
    newest = last(settings.anchors_path)
    if newest is None or (newest.seq, newest.sha256) != (head.seq, head.sha256):
        append(settings.anchors_path, anchor)
    return anchor


def last(path: Path) -> Anchor | None:
    """Return the newest anchor of a file, reading only its tail: the file only grows."""
    if not path.exists():
        return None
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - ANCHOR_TAIL_BYTES))
        lines = handle.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        try:
            return parse(json.loads(line))
        except ValueError:
            continue
    return None
