"""Run one reconcile job: lease it, plan it, replay its flows, record every step."""

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine import metrics
from engine.apps.grants import GroupSources, group_sources_of
from engine.apps.integrations import IntegrationError, lacking_secrets
from engine.apps.ownership import Ownership, ownership_of
from engine.apps.profile import user_variables
from engine.apps.template import AppError, AppTemplate, load_app
from engine.automation.browser import BrowserPool
from engine.automation.errors import FlowFailed
from engine.automation.language import FRAGMENTS_DIR, FlowError, fragment_hashes, load_flow
from engine.automation.run import build_run, open_runner
from engine.automation.runner import Artifact, FlowOutcome, FlowRunner, StepResult
from engine.automation.sessions import SignIn, load_session
from engine.automation.totp import TotpLedger
from engine.constants import (
    ACTION_BACKOFF_S,
    GATE_HOLD_S,
    GROUP_FANOUT_BATCH,
    LEASE_RENEWALS,
    PACE_WAITS,
    RETRY_JITTER,
)
from engine.jobs import events, guard, integration_health, inventory, state
from engine.jobs.breaker import Breaker, BreakerOpen, is_open
from engine.jobs.gate import Gate
from engine.jobs.preview import plan_integration
from engine.jobs.queue import REDIS_DOWN, JobQueue
from engine.planner import (
    Desired,
    PlannedAction,
    action_label,
    apply_success,
    attributes_pending,
    desired_state,
    plan,
    removes_access,
)
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.evidence import EvidenceStore
from engine.storage.models import (
    Action,
    ActionStatus,
    AppAccount,
    Evidence,
    Identity,
    Integration,
    Job,
    JobKind,
    JobStatus,
    Lane,
    Step,
    utcnow,
)
from engine.storage.vault import Vault, VaultError

log = logging.getLogger(__name__)


@dataclass
class _Run:
    """One job's browser run: its context, runner, session generation and action count."""

    job: Job
    template: AppTemplate
    runner: FlowRunner
    sign_in: SignIn
    lease: state.Lease
    positions: int = 0
    relogged: bool = False
    subject: str | None = None
    """The app's key of an account the job acts on without an identity (an orphan)."""

    def next_position(self) -> int:
        """Return the next action's position in the job."""
        self.positions += 1
        return self.positions - 1


def action_backoff_s(retry: int) -> float:
    """Return the jittered pause before an action's retry: short, growing, capped."""
    base = ACTION_BACKOFF_S[min(retry - 1, len(ACTION_BACKOFF_S) - 1)]
    return base * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)


def file_sha256(path: Path) -> str:
    """Return the SHA-256 of a flow file, recorded on each action as its provenance."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _account_of(session: AsyncSession, identity_id: str) -> AppAccount | None:
    """Return an identity's account row, if it has one."""
    query = select(AppAccount).where(AppAccount.identity_id == identity_id)
    return (await session.exec(query)).first()


@dataclass
class JobServices:
    """What running a job needs; built once per worker."""

    settings: Settings
    db: Database
    vault: Vault
    evidence: EvidenceStore
    browsers: BrowserPool
    ledger: TotpLedger
    queue: JobQueue
    redis: Redis
    worker_name: str = f"{socket.gethostname()}:{os.getpid()}"


