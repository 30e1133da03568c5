"""`usher flows import` and `usher flows record`: a codegen recording becomes a flow."""

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from cli.commands import fail, in_session, run, settings_for
from engine.apps.template import AppError, AppTemplate, load_app
from engine.automation.check import check_flow
from engine.automation.recorder import (
    Imported,
    RecordingError,
    import_recording,
    integration_secrets,
    parse_samples,
)
from engine.settings import Settings
from engine.storage.vault import Vault

SampleOption = Annotated[
    list[str] | None,
    typer.Option("--sample", help="name=value you typed, e.g. email=jane@example.com."),
]
IntegrationOption = Annotated[
    str | None,
    typer.Option(
        "--integration", help="Its stored secrets replace what was typed; none is ever written."
    ),
]
OutOption = Annotated[
    Path | None, typer.Option("--out", help="Default: the app's folder, ACTION.yaml.")
]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite an existing flow.")]


def flows_import(
    recording: Annotated[Path, typer.Argument(help="A playwright codegen recording (Python).")],
    app_name: Annotated[str, typer.Option("--app", help="The app, e.g. acme.")],
    action: Annotated[str, typer.Option("--action", help="The action, e.g. create_user.")],
    sample: SampleOption = None,
    integration: IntegrationOption = None,
    out: OutOption = None,
    force: ForceOption = False,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """Turn a codegen recording into a flow: samples become variables, secrets stay secret."""
    settings = settings_for(data_dir)
    try:
        source = recording.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise fail(f"cannot read {recording}: {error}") from None
    path = _import(settings, source, app_name, action, sample or [], integration, out, force)
    typer.echo(f"wrote {path}: flows check passes; review it, then replay it:")
    typer.echo(f"  usher flows replay {app_name} {action} --integration ID --var ...")


def flows_record(
    app_name: Annotated[str, typer.Argument(help="The app, e.g. acme.")],
    action: Annotated[str, typer.Argument(help="The action, e.g. create_user.")],
    url: Annotated[str, typer.Option("--url", help="Where to start recording.")],
    sample: SampleOption = None,
    integration: IntegrationOption = None,
    out: OutOption = None,
    force: ForceOption = False,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """Record with playwright codegen where there is a screen, then import the recording.

    The recording goes to a private temporary file (0600) removed after the import: what
    was typed, passwords included, is in it.
    """
    settings = settings_for(data_dir)
    if not settings.display:
        typer.echo(_no_display(app_name, action, url, sample or []), err=True)
        raise typer.Exit(code=1)
    handle, name = tempfile.mkstemp(prefix="usher-recording-", suffix=".py")
    os.close(handle)
    try:
        command = [sys.executable, "-m", "playwright", "codegen", "--target", "python-async"]
        finished = subprocess.run([*command, "-o", name, url], check=False)
        if finished.returncode != 0:
            raise fail(f"playwright codegen ended with exit code {finished.returncode}")
        source = Path(name).read_text(encoding="utf-8")
        path = _import(settings, source, app_name, action, sample or [], integration, out, force)
    finally:
        Path(name).unlink(missing_ok=True)
    typer.echo(f"wrote {path}: flows check passes; the recording is deleted")


def _no_display(app_name: str, action: str, url: str, samples: list[str]) -> str:
    """Return what to do on a machine without a screen: record elsewhere, then import."""
    pairs = " ".join(f"--sample {shlex.quote(s)}" for s in samples)
    return (
        "usher: no display here (DISPLAY and WAYLAND_DISPLAY are unset), and codegen needs a "
        "screen. Record on a machine with one:\n"
        f"  playwright codegen --target python-async -o recording.py {shlex.quote(url)}\n"
        "then import the recording here:\n"
        f"  usher flows import recording.py --app {app_name} --action {action} {pairs}".rstrip()
    )


def _import(
    settings: Settings,
    source: str,
    app_name: str,
    action: str,
    samples: list[str],
    integration: str | None,
    out: Path | None,
    force: bool,
) -> Path:
    """Import a recording, write the flow where asked and check it; return its path."""
    try:
        template = load_app(settings.flows_dir, app_name)
        secrets = _secrets(settings, integration, app_name)
        imported = import_recording(
            source,
            template=template,
            action=action,
            samples=parse_samples(samples),
            secrets=secrets,
        )
    except (AppError, RecordingError) as error:
        raise fail(f"cannot import: {error}") from None
    path = out or template.folder / f"{action}.yaml"
    if path.exists() and not force:
        raise fail(f"{path} exists; pass --force to overwrite it, or --out elsewhere")
    _write_checked(path, imported, template)
    for note in imported.notes:
        typer.echo(f"note: {note}")
    return path


def _secrets(settings: Settings, integration: str | None, app_name: str) -> dict[str, str]:
    """Return the integration's secrets, or none when no integration is named."""
    if integration is None:
        return {}
    vault = Vault.from_path(settings.vault_key_path)
    return run(
        lambda: in_session(settings, lambda s: integration_secrets(s, vault, integration, app_name))
    )


def _write_checked(path: Path, imported: Imported, template: AppTemplate) -> None:
    """Write the flow and run `flows check` on it; remove it again if the check fails."""
    previous = path.read_bytes() if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(imported.yaml, encoding="utf-8")
    problems = [p for p in check_flow(path, template) if p.severity == "error"]
    if not problems:
        return
    if previous is None:
        path.unlink()
    else:
        path.write_bytes(previous)
    for problem in problems:
        typer.echo(str(problem), err=True)
    raise fail("the imported flow fails flows check; nothing was written")
