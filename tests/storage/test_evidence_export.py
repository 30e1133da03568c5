"""`usher evidence export`: a zip an auditor opens offline, on SQLite and PostgreSQL.

The report is opened from the extracted zip over file:// in headless Chromium, with the
network cut, and every step's screenshot must have loaded.
"""

import hashlib
import json
import zipfile
from pathlib import Path

from playwright.async_api import async_playwright
from typer.testing import CliRunner

from cli.main import app
from engine.automation.browser import find_chromium
from engine.jobs.export import REPORT, Selection, export_evidence
from engine.settings import Settings
from engine.storage import anchors
from engine.storage.anchors import MANIFEST
from engine.storage.db import Database
from engine.storage.evidence import evidence_store
from engine.storage.models import Identity, JobStatus
from fixtures.idp import okta_user
from tests.databases import run_apart
from tests.e2e.support import scim_post, wait_job
from tests.harness import Connected, Usher
from tests.operators import usher_cli
from tests.storage.support import job_with_screenshots, settings_in

STEPS = 3


def unzip(path: Path, into: Path) -> dict:
    """Extract an export and return its manifest."""
    with zipfile.ZipFile(path) as archive:
        archive.extractall(into)
    return json.loads((into / MANIFEST).read_text())


async def loaded_images(report: Path, settings: Settings) -> list[dict]:
    """Open the report offline in headless Chromium; return each image's source and width."""
    async with async_playwright() as playwright:
        path = find_chromium(settings, playwright)
        browser = await playwright.chromium.launch(executable_path=str(path) if path else None)
        try:
            context = await browser.new_context(offline=True)
            page = await context.new_page()
            await page.goto(report.as_uri())
            await page.wait_for_load_state("load")
            return await page.eval_on_selector_all(
                "tr.step img",
                "imgs => imgs.map(i => ({src: i.getAttribute('src'), width: i.naturalWidth,"
                " complete: i.complete}))",
            )
        finally:
            await browser.close()


async def test_an_export_opens_offline_with_every_screenshot(
    database: Database, tmp_path: Path
) -> None:
    """One job: the manifest's hashes match the zip's files, its anchor is genuine and in the
    anchor file, and the report shows every step's screenshot from inside the zip."""
    settings = settings_in(tmp_path)
    job = await job_with_screenshots(database, evidence_store(settings, database), steps=STEPS)
    out = tmp_path / "evidence.zip"
    await export_evidence(
        database, settings, evidence_store(settings, database), Selection(job.id), out
    )

    manifest = unzip(out, tmp_path / "unzipped")
    [exported] = manifest["jobs"]
    assert exported["id"] == job.id and exported["status"] == JobStatus.succeeded
    steps = [s for a in exported["actions"] for s in a["steps"]]
    assert [s["position"] for s in steps] == list(range(1, STEPS + 1))
    assert [e["event"] for e in exported["events"]] == [
        "job.queued",
        "job.running",
        "job.succeeded",
    ]
    assert len(manifest["files"]) == STEPS and manifest["problems"] == []
    for name, sha256 in manifest["files"].items():
        assert hashlib.sha256((tmp_path / "unzipped" / name).read_bytes()).hexdigest() == sha256

    anchor = anchors.parse(manifest["anchor"])
    assert anchors.genuine(anchors.audit_key(settings), anchor)
    written, _ = anchors.read(settings.anchors_path)
    assert written[-1] == anchor
    assert anchor.seq >= max(e["seq"] for e in exported["events"])

    images = await loaded_images(tmp_path / "unzipped" / REPORT, settings)
    assert len(images) == STEPS
    assert all(i["complete"] and i["width"] > 0 for i in images), images
    assert {i["src"] for i in images} == set(manifest["files"])


def test_the_command_line_exports_an_identity_and_verify_reads_its_anchor(
    tmp_path: Path,
) -> None:
    """`usher evidence export --identity`: every job of the user; `verify --anchors ZIP`
    checks the chain against the export's anchor; no selection at all is refused."""
    settings = settings_in(tmp_path)

    async def two_jobs() -> tuple[str, list[str]]:
        """Write two jobs, each of its own identity, in the data dir's own database."""
        database = Database.from_settings(settings)
        await database.migrate()
        try:
            store = evidence_store(settings, database)
            jobs = [await job_with_screenshots(database, store) for _ in range(2)]
            async with database.session() as session:
                who = await session.get(Identity, jobs[0].identity_id)
                assert who is not None
                return who.user_name, [j.id for j in jobs]
        finally:
            await database.dispose()

    user_name, job_ids = run_apart(two_jobs)
    runner = CliRunner()
    data_dir = ["--data-dir", str(settings.data_dir)]
    out = tmp_path / "alice.zip"
    result = runner.invoke(
        app, ["evidence", "export", "--identity", user_name, "--out", str(out), *data_dir]
    )
    assert result.exit_code == 0, result.output
    manifest = unzip(out, tmp_path / "alice")
    assert [j["id"] for j in manifest["jobs"]] == job_ids[:1]
    assert manifest["jobs"][0]["identity"] == user_name

    settings.anchors_path.unlink()
    checked = runner.invoke(app, ["evidence", "verify", "--anchors", str(out), *data_dir])
    assert checked.exit_code == 0, checked.output
    assert "1 anchors" in checked.output

    nothing = runner.invoke(app, ["evidence", "export", *data_dir])
    assert nothing.exit_code == 2
    assert "name a job" in nothing.output
    missing = runner.invoke(app, ["evidence", "export", "nosuchjob", *data_dir])
    assert missing.exit_code == 2 and "no job matches" in missing.output


async def test_a_real_job_s_export_shows_its_real_screenshots(
    usher: Usher, usher_db: Database, connected: Connected, tmp_path: Path
) -> None:
    """A user created in Acme by the real worker: `usher evidence export --identity` writes
    the zip, whose report shows each of the job's real screenshots, offline; `usher evidence
    verify --anchors` accepts the export's anchor."""
    user = okta_user("ada.export@example.com", "Ada", "Export")
    response = await scim_post(connected, user)
    assert response.status_code == 201, response.text
    job = await wait_job(usher_db, response.json()["id"])
    assert job.status == JobStatus.succeeded, job.error
    out = tmp_path / "ada.zip"
    exported = usher_cli(
        usher, "evidence", "export", "--identity", "ada.export@example.com", "--out", str(out)
    )
    assert exported.exit_code == 0, exported.output
    manifest = unzip(out, tmp_path / "ada")
    [only] = manifest["jobs"]
    steps = [s for a in only["actions"] for s in a["steps"]]
    shots = [e for s in steps for e in s["evidence"] if e["kind"] == "screenshot"]
    assert len(shots) == len(steps) > 3 and all(e["in_zip"] for e in shots)
    images = await loaded_images(tmp_path / "ada" / REPORT, usher.settings)
    assert len(images) == len(shots)
    assert all(i["complete"] and i["width"] >= 800 for i in images), images
    checked = usher_cli(usher, "evidence", "verify", "--anchors", str(out))
    assert not [
        line
        for line in checked.output.splitlines()
        if "anchor" in line.lower() and line.startswith("ALTERED")
    ], checked.output
