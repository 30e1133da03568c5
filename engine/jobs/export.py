"""Export jobs' evidence as one zip an auditor attaches to a ticket and reads offline.

The zip holds each screenshot under `evidence/<key>`, `manifest.json` (every job with its
actions, steps, files and their SHA-256, the job's audit events, and the chain's head as
signed at export time) and `report.html`, which shows each job's steps beside their
screenshots through relative paths and needs nothing but a browser. Making an export also
appends that signed head to the data dir's anchor file.
"""

import hashlib
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.grants import name_key
from engine.constants import EXPORT_MAX_JOBS
from engine.jobs.views import JobRecord, job_record
from engine.settings import Settings
from engine.storage.anchors import MANIFEST, anchor_head
from engine.storage.db import Database
from engine.storage.evidence import EvidenceStore
from engine.storage.models import AuditEvent, Identity, Job, utcnow

REPORT = "report.html"
EVIDENCE_DIR = "evidence"


class ExportError(Exception):
    """The selection names no job, or too many; the message says what to narrow."""


@dataclass(frozen=True)
class Selection:
    """Which jobs to export: one job, an identity's jobs, or every job since a date."""

    job_id: str | None = None
    identity: str | None = None
    since: datetime | None = None

    def describe(self) -> dict[str, str | None]:
        """Return the selection as the manifest records it."""
        return {
            "job": self.job_id,
            "identity": self.identity,
            "since": self.since.isoformat() if self.since else None,
        }


@dataclass
class _Files:
    """The evidence files written into the zip, and those the store could not give back."""

    entries: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


async def _job_ids(session: AsyncSession, selection: Selection) -> list[str]:
    """Return the selected jobs' ids, oldest first; refuse an empty or oversized selection."""
    query = select(Job.id)
    if selection.job_id is not None:
        query = query.where(Job.id == selection.job_id)
    if selection.identity is not None:
        wanted = name_key(selection.identity)
        who = select(Identity.id).where(
            (col(Identity.user_name_key) == wanted)
            | (col(Identity.user_name) == selection.identity)
            | (col(Identity.id) == selection.identity)
        )
        query = query.where(col(Job.identity_id).in_(who))
    if selection.since is not None:
        query = query.where(Job.created_at >= selection.since)
    ids = list(
        (
            await session.exec(
                query.order_by(col(Job.created_at), col(Job.id)).limit(EXPORT_MAX_JOBS + 1)
            )
        ).all()
    )
    if not ids:
        raise ExportError("no job matches: check the job id, the identity's userName or the date")
    if len(ids) > EXPORT_MAX_JOBS:
        raise ExportError(f"more than {EXPORT_MAX_JOBS} jobs match: narrow the selection")
    return ids


def _event_out(item: AuditEvent) -> dict[str, Any]:
    """Return one audit event as the manifest records it."""
    return {
        "seq": item.seq,
        "at": item.at.isoformat(),
        "actor": item.actor,
        "event": item.event,
        "detail": item.detail,
        "prev_sha256": item.prev_sha256,
        "sha256": item.sha256,
    }


def _job_out(
    record: JobRecord, user_name: str | None, events: Sequence[AuditEvent], files: _Files
) -> dict[str, Any]:
    """Return one job with its actions, steps and files as the manifest records it."""
    job = record.job
    actions = []
    for action in record.actions:
        steps = []
        for step in record.steps.get(action.id, []):
            evidence = [
                {
                    "path": f"{EVIDENCE_DIR}/{item.key}",
                    "kind": item.kind,
                    "content_type": item.content_type,
                    "sha256": item.sha256,
                    "size": item.size,
                    "in_zip": f"{EVIDENCE_DIR}/{item.key}" in files.entries,
                }
                for item in record.evidence.get(step.id, [])
            ]
            steps.append(
                {
                    "position": step.position,
                    "name": step.name,
                    "kind": step.kind,
                    "status": step.status,
                    "duration_ms": step.duration_ms,
                    "locator": step.locator,
                    "error": step.error,
                    "started_at": step.started_at.isoformat(),
                    "evidence": evidence,
                }
            )
        actions.append(
            {
                "attempt": action.attempt,
                "name": action.name,
                "target": action.target,
                "status": action.status,
                "flow_sha256": action.flow_sha256,
                "fragment_sha256": action.fragment_sha256,
                "error": action.error,
                "steps": steps,
            }
        )
    return {
        "id": job.id,
        "integration_id": job.integration_id,
        "identity": user_name,
        "status": job.status,
        "attempt": job.attempt,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error,
        "actions": actions,
        "events": [_event_out(e) for e in events],
    }


async def _copy_files(
    archive: zipfile.ZipFile, records: Sequence[JobRecord], store: EvidenceStore
) -> _Files:
    """Copy each evidence file into the zip after checking it still hashes as recorded."""
    files = _Files()
    for record in records:
        for items in record.evidence.values():
            for item in items:
                name = f"{EVIDENCE_DIR}/{item.key}"
                try:
                    data = await store.get(item.key)
                except (FileNotFoundError, KeyError, ValueError):
                    files.problems.append(f"{item.key}: missing from the evidence store")
                    continue
                if hashlib.sha256(data).hexdigest() != item.sha256:
                    files.problems.append(
                        f"{item.key}: altered, its SHA-256 is not the recorded one"
                    )
                    continue
                archive.writestr(name, data)
                files.entries[name] = item.sha256
    return files