class DbStepSink:
    """Write each step and its evidence as it happens, so progress shows live.

    A step's writes run beside the flow's next step, in order, one after another: the
    browser does not wait for the database. `drain` waits for them all and raises the first
    write that failed; the action is recorded as ended only after it.
    """

    def __init__(self, services: JobServices, job_id: str, action: Action, app: str) -> None:
        self.services = services
        self.job_id = job_id
        self.action = action
        self.degraded = False
        """A step matched only through a fallback: the action's run is degraded."""
        self.app = app
        self.writing: asyncio.Task[None] | None = None

    async def record(self, result: StepResult, artifacts: list[Artifact]) -> None:
        """Start writing a step after the steps before it, and return at once."""
        self.degraded = self.degraded or bool(result.failed_locator)
        self.writing = asyncio.create_task(self._write(self.writing, result, artifacts))

    async def drain(self) -> None:
        """Wait until every step recorded is written; raise the first write that failed."""
        if self.writing is not None:
            await self.writing

    async def _write(
        self, before: "asyncio.Task[None] | None", result: StepResult, artifacts: list[Artifact]
    ) -> None:
        """Write one step once the step before it is written (its failure is raised here).

        The evidence files go first: the database store writes in a transaction of its
        own, which must not wait for this one's SQLite write lock.
        """
        if before is not None:
            await before
        step = Step(
            action_id=self.action.id,
            position=result.position,
            name=result.name[:200],
            kind=result.kind,
            status=result.status,
            duration_ms=result.duration_ms,
            locator=(result.locator or "")[:1000] or None,
            failed_locator=(result.failed_locator or "")[:1000] or None,
            url=(result.url or "")[:2000] or None,
            error=result.error,
        )
        action = self.action
        prefix = f"{self.job_id}/attempt-{action.attempt}/{action.position:02d}-{action.name}"
        kept = []
        for artifact in artifacts:
            key = f"{prefix}/{result.position:03d}-{artifact.kind}.{artifact.suffix}"
            kept.append((artifact, await self.services.evidence.put(key, artifact.data)))
        async with self.services.db.session() as session:
            session.add(step)
            await session.flush()
            for artifact, stored in kept:
                session.add(
                    Evidence(
                        job_id=self.job_id,
                        step_id=step.id,
                        kind=artifact.kind,
                        key=stored.key,
                        content_type=artifact.content_type,
                        sha256=stored.sha256,
                        size=stored.size,
                    )
                )
            await session.commit()
        metrics.observe_step(self.app, action.name, result.duration_ms / 1000)
        await events.publish(
            self.services.redis, self.job_id, "step", action=action.name, position=result.position
        )


