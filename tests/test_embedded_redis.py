"""An embedded Redis belongs to the process that started it: claim, borrow, release."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from cli.embedded import (
    OWNER_FILE,
    DataDirServed,
    borrowed_redis,
    claim_redis,
    pid_alive,
    running_owner,
)


def answers(url: str) -> bool:
    """Tell whether a Redis answers at this URL."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def dead_pid() -> int:
    """Return the id of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert not pid_alive(process.pid)
    return process.pid


def test_the_owner_is_recorded_and_a_second_claim_is_refused(tmp_path: Path) -> None:
    """One claim per data dir; the record names this process and the Redis URL."""
    owned = claim_redis(tmp_path)
    try:
        record = json.loads((tmp_path / OWNER_FILE).read_text())
        assert record == {"pid": os.getpid(), "url": owned.url}
        assert owned.url.startswith("unix://") and answers(owned.url)
        with pytest.raises(DataDirServed, match=f"pid {os.getpid()}"):
            claim_redis(tmp_path)
        assert answers(owned.url), "a refused claim leaves the owner's Redis alone"
        assert [p.name for p in tmp_path.glob(f".{OWNER_FILE}.*")] == []
    finally:
        owned.release()
    assert not (tmp_path / OWNER_FILE).exists()
    assert not answers(owned.url)
    assert running_owner(tmp_path) is None


def test_a_dead_owner_is_stale(tmp_path: Path) -> None:
    """A record whose process is gone does not block a new owner, which replaces it."""
    stale = {"pid": dead_pid(), "url": "unix:///nowhere/redis.socket"}
    (tmp_path / OWNER_FILE).write_text(json.dumps(stale))
    assert running_owner(tmp_path) is None
    owned = claim_redis(tmp_path)
    try:
        owner = running_owner(tmp_path)
        assert owner is not None and owner.pid == os.getpid() and owner.url == owned.url
    finally:
        owned.release()


def test_a_borrower_uses_the_owners_redis_and_never_stops_it(tmp_path: Path) -> None:
    """Beside a live owner, borrowing yields the owner's URL and leaves its Redis running."""
    owned = claim_redis(tmp_path)
    try:
        with borrowed_redis(tmp_path) as url:
            assert url == owned.url
            redis.Redis.from_url(url).set("usher:test:borrowed", "1")
        assert answers(owned.url)
        assert redis.Redis.from_url(owned.url).get("usher:test:borrowed") == b"1"
        assert running_owner(tmp_path) is not None
    finally:
        owned.release()


def test_without_an_owner_a_borrower_runs_a_private_redis(tmp_path: Path) -> None:
    """No `usher up`: a private Redis, not the data dir's, stopped when the command ends."""
    with borrowed_redis(tmp_path) as url:
        assert answers(url)
        assert running_owner(tmp_path) is None, "a borrower never records itself as owner"
        assert not (tmp_path / "redis.db.settings").exists(), "not attachable through the dir"
    assert not answers(url)