STYLE = """
body{font:14px system-ui,sans-serif;margin:2rem;color:#1b1b1b}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem;border-top:1px solid #ccc;padding-top:1rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.35rem;vertical-align:top;text-align:left}
img{max-width:480px;border:1px solid #999}.failed{color:#a00}.meta{color:#555}
code{font-size:12px;word-break:break-all}
"""


def _report(manifest: dict[str, Any]) -> str:
    """Return the offline HTML report: each job's steps beside their screenshots."""
    anchor = manifest["anchor"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Usher evidence</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Usher evidence</h1>",
        f"<p class='meta'>Exported {escape(manifest['generated_at'])}; "
        f"{len(manifest['jobs'])} job(s). Audit chain head: event {anchor['seq']} "
        f"<code>{escape(anchor['sha256'])}</code>, signed at {escape(anchor['at'])}.</p>",
    ]
    for problem in manifest["problems"]:
        parts.append(f"<p class='failed'>{escape(problem)}</p>")
    for job in manifest["jobs"]:
        parts.append(
            f"<h2 id='job-{escape(job['id'])}'>Job {escape(job['id'])}: "
            f"{escape(job['identity'] or '-')} — <span class='status'>{escape(job['status'])}"
            "</span></h2>"
        )
        parts.append(
            f"<p class='meta'>created {escape(job['created_at'])}, finished "
            f"{escape(job['finished_at'] or '-')}, attempt {job['attempt']}"
            + (f"; error: {escape(job['error'])}" if job["error"] else "")
            + "</p>"
        )
        for action in job["actions"]:
            target = f" {escape(action['target'])}" if action["target"] else ""
            parts.append(
                f"<h3>Attempt {action['attempt']}: {escape(action['name'])}{target} — "
                f"{escape(action['status'])}</h3><p class='meta'>flow SHA-256 "
                f"<code>{escape(action['flow_sha256'] or '-')}</code></p>"
            )
            parts.append("<table><tr><th>#</th><th>step</th><th>status</th><th>ms</th>")
            parts.append("<th>screenshot</th></tr>")
            for step in action["steps"]:
                shots = []
                for item in step["evidence"]:
                    if not item["content_type"].startswith("image/"):
                        continue
                    if not item["in_zip"]:
                        shots.append("<span class='failed'>file missing or altered</span>")
                        continue
                    path = escape(item["path"])
                    shots.append(
                        f"<a href='{path}'><img src='{path}' alt='step {step['position']}'></a>"
                        f"<br><code>{escape(item['sha256'])}</code>"
                    )
                error = step["error"]
                said = f"<br><span class='failed'>{escape(error)}</span>" if error else ""
                parts.append(
                    f"<tr class='step'><td>{step['position']}</td><td>{escape(step['name'])}"
                    f"{said}</td><td>{escape(step['status'])}</td>"
                    f"<td>{step['duration_ms']}</td><td>{''.join(shots) or '-'}</td></tr>"
                )
            parts.append("</table>")
        parts.append("<h3>Audit events</h3><table><tr><th>seq</th><th>at</th><th>event</th>")
        parts.append("<th>by</th><th>SHA-256</th></tr>")
        for event in job["events"]:
            parts.append(
                f"<tr><td>{event['seq']}</td><td>{escape(event['at'])}</td>"
                f"<td>{escape(event['event'])}</td><td>{escape(event['actor'])}</td>"
                f"<td><code>{escape(event['sha256'] or '')}</code></td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


async def export_evidence(
    db: Database, settings: Settings, store: EvidenceStore, selection: Selection, out: Path
) -> dict[str, Any]:
    """Write the selected jobs' zip to `out` and return its manifest."""
    async with db.reader() as session:
        ids = await _job_ids(session, selection)
        records = [r for r in [await job_record(session, i) for i in ids] if r is not None]
        identities = {
            i.id: i.user_name
            for i in (
                await session.exec(
                    select(Identity).where(
                        col(Identity.id).in_({r.job.identity_id for r in records})
                    )
                )
            ).all()
        }
        events = (
            await session.exec(
                select(AuditEvent)
                .where(col(AuditEvent.job_id).in_(ids), col(AuditEvent.seq).is_not(None))
                .order_by(col(AuditEvent.seq))
            )
        ).all()
    anchor = await anchor_head(db, settings)
    if anchor is None:
        raise ExportError("the audit chain is empty: there is nothing to anchor an export to")
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        files = await _copy_files(archive, records, store)
        manifest = {
            "generated_at": utcnow().isoformat(timespec="seconds"),
            "selection": selection.describe(),
            "anchor": anchor.as_dict(),
            "files": files.entries,
            "problems": files.problems,
            "jobs": [
                _job_out(
                    r,
                    identities.get(r.job.identity_id or ""),
                    [e for e in events if e.job_id == r.job.id],
                    files,
                )
                for r in records
            ],
        }
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        archive.writestr(REPORT, _report(manifest))
    partial.replace(out)
    return manifest
