"""`upload`: set a file input to files from the app's own folder, and nothing outside it."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.automation.browser import BrowserPool
from engine.automation.language import Step
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

FILES = Path(__file__).parent.parent / "files"
PAGES = {
    "/upload": html(
        """<label for=f>Attachment</label><input id=f type=file
        onchange="document.getElementById('name').textContent=this.files[0].name">
        <p id=name data-testid=file-name></p>"""
    )
}
READ_FILE = "f.files.length ? f.files[0].text().then(t => [f.files[0].name, t.trim()]) : null"


async def test_upload_sets_the_file_from_the_apps_folder(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The input holds note.txt with its content; the page saw the change."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/upload"),
            {"upload": {"label": "Attachment"}, "files": ["note.txt"]},
            {"expect": {"test_id": "file-name"}, "text": "note.txt"},
        ],
        files_dir=FILES,
        read_page=evaluated(READ_FILE),
    )
    assert ran.failure is None
    assert all(s.status == "ok" for s in ran.sink.results)
    assert ran.extra["page"] == ["note.txt", (FILES / "note.txt").read_text().strip()]


async def test_uploads_stay_inside_the_app_folder(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A path that climbs out of the app's folder is refused, naming the file; none is set."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/upload"), {"upload": {"label": "Attachment"}, "files": ["../../../etc/passwd"]}],
        files_dir=FILES,
        read_page=evaluated(READ_FILE),
    )
    assert ran.failure is not None
    assert "'passwd' is not a file in the app's folder" in str(ran.failure)
    assert ran.extra["page"] is None


async def test_upload_without_an_app_folder_is_refused(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A run with no app folder takes no files at all."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/upload"), {"upload": {"label": "Attachment"}, "files": ["note.txt"]}],
    )
    assert ran.failure is not None
    assert "upload needs the app's folder to take files from" in str(ran.failure)


def test_upload_needs_files() -> None:
    """An upload naming no file is refused when the flow is read."""
    with pytest.raises(ValidationError, match="upload needs files"):
        Step.model_validate({"upload": {"label": "Attachment"}})
