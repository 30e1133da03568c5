"""`usher flows replay`: run one action against an integration with sample data."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from playwright.async_api import Error as PlaywrightError
from redis.asyncio import Redis

from engine.apps.integrations import (
    IntegrationError,
    get_integration,
    lacking_secrets,
    missing_secrets,
)
from engine.apps.template import AppTemplate, load_app
from engine.automation.browser import BrowserPool
from engine.automation.errors import FlowFailed
from engine.automation.language import load_flow
from engine.automation.run import build_run, open_runner
from engine.automation.runner import Artifact, FlowOutcome, StepResult, explain
from engine.automation.sessions import SignIn, load_session
from engine.automation.totp import RedisTotpLedger
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.evidence import DirectoryEvidenceStore
from engine.storage.vault import Vault


class PrintingSink:
    """Print each step as it happens and keep its screenshot under the replay's folder."""

    def __init__(self, store: DirectoryEvidenceStore, prefix: str, echo: Any) -> None:
        self.store = store
        self.prefix = prefix
        self.echo = echo

    async def record(self, result: StepResult, artifacts: list[Artifact]) -> None:
        """Print one line per step: position, name, status, duration, locator, screenshot."""
        paths = []
        for artifact in artifacts:
            key = f"{self.prefix}/{result.position:03d}-{artifact.kind}.{artifact.suffix}"
            paths.append(self.store.locate((await self.store.put(key, artifact.data)).key))
        locator = f"  [{result.locator}]" if result.locator else ""
        self.echo(
            f"{result.position:>3}. {result.name:<40} {result.status:<8}"
            f" {result.duration_ms:>5} ms{locator}  {paths[0] if paths else '-'}"
        )
        if result.failed_locator:
            self.echo(f"     only through a fallback: {result.failed_locator} found nothing")
        if result.error:
            self.echo(f"     error: {result.error}")


@dataclass
class ReplayRequest:
    """What to replay, as given on the command line."""

    app: str
    action: str
    integration_id: str
    variables: dict[str, str]
    headed: bool = False


def build_variables(template: AppTemplate, action: str, given: dict[str, str]) -> dict[str, Any]:
    """Turn `--var k=v` pairs into the template variables a flow reads."""
    user: dict[str, Any] = dict.fromkeys(template.user_variables)
    user.update({"active": True, "entitlements": [], "roles": []})
    account: dict[str, Any] = {"key": None}
    entitlement: dict[str, Any] = {}
    for key, value in given.items():
        namespace, _, name = key.rpartition(".")
        if namespace in ("", "user") and name in template.user_variables:
            user[name] = value
        elif key == "account.key":
            account["key"] = value
        elif key in ("entitlement", "entitlement.value"):
            found = next((e for e in template.entitlements if e.value == value), None)
            if found is None:
                values = ", ".join(e.value for e in template.entitlements)
                raise IntegrationError(f"no entitlement {value!r} in {template.name} ({values})")
            entitlement = found.model_dump()
        else:
            raise IntegrationError(f"unknown variable {key!r} for --var")
    if user["full_name"] is None and (user["first_name"] or user["last_name"]):
        user["full_name"] = " ".join(p for p in (user["first_name"], user["last_name"]) if p)
    return {"user": user, "account": account, "entitlement": entitlement}


async def run_replay(
    settings: Settings, redis_url: str, request: ReplayRequest, echo: Any
) -> FlowOutcome:
    """Sign in and run one action, printing each step; raise FlowFailed on failure.

    `redis_url` is the Redis that holds the TOTP ledger and the sign-in lock, shared with
    the workers of the same integration; the caller owns it.
    """
    template = load_app(settings.flows_dir, request.app)
    if request.action not in template.actions:
        actions = ", ".join(template.actions)
        raise IntegrationError(f"app {template.name} has no action {request.action!r} ({actions})")
    db = Database.from_settings(settings)
    browsers = BrowserPool(settings.model_copy(update={"headless": not request.headed}))
    try:
        await db.migrate()
        async with db.session() as session:
            integration = await get_integration(session, request.integration_id)
            if integration.app != template.name:
                raise IntegrationError(f"integration {integration.id} is for {integration.app}")
            vault = Vault.from_path(settings.vault_key_path)
            missing = await missing_secrets(session, vault, integration, template)
            if missing:
                raise IntegrationError(lacking_secrets(integration.id, missing))
            secrets = await vault.secrets_of(session, integration.id)
            kept = await load_session(session, vault, integration.id)
        variables = build_variables(template, request.action, request.variables)
        variables["integration"] = {"id": integration.id, "base_url": integration.base_url}
        redis = Redis.from_url(redis_url)
        run_context = build_run(
            base_url=integration.base_url,
            template=template,
            secrets=secrets,
            variables=variables,
            ledger=RedisTotpLedger(redis),
            account=integration.id,
            step_timeout_ms=settings.step_timeout_ms,
        )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        store = DirectoryEvidenceStore(settings.evidence_dir)
        await browsers.start()
        started = time.monotonic()
        try:
            async with open_runner(browsers, run_context, kept.state if kept else None) as runner:
                sign_in = SignIn(db, vault, redis, integration.id, kept)
                echo("login:")
                login = load_flow(template.flow_path("login"))
                await sign_in.ensure(
                    runner, login, PrintingSink(store, f"replays/{stamp}/login", echo)
                )
                echo(f"{request.action}:")
                sink = PrintingSink(store, f"replays/{stamp}/{request.action}", echo)
                outcome = await runner.run(load_flow(template.flow_path(request.action)), sink)
        except PlaywrightError as error:
            raise FlowFailed(f"the browser failed outside a step: {explain(error)}") from None
        finally:
            await redis.aclose()
        echo(
            f"{request.action} {'already so' if outcome.already else 'done'}"
            f" in {time.monotonic() - started:.1f} s"
        )
        return outcome
    finally:
        await browsers.stop()
        await db.dispose()


__all__ = ["FlowFailed", "ReplayRequest", "run_replay"]
