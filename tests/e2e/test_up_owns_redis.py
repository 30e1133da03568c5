"""`usher up` owns its embedded Redis: a replay beside it borrows it, a second `up` is refused."""

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from engine.constants import TOTP_STEP_PREFIX
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import scim_post, wait_job
from tests.harness import (
    ROOT,
    connect_acme_at,
    free_port,
    start_process,
    stop_process,
    up_env,
    wait_healthy,
)

OWNER_FILE = "redis.owner.json"


@dataclass
class Up:
    """A running `usher up` over its embedded Redis."""

    api: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def settings(self) -> Settings:
        """Return Settings for the same data dir, for set-up and inspection."""
        return Settings(data_dir=self.data_dir, redis_url=None, flows_dir=ROOT / "flows")

    def owner(self) -> dict:
        """Return the owner record `usher up` keeps in its data dir."""
        return json.loads((self.data_dir / OWNER_FILE).read_text())


def dead_pid() -> int:
    """Return the id of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def usher(*args: str, env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run one `usher` command to its end and return what it printed."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """Run `usher up` on a data dir that holds a stale owner record from a dead process."""
    data_dir = tmp_path_factory.mktemp("up-data")
    stale = {"pid": dead_pid(), "url": "unix:///nowhere/redis.socket"}
    (data_dir / OWNER_FILE).write_text(json.dumps(stale))
    log = tmp_path_factory.mktemp("up-logs") / "up.log"
    port = free_port()
    process = start_process("up", up_env(data_dir, port), log)
    api = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(api, process, log)
        yield Up(api, data_dir, process, log)
    finally:
        stop_process(process)


def test_up_records_itself_as_owner(up: Up) -> None:
    """A dead owner's record was stale: `up` replaced it with its own pid and socket."""
    record = up.owner()
    assert record["pid"] == up.process.pid
    assert record["url"].startswith("unix://")
    assert redis.Redis.from_url(record["url"]).ping()


async def test_replay_beside_up_leaves_up_working(up: Up, acme: AcmeServer) -> None:
    """A replay on up's data dir shares up's Redis; afterwards SCIM still becomes accounts."""
    settings = up.settings
    db = Database.from_settings(settings)
    try:
        connected = await connect_acme_at(up.api, settings, db, acme)
        env = up_env(up.data_dir, free_port())
        replay = await asyncio.to_thread(
            usher,
            *("flows", "replay", "acme", "list_users", "--integration", connected.id),
            env=env,
            timeout_s=180,
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert f"users: {len(acme.state.users)} row(s)" in replay.stdout
        assert acme.state.logins == 1, "the replay signed in, typing a TOTP code"

        assert up.process.poll() is None, up.log.read_text()
        owner = up.owner()
        assert owner["pid"] == up.process.pid
        shared = redis.Redis.from_url(owner["url"])
        ledger = shared.keys(f"{TOTP_STEP_PREFIX}{connected.id}*")
        assert ledger, "the code the replay typed is in up's TOTP ledger"

        body = okta_user("rae.replay@example.com", "Rae", "Replay")
        response = await scim_post(connected, body)
        assert response.status_code == 201, response.text
        job = await wait_job(db, response.json()["id"], timeout_s=60)
        assert job.status == JobStatus.succeeded, job.error
        accounts = acme.state.users_with_email("rae.replay@example.com")
        assert [(a.first_name, a.last_name) for a in accounts] == [("Rae", "Replay")]
    finally:
        await db.dispose()


def test_a_second_up_on_the_same_data_dir_exits_2(up: Up) -> None:
    """One clear line on stderr naming the running `up`, exit 2, and the first keeps serving."""
    second = usher("up", env=up_env(up.data_dir, free_port()), timeout_s=60)
    assert second.returncode == 2, second.stdout + second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith("usher: ")
    assert f"usher up (pid {up.process.pid}) already serves the data dir" in lines[0]
    assert "Traceback" not in second.stdout + second.stderr
    assert up.process.poll() is None
    assert httpx.get(f"{up.api}/healthz", timeout=5).status_code == 200
    assert up.owner()["pid"] == up.process.pid


def test_up_removes_its_record_on_a_clean_exit(tmp_path: Path) -> None:
    """SIGTERM: `up` stops, removes its owner record, and the data dir is free again."""
    data_dir = tmp_path / "var"
    port = free_port()
    log = tmp_path / "up.log"
    process = start_process("up", up_env(data_dir, port), log)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process, log)
        url = json.loads((data_dir / OWNER_FILE).read_text())["url"]
    finally:
        stop_process(process)
    assert process.returncode == 0, log.read_text()
    assert not (data_dir / OWNER_FILE).exists()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url).ping()
