"""The half-open probe: one real sign-in, in a fresh context, for a cooled-down breaker."""

import logging
from datetime import UTC, datetime

from engine.apps.template import AppError, load_app
from engine.automation.errors import FlowFailed
from engine.automation.language import FlowError, load_flow
from engine.automation.replay import PrintingSink
from engine.automation.run import build_run, open_runner
from engine.automation.sessions import SignIn
from engine.jobs import breaker
from engine.jobs.runner import JobServices
from engine.storage.models import Integration
from engine.storage.vault import VaultError

log = logging.getLogger(__name__)


async def probe(services: JobServices, integration_id: str) -> str | None:
    """Try the integration's sign-in once if its breaker cooled down; return the new state.

    Only one worker wins the half-open claim. The probe never reuses the kept session: only
    a sign-in with the stored secrets proves an operator's fix. Its steps' screenshots are
    kept under `probes/` in the evidence store.
    """
    settings = services.settings
    db = services.db
    if not await breaker.claim_probe(db, integration_id, cooldown_s=settings.breaker_cooldown_s):
        return None
    gate = breaker.Breaker(db, integration_id, threshold=settings.breaker_threshold)
    gate.probing = True
    try:
        async with db.session() as session:
            integration = await session.get(Integration, integration_id)
            if integration is None:
                return None
            secrets = await services.vault.secrets_of(session, integration_id)
        template = load_app(settings.flows_dir, integration.app)
        login = load_flow(template.flow_path("login"))
        run = build_run(
            base_url=integration.base_url,
            template=template,
            secrets=secrets,
            variables={"integration": {"id": integration.id, "base_url": integration.base_url}},
            ledger=services.ledger,
            account=integration.id,
            step_timeout_ms=settings.step_timeout_ms,
        )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        sink = PrintingSink(services.evidence, f"probes/{integration_id}/{stamp}", log.info)  # type: ignore[arg-type]
        async with open_runner(services.browsers, run) as runner:
            sign_in = SignIn(
                db, services.vault, services.redis, integration_id, None, gate, reuse_kept=False
            )
            await sign_in.ensure(runner, login, sink)
    except (FlowFailed, FlowError, AppError, VaultError) as error:
        log.warning("probe of integration %s did not get through: %s", integration_id, error)
        await breaker.reopen(db, integration_id)
        return breaker.BreakerState.open
    log.warning("probe of integration %s signed in: breaker closed", integration_id)
    return breaker.BreakerState.closed


async def probe_due(services: JobServices) -> int:
    """Probe every integration whose breaker cooled down; return how many were tried."""
    tried = 0
    for integration_id in await breaker.due_probes(
        services.db, cooldown_s=services.settings.breaker_cooldown_s
    ):
        tried += await probe(services, integration_id) is not None
    return tried
