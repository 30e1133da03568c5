"""One contract every evidence store keeps: the directory, and the database on SQLite and
on PostgreSQL. A store added later joins STORES and passes the same tests."""

import hashlib
import uuid
from pathlib import Path

import pytest

from engine.settings import Settings
from engine.storage.evidence import (
    DatabaseEvidenceStore,
    DirectoryEvidenceStore,
    EvidenceStore,
    evidence_store,
)

STORES = ["directory", "database-sqlite", "database-postgresql"]
EVERY_BYTE = bytes(range(256)) * 64


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> EvidenceStore:
    """Return a store of each kind, over real files or a real database."""
    if request.param == "directory":
        return DirectoryEvidenceStore(tmp_path / "evidence")
    database = request.getfixturevalue(f"{request.param.removeprefix('database-')}_database")
    return DatabaseEvidenceStore(database)


def fresh_key(name: str = "001-screenshot.png") -> str:
    """Return a key no other test uses (the databases are shared by the session)."""
    return f"{uuid.uuid4().hex}/attempt-1/00-create_user/{name}"


async def test_what_is_put_comes_back_with_its_hash(store: EvidenceStore) -> None:
    """Every byte value survives; the hash and size are the data's."""
    key = fresh_key()
    kept = await store.put(key, EVERY_BYTE)
    assert kept.key == key
    assert kept.sha256 == hashlib.sha256(EVERY_BYTE).hexdigest()
    assert kept.size == len(EVERY_BYTE)
    assert await store.get(key) == EVERY_BYTE
    assert key in store.locate(key)


async def test_a_second_put_replaces_the_first(store: EvidenceStore) -> None:
    """A retried step writes its screenshot again under the same key."""
    key = fresh_key()
    await store.put(key, b"first")
    await store.put(key, b"second")
    assert await store.get(key) == b"second"


async def test_nothing_stored_is_file_not_found(store: EvidenceStore) -> None:
    """A missing key raises FileNotFoundError, which verify names as removed."""
    with pytest.raises(FileNotFoundError):
        await store.get(fresh_key())


async def test_delete_removes_and_forgives_a_missing_key(store: EvidenceStore) -> None:
    """Pruning deletes; deleting twice is no error."""
    key = fresh_key()
    await store.put(key, b"old")
    await store.delete(key)
    with pytest.raises(FileNotFoundError):
        await store.get(key)
    await store.delete(key)


@pytest.mark.parametrize(
    "key", ["../outside.png", "a/../../outside.png", "/etc/passwd", "", "a\\..\\b", "a\x00b"]
)
async def test_a_key_that_leaves_the_store_is_refused(store: EvidenceStore, key: str) -> None:
    """Neither put, get nor delete goes outside the store."""
    with pytest.raises(ValueError):
        await store.put(key, b"x")
    with pytest.raises(ValueError):
        await store.get(key)
    with pytest.raises(ValueError):
        await store.delete(key)


def test_the_setting_chooses_the_store(tmp_path: Path) -> None:
    """USHER_EVIDENCE_STORE picks the database; the default is the directory."""
    default = evidence_store(Settings(data_dir=tmp_path), None)  # type: ignore[arg-type]
    assert isinstance(default, DirectoryEvidenceStore)
    chosen = Settings(data_dir=tmp_path, evidence_store="database")
    assert isinstance(evidence_store(chosen, None), DatabaseEvidenceStore)  # type: ignore[arg-type]