class JobRunner:
    """Execute one job attempt end to end; every job write goes through `engine.jobs.state`."""

    def __init__(self, services: JobServices) -> None:
        self.services = services
        self.lost = False
        self.gate: Gate | None = None
        self.pace_limit = 0
        self.ran_flows = False
        """An action of this attempt ran: the integration's health is brought up to date."""
        self.app = metrics.UNKNOWN

    async def run(self, job_id: str, attempt: int) -> str:
        """Pass the integration's gate, claim the attempt, run it; stale deliveries do nothing.

        A job that finds its integration's gate full is held in the database and gives its
        job slot back at once; the gate's next free slot releases it.
        """
        entered = await self._enter_gate(job_id, attempt)
        if entered is None:
            return "gated"
        try:
            return await self._claim_and_run(job_id, attempt)
        finally:
            if entered:
                await self._leave_gate(job_id)

    async def _enter_gate(self, job_id: str, attempt: int) -> bool | None:
        """Take a slot of the job's integration; True if taken, False if none is needed.

        None when the gate is full (or Redis cannot say): the job is then held for a moment.
        """
        services = self.services
        async with services.db.reader() as session:
            job = await session.get(Job, job_id)
            integration = await session.get(Integration, job.integration_id) if job else None
        if integration is not None:
            self.app = integration.app
        if job is None or integration is None or job.group_id is not None:
            return False
        try:
            limits = load_app(services.settings.flows_dir, integration.app).limits
        except AppError:
            return False
        self.gate = Gate(services.redis, integration.id, lease_s=services.settings.job_lease_s)
        self.pace_limit = limits.actions_per_minute
        try:
            urgent = job.lane == Lane.urgent
            if await self.gate.enter(job_id, limits.concurrency, urgent=urgent):
                return True
        except REDIS_DOWN as error:
            log.warning("job %s: the gate is unreachable, holding it: %s", job_id, error)
        hold_s = GATE_HOLD_S * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)
        await state.hold(services.db, job_id, attempt, seconds=hold_s)
        self.gate = None
        return None

    async def _leave_gate(self, job_id: str) -> None:
        """Give the slot back and deliver the integration's longest-held job into it."""
        if self.gate is None:
            return
        with contextlib.suppress(*REDIS_DOWN):
            await self.gate.leave(job_id)
        async with self.services.db.reader() as session:
            job = await session.get(Job, job_id)
        if job is not None:
            released = await state.release_held(self.services.db, job.integration_id)
            await self.services.queue.enqueue_all(released)

    async def _claim_and_run(self, job_id: str, attempt: int) -> str:
        """Claim a job attempt, run it and return its status."""
        services = self.services
        claimed = await state.claim(
            services.db,
            job_id,
            attempt,
            services.worker_name,
            lease_s=services.settings.job_lease_s,
        )
        if claimed.busy:
            return "busy"
        if claimed.job is None or claimed.lease is None:
            return "stale"
        job, lease = claimed.job, claimed.lease
        started = time.monotonic()
        await events.publish(services.redis, job.id, "start", attempt=job.attempt)
        renewer = asyncio.create_task(self._renew_lease(lease))
        try:
            if job.kind == JobKind.inventory:
                status = await self._inventory(job, lease)
            elif job.group_id is not None:
                status = await self._expand_group(job, lease)
            elif (waited := await inventory.wait_for_import(services.db, lease)) is not None:
                status = waited
            else:
                status = await self._reconcile(job, lease)
        except RedisError as error:
            # Redis only delivers and locks: a job it failed under tries again once it is back.
            log.warning("job %s: Redis failed under it, trying again later: %s", job.id, error)
            status = await self._retry_later(lease, f"Redis unavailable: {error}")
        except Exception as error:
            log.exception("job %s crashed", job.id)
            status = await state.finish(
                services.db, lease, JobStatus.failed, f"internal error: {error}"
            )
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        if self.ran_flows:
            await self._refresh_health(job)
        metrics.observe_job(self.app, status, time.monotonic() - started)
        await services.queue.enqueue_all(await state.release_next(services.db, job))
        await events.publish(services.redis, job.id, events.FINAL, status=status)
        return status

    async def _refresh_health(self, job: Job) -> None:
        """Bring the integration's health up to date after this run; the next run retries."""
        try:
            await integration_health.refresh_after_run(self.services.db, job.integration_id, job.id)
        except Exception:
            log.exception("job %s: the integration's health was not brought up to date", job.id)

    async def _renew_lease(self, lease: state.Lease) -> None:
        """Extend the lease while the job runs; note a lost one so the job stops itself."""
        lease_s = self.services.settings.job_lease_s
        while True:
            await asyncio.sleep(lease_s / LEASE_RENEWALS)
            try:
                owned = await state.renew(self.services.db, lease, lease_s=lease_s)
            except Exception:
                log.exception("job %s: lease not renewed this time", lease.job_id)
                continue
            if not owned:
                self.lost = True
                return
            if self.gate is not None:
                with contextlib.suppress(*REDIS_DOWN):
                    await self.gate.renew(lease.job_id)

    async def _expand_group(self, job: Job, lease: state.Lease) -> str:
        """Queue one identity job per user who joined or left the group, in batches.

        The SCIM request wrote one group job, however many members; here they are fanned out
        `GROUP_FANOUT_BATCH` per transaction, each batch delivered once committed. Each
        member's generation moves on in its batch's transaction: what the groups grant
        changed, so a member whose job then fails is behind and the sweep brings it back. A
        worker that stops halfway leaves the job to be reclaimed; running a batch again
        only finds its members' jobs already pending.
        """
        members = sorted(set(job.members))
        for start in range(0, len(members), GROUP_FANOUT_BATCH):
            if self.lost:
                return await state.current_status(self.services.db, job.id)
            batch = members[start : start + GROUP_FANOUT_BATCH]
            await self.services.queue.enqueue_all(await self._fan_out(job, batch))
        return await state.finish(self.services.db, lease, JobStatus.succeeded, None)

    async def _fan_out(self, job: Job, members: list[str]) -> list[Job]:
        """Move a batch of members' generations on and queue their jobs, in one transaction."""
        async with self.services.db.session() as session:
            users = (
                await session.exec(
                    select(Identity.id).where(
                        col(Identity.id).in_(members),
                        Identity.integration_id == job.integration_id,
                    )
                )
            ).all()
            if users:
                await session.exec(
                    update(Identity)
                    .where(col(Identity.id).in_(users))
                    .values(generation=col(Identity.generation) + 1)
                    .execution_options(synchronize_session=False)
                )
            jobs = [
                await state.ensure_pending(session, job.integration_id, identity_id=user)
                for user in users
            ]
            await self._foresee(session, job.integration_id, jobs)
            await session.commit()
        return jobs

    async def _foresee(self, session: AsyncSession, integration_id: str, jobs: list[Job]) -> None:
        """Note which members' jobs will take access away before any of them runs, so the
        mass-change guard sees a group change whole: one emptied by mistake is held whole.

        A member's job the guard holds is queued again, to run what is not a removal.
        """
        for pending in jobs:
            await guard.wake(session, pending)
        by_identity = {j.identity_id: j for j in jobs}
        try:
            preview = await plan_integration(
                session,
                self.services.settings,
                integration_id,
                vault=self.services.vault,
                identities=list(by_identity),
            )
        except (AppError, IntegrationError, VaultError):
            return
        for planned in preview.identities:
            removals = [action.label for action in planned.actions if action.removal]
            if removals:
                await guard.foresee(session, by_identity[planned.identity_id], removals)

    async def _retry_later(self, lease: state.Lease, error: str) -> str:
        """Give the job another attempt after a back-off, delivered when it is due."""
        status = await state.retry_later(
            self.services.db, lease, error, max_attempts=self.services.settings.job_max_attempts
        )
        if status == JobStatus.retrying:
            async with self.services.db.reader() as session:
                job = await session.get(Job, lease.job_id)
            if job is not None and job.not_before is not None:
                delay = (job.not_before - utcnow()).total_seconds()
                await self.services.queue.enqueue(job, defer_s=max(delay, 0.0))
        elif status == JobStatus.failed:
            await self._come_back_later(lease)
        return status

    async def _come_back_later(self, lease: state.Lease) -> None:
        """Queue the identity again after its failures' back-off: it is never abandoned."""
        settings = self.services.settings
        async with self.services.db.reader() as session:
            job = await session.get(Job, lease.job_id)
        if job is None:
            return
        pending = await state.come_back_later(
            self.services.db, job, base_s=settings.comeback_base_s, cap_s=settings.comeback_cap_s
        )
        if pending is not None:
            delay = 0.0
            if pending.not_before is not None:
                delay = max((pending.not_before - utcnow()).total_seconds(), 0.0)
            await self.services.queue.enqueue(pending, defer_s=delay)

    async def _load(
        self, job: Job
    ) -> tuple[
        Integration, AppTemplate, Identity, AppAccount, dict[str, str], GroupSources, Ownership
    ]:
        """Load what the job reconciles, the identity's groups and what Usher may touch.

        A new account's row is made here; an account the last inventory found unowned and
        the template's rule gives to this identity is adopted as found.
        """
        async with self.services.db.reader() as session:
            integration = await session.get(Integration, job.integration_id)
            identity = await session.get(Identity, job.identity_id)
            assert integration is not None and identity is not None
            account = await _account_of(session, identity.id)
            secrets = await self.services.vault.secrets_of(session, integration.id)
            groups = await group_sources_of(session, integration.id, identity.id)
        template = load_app(self.services.settings.flows_dir, integration.app)
        if account is None or not account.exists:
            account = await self._open_account(template, identity)
        ownership = ownership_of(integration, template, secrets)
        return integration, template, identity, account, secrets, groups, ownership

    async def _open_account(self, template: AppTemplate, identity: Identity) -> AppAccount:
        """Write the row of an identity's account not made yet, adopting the orphan its
        matching value names; in a write of its own, everything else was read before."""
        async with self.services.db.session() as session:
            account = await _account_of(session, identity.id) or AppAccount(
                integration_id=identity.integration_id, identity_id=identity.id
            )
            if not account.exists:
                session.add(account)
                await inventory.adopt_orphan(session, template, identity, account)
                await session.commit()
        return account

    async def _reconcile(self, job: Job, lease: state.Lease) -> str:
        """Plan the job now and run each action's flow, recording the account after each."""
        db = self.services.db
        try:
            loaded = await self._load(job)
        except (AppError, VaultError) as error:
            return await state.finish(db, lease, JobStatus.blocked, str(error))
        integration, template, identity, account, secrets, groups, ownership = loaded
        generation = identity.generation
        the_plan = plan(identity, account, template, groups, ownership)
        if the_plan.notes:
            log.info("job %s: %s", job.id, "; ".join(the_plan.notes))
        if the_plan.unsupported:
            log.warning("job %s: app %s lacks %s", job.id, template.name, the_plan.unsupported)
        if not the_plan.actions:
            await guard.forget(db, job.id)
            return await self._succeed(lease, account, generation)
        runnable, withheld, held = await self._guard(job, the_plan.actions, account, template)
        if held is not None and not runnable:
            parked = await guard.park(db, lease, integration.id, held)
            if parked is not None:
                return parked
            runnable, withheld, held = the_plan.actions, [], None
        missing = [s.name for s in template.secrets if s.name not in secrets]
        if missing:
            blocked = lacking_secrets(integration.id, missing)
            return await state.finish(db, lease, JobStatus.blocked, blocked)
        desired = desired_state(identity, template, groups)
        variables: dict[str, Any] = {
            "user": user_variables(identity.resource, template.extension),
            "account": {"key": account.app_key},
            "integration": {"id": integration.id, "base_url": integration.base_url.rstrip("/")},
        }
        signed_in = self._signed_in(job, lease, integration, template, secrets, variables)
        async with signed_in as (run, failure):
            owned = True
            if failure is None:
                account, failure, owned = await self._run_actions(
                    run, runnable, account, variables, desired
                )
            if owned and failure is None and held is not None:
                parked = await guard.park(db, lease, integration.id, held)
                if parked is not None:
                    return parked
                account, failure, owned = await self._run_actions(
                    run, withheld, account, variables, desired
                )
            if not owned:
                return await state.current_status(db, job.id)
        if failure is None:
            return await self._succeed(lease, account, generation)
        return await self._fail(lease, failure, integration.id)

    @contextlib.asynccontextmanager
    async def _signed_in(
        self,
        job: Job,
        lease: state.Lease,
        integration: Integration,
        template: AppTemplate,
        secrets: dict[str, str],
        variables: dict[str, Any],
    ) -> AsyncIterator[tuple["_Run", FlowFailed | None]]:
        """Open a guarded browser run for a job and sign it in (the kept session, else the
        login flow behind the breaker); yield the run and the sign-in's failure, if any.

        The flows of the run read `variables`, which the caller may change between actions.
        """
        services = self.services
        run_context = build_run(
            base_url=integration.base_url,
            template=template,
            secrets=secrets,
            variables=variables,
            ledger=services.ledger,
            account=integration.id,
            step_timeout_ms=services.settings.step_timeout_ms,
            halt=self._halt,
        )
        async with services.db.reader() as session:
            kept = await load_session(session, services.vault, integration.id)
        state_kept = kept.state if kept else None
        async with open_runner(services.browsers, run_context, state_kept) as runner:
            gate = Breaker(
                services.db,
                integration.id,
                threshold=services.settings.breaker_threshold,
                job_id=job.id,
            )
            sign_in = SignIn(
                services.db, services.vault, services.redis, integration.id, kept, gate
            )
            run = _Run(job, template, runner, sign_in, lease)
            _, failure = await self._run_with_retries(run, PlannedAction("login"))
            yield run, failure

    async def _inventory(self, job: Job, lease: state.Lease) -> str:
        """Read the app's accounts with list_users, record them and their drift, end an
        import; where the integration remedies, queue what differs and deactivate orphans."""
        db = self.services.db
        try:
            integration, template, secrets, ownership = await self._load_integration(job)
        except (AppError, VaultError) as error:
            return await state.finish(db, lease, JobStatus.blocked, str(error))
        if template.inventory is None:
            return await state.finish(
                db, lease, JobStatus.blocked, f"app {template.name} declares no inventory"
            )
        missing = [s.name for s in template.secrets if s.name not in secrets]
        if missing:
            blocked = lacking_secrets(integration.id, missing)
            return await state.finish(db, lease, JobStatus.blocked, blocked)
        variables: dict[str, Any] = {
            "user": {},
            "account": {"key": None},
            "integration": {"id": integration.id, "base_url": integration.base_url.rstrip("/")},
        }
        signed_in = self._signed_in(job, lease, integration, template, secrets, variables)
        async with signed_in as (run, failure):
            outcome = None
            if failure is None:
                outcome, failure = await self._run_with_retries(run, PlannedAction("list_users"))
                if failure is not None and await self._signed_in_again(run):
                    outcome, failure = await self._run_with_retries(
                        run, PlannedAction("list_users")
                    )
            if outcome is not None and failure is None:
                failure = await self._record_inventory(run, ownership, variables, outcome)
        if failure is None:
            return await state.finish(db, lease, JobStatus.succeeded, None)
        return await self._fail(lease, failure, integration.id)

    async def _load_integration(
        self, job: Job
    ) -> tuple[Integration, AppTemplate, dict[str, str], Ownership]:
        """Load the integration an inventory reads, its template, secrets and ownership."""
        async with self.services.db.reader() as session:
            integration = await session.get(Integration, job.integration_id)
            assert integration is not None
            secrets = await self.services.vault.secrets_of(session, integration.id)
        template = load_app(self.services.settings.flows_dir, integration.app)
        return integration, template, secrets, ownership_of(integration, template, secrets)

    async def _record_inventory(
        self,
        run: "_Run",
        ownership: Ownership,
        variables: dict[str, Any],
        outcome: FlowOutcome,
    ) -> FlowFailed | None:
        """Record what list_users read, deliver the jobs it queued or released, and
        deactivate the orphans a remediation names; a failure when no rows were read."""
        spec = run.template.inventory
        assert spec is not None
        rows = outcome.rows.get(spec.rows)
        if rows is None:
            return FlowFailed(
                f"list_users read no rows into {spec.rows!r} (inventory.rows in app.yaml)"
            )
        recorded = await inventory.record_inventory(
            self.services.db, run.job, run.template, ownership, rows
        )
        await self.services.queue.enqueue_all([*recorded.queued, *recorded.released])
        if recorded.deactivate:
            await self._deactivate_orphans(run, variables, recorded)
        return None

    async def _deactivate_orphans(
        self, run: "_Run", variables: dict[str, Any], recorded: inventory.Recorded
    ) -> None:
        """Deactivate each orphan a remediation names, each an action with its evidence."""
        done: list[str] = []
        failed: list[str] = []
        for key in recorded.deactivate:
            if not await self._still_owned(run.lease):
                break
            run.subject = key
            variables["account"] = {"key": key}
            _, failure = await self._run_with_retries(run, PlannedAction("deactivate_user"))
            (failed if failure else done).append(key)
        run.subject = None
        await inventory.note_deactivations(self.services.db, recorded.report_id, done, failed)

    async def _guard(
        self, job: Job, actions: list[PlannedAction], account: AppAccount, template: AppTemplate
    ) -> tuple[list[PlannedAction], list[PlannedAction], str | None]:
        """Ask the mass-change guard about the plan's removals: return what runs now, what it
        holds, and why (None: nothing held, all of it runs)."""
        removals = [a for a in actions if removes_access(a, account, template)]
        if not removals:
            await guard.forget(self.services.db, job.id)
            return actions, [], None
        held = await guard.admit(self.services.db, job, [action_label(a) for a in removals])
        if held is None:
            return actions, [], None
        return [a for a in actions if a not in removals], removals, held

    async def _run_actions(
        self,
        run: "_Run",
        actions: list[PlannedAction],
        account: AppAccount,
        variables: dict[str, Any],
        desired: Desired,
    ) -> tuple[AppAccount, FlowFailed | None, bool]:
        """Run planned actions in order until one fails, recording the account after each.

        An update the account's record already shows is skipped: a create that filled in
        every attribute leaves nothing for the update after it.

        Returns the account, the failure if one failed, and False when the job was lost
        (cancelled or reclaimed) before an action.
        """
        for planned in actions:
            if planned.name == "update_user" and not attributes_pending(account, desired):
                continue
            if not await self._still_owned(run.lease):
                return account, None, False
            variables["account"] = {"key": account.app_key}
            variables["entitlement"] = (
                planned.entitlement.model_dump() if planned.entitlement else {}
            )
            outcome, failure = await self._run_with_retries(run, planned)
            if failure is not None and await self._signed_in_again(run):
                outcome, failure = await self._run_with_retries(run, planned)
            if outcome is not None:
                account = await self._record_account(
                    account, planned, desired, run.template, outcome
                )
            if failure is not None:
                return account, failure, True
        return account, None, True

    async def _succeed(self, lease: state.Lease, account: AppAccount, generation: int) -> str:
        """Note the identity generation the account now matches, then close the job.

        The account matches whatever becomes of the job's row, so the note comes first: the
        sweep never mistakes a finished identity for one left behind.
        """
        async with self.services.db.session() as session:
            stored = await session.get(AppAccount, account.id)
            if stored is not None and stored.reconciled_generation < generation:
                stored.reconciled_generation = generation
                session.add(stored)
                await session.commit()
        return await state.finish(self.services.db, lease, JobStatus.succeeded, None)

    async def _fail(self, lease: state.Lease, failure: FlowFailed, integration_id: str) -> str:
        """Close a job that failed: retry a transient fault, wait for a person, or park it.

        A refused sign-in waits while the integration's breaker is open (an operator or a
        probe releases it); below the threshold it is tried again later, like a fault.
        """
        db = self.services.db
        if isinstance(failure, BreakerOpen):
            return await state.wait(db, lease, str(failure))
        if failure.refused:
            if await is_open(db, integration_id):
                return await state.wait(db, lease, str(failure))
            return await self._retry_later(lease, str(failure))
        if failure.transient:
            return await self._retry_later(lease, str(failure))
        outcome = JobStatus.action_required if failure.needs_human else JobStatus.blocked
        return await state.finish(self.services.db, lease, outcome, str(failure))

    async def _run_with_retries(
        self, run: "_Run", planned: PlannedAction
    ) -> tuple[FlowOutcome | None, FlowFailed | None]:
        """Run an action, retrying it from its own check while its failures are transient.

        Actions are idempotent and look before they act, so a retry after a 500 or a dead
        page resumes where the app is. Job attempts are for crashes; this is for faults.
        """
        tries = self.services.settings.action_tries
        outcome, failure = await self._run_action(run, planned)
        for retry in range(1, tries):
            if failure is None or not failure.transient or self.lost or run.runner.dead:
                break
            await asyncio.sleep(action_backoff_s(retry))
            if not await self._still_owned(run.lease):
                break
            outcome, failure = await self._run_action(run, planned)
        return outcome, failure

    async def _signed_in_again(self, run: "_Run") -> bool:
        """After a failed action, sign in again once; True when a new session was made."""
        if run.relogged:
            return False
        run.relogged = True
        _, failure = await self._run_with_retries(run, PlannedAction("login"))
        return failure is None and run.sign_in.fresh

    async def _run_action(
        self, run: "_Run", planned: PlannedAction
    ) -> tuple[FlowOutcome | None, FlowFailed | None]:
        """Run one action's flow as an Action row; return its outcome or its failure."""
        action = Action(
            job_id=run.job.id,
            attempt=run.job.attempt,
            position=run.next_position(),
            name=planned.name,
            target=planned.target or run.subject,
        )
        outcome: FlowOutcome | None = None
        failure: FlowFailed | None = None
        try:
            path = run.template.flow_path(planned.name)
            action.flow_sha256 = file_sha256(path)
            flow = load_flow(path)
            action.fragment_sha256 = fragment_hashes(flow.steps, path.parent / FRAGMENTS_DIR)
        except (FlowError, OSError) as error:
            flow, failure = None, FlowFailed(str(error))
        async with self.services.db.session() as session:
            session.add(action)
            await session.commit()
        self.ran_flows = True
        sink = DbStepSink(self.services, run.job.id, action, run.template.name)
        await self._keep_pace()
        started = time.monotonic()
        try:
            if flow is None:
                pass
            elif planned.name == "login":
                outcome = await run.sign_in.ensure(run.runner, flow, sink)
            else:
                outcome = await run.runner.run(flow, sink)
        except FlowFailed as error:
            failure = error
        finally:
            await sink.drain()
        metrics.observe_action(
            run.template.name,
            planned.name,
            ActionStatus.failed if failure else ActionStatus.succeeded,
            time.monotonic() - started,
        )
        async with self.services.db.session() as session:
            stored = await session.get(Action, action.id)
            assert stored is not None
            stored.status = ActionStatus.failed if failure else ActionStatus.succeeded
            stored.error = str(failure) if failure else None
            stored.degraded = sink.degraded
            stored.finished_at = utcnow()
            session.add(stored)
            await session.commit()
        return outcome, failure

    async def _keep_pace(self) -> None:
        """Wait, if need be, until the integration's actions-per-minute budget allows one more."""
        if self.gate is None or not self.pace_limit:
            return
        for _ in range(PACE_WAITS):
            try:
                wait = await self.gate.pace(self.pace_limit)
            except REDIS_DOWN:
                return
            if wait <= 0:
                return
            log.info("integration at its pace of %d actions a minute", self.pace_limit)
            await asyncio.sleep(wait)

    async def _record_account(
        self,
        account: AppAccount,
        planned: PlannedAction,
        desired: Desired,
        template: AppTemplate,
        outcome: FlowOutcome,
    ) -> AppAccount:
        """Save what the action made true, with the app's key it extracted; return the row.

        An action that found its state already so, and that Usher never tried before for
        this identity, records what it observed: Usher did not make it so.
        """
        found = outcome.already and not await self._tried_before(account, planned)
        async with self.services.db.session() as session:
            stored = await session.get(AppAccount, account.id)
            assert stored is not None
            apply_success(
                planned,
                stored,
                desired,
                template,
                outcome.extracted.get("account_key"),
                found=found,
                extracted=outcome.extracted,
            )
            stored.updated_at = utcnow()
            session.add(stored)
            await session.commit()
            return stored

    async def _tried_before(self, account: AppAccount, planned: PlannedAction) -> bool:
        """Tell whether an earlier run of this action for this identity failed.

        A failure after the app did the work (a 500 once processed, a lost page) leaves the
        state made by Usher: the next run finds it "already so" and it is still Usher's.
        """
        query = (
            select(Action.id)
            .join(Job, col(Job.id) == col(Action.job_id))
            .where(
                Job.identity_id == account.identity_id,
                Action.name == planned.name,
                Action.status == ActionStatus.failed,
            )
        )
        if planned.target is not None:
            query = query.where(Action.target == planned.target)
        async with self.services.db.reader() as session:
            return (await session.exec(query.limit(1))).first() is not None

    def _halt(self) -> str | None:
        """Say why the job must stop before its next step: its lease was lost."""
        return "this worker lost the job's lease; another attempt takes over" if self.lost else None

    async def _still_owned(self, lease: state.Lease) -> bool:
        """Tell whether this worker still holds the job: not cancelled, not reclaimed."""
        return not self.lost and await state.owns(self.services.db, lease)
