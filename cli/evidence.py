"""`usher evidence`: check the audit chain and every evidence file; export jobs' evidence."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from cli.commands import fail, run, settings_for, with_database
from engine.jobs.export import Selection, export_evidence
from engine.storage.evidence import evidence_store
from engine.storage.verify import verify_deployment

evidence = typer.Typer(help="Evidence an auditor can trust: verify the chain and the files.")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Database, vault key and evidence (default ./var)."),
]


def _aware(moment: datetime | None) -> datetime | None:
    """Read a date without a zone as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@evidence.command("verify")
def evidence_verify(
    since: Annotated[
        datetime | None, typer.Option(help="Check only events and files from this date (UTC).")
    ] = None,
    anchors: Annotated[
        list[Path] | None,
        typer.Option(
            "--anchors",
            help="More anchors: another anchor file, an export's zip or its manifest.json.",
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Check the audit chain, its anchors and every evidence file; exit 1 naming what changed."""
    settings = settings_for(data_dir)
    report = run(
        lambda: with_database(
            settings,
            lambda db: verify_deployment(
                db, settings, since=_aware(since), more_anchors=anchors or []
            ),
        )
    )
    head = f"event {report.head.seq} {report.head.sha256}" if report.head else "empty"
    typer.echo(
        f"checked {report.events} events (head: {head}), {report.anchors} anchors,"
        f" {report.files} evidence files"
    )
    for note in report.notes:
        typer.echo(f"note: {note}")
    for problem in report.problems:
        typer.echo(f"ALTERED: {problem}")
    if not report.ok:
        raise typer.Exit(code=1)
    typer.echo("ok: nothing altered or removed")


@evidence.command("export")
def evidence_export(
    job: Annotated[str | None, typer.Argument(help="One job's id.")] = None,
    identity: Annotated[
        str | None, typer.Option(help="Every job of the identity with this userName (or id).")
    ] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Every job created from this date (UTC).")
    ] = None,
    out: Annotated[Path, typer.Option(help="The zip to write.")] = Path("usher-evidence.zip"),
    data_dir: DataDir = None,
) -> None:
    """Write a zip an auditor reads offline: screenshots, manifest.json and report.html."""
    if job is None and identity is None and since is None:
        raise fail("name a job, or pass --identity NAME or --since DATE")
    settings = settings_for(data_dir)
    selection = Selection(job_id=job, identity=identity, since=_aware(since))
    manifest = run(
        lambda: with_database(
            settings,
            lambda db: export_evidence(db, settings, evidence_store(settings, db), selection, out),
        )
    )
    anchor = manifest["anchor"]
    typer.echo(
        f"wrote {out}: {len(manifest['jobs'])} jobs, {len(manifest['files'])} files,"
        f" chain head event {anchor['seq']} {anchor['sha256']}"
    )
    for problem in manifest["problems"]:
        typer.echo(f"ALTERED: {problem}")
