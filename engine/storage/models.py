"""SQLModel tables: the database is the source of truth, Redis only delivers."""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from engine.constants import GUARD_MAX_REMOVALS


def utcnow() -> datetime:
    """Return the current time, aware and in UTC, as SQLModel's UTCDateTime requires."""
    return datetime.now(UTC)


def new_id() -> str:
    """Return a random 32-hex-digit id, unguessable across integrations."""
    return uuid.uuid4().hex


class JobStatus(StrEnum):
    """Where a reconcile job stands; `engine.jobs.state` owns every move between these."""

    queued = "queued"
    running = "running"
    retrying = "retrying"
    succeeded = "succeeded"
    failed = "failed"
    blocked = "blocked"
    action_required = "action_required"
    waiting = "waiting"
    cancelled = "cancelled"
    superseded = "superseded"


PENDING_SQL = "status IN ('queued', 'retrying', 'waiting')"
"""The states of a job that has not started: at most one per identity and per group."""
RUNNING_SQL = "status = 'running'"
"""At most one running job per identity and per group: the database guards single flight."""
INVENTORY_SQL = "kind = 'inventory'"
"""An inventory job: at most one pending and one running per integration."""


class JobKind(StrEnum):
    """What a job does: reconcile one identity (or fan a group out), or read the app's accounts."""

    reconcile = "reconcile"
    inventory = "inventory"


class Onboarding(StrEnum):
    """Whether an integration plans: not before its app's existing accounts are imported."""

    importing = "importing"
    ready = "ready"


class Lane(StrEnum):
    """Which worker slots run a job: access removal never waits behind a backlog of creates."""

    normal = "normal"
    urgent = "urgent"


class ActionStatus(StrEnum):
    """How one flow run inside a job ended."""

    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class StepStatus(StrEnum):
    """How one flow step ended: `already` found the state already so and ended the action.

    `skipped` is what rows written before `already` existed call such a step.
    """

    ok = "ok"
    already = "already"
    skipped = "skipped"
    failed = "failed"


class Integration(SQLModel, table=True):
    """One IdP connection to one running instance of an app."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    app: str = Field(index=True, max_length=64)
    name: str = Field(max_length=200)
    base_url: str = Field(max_length=2000)
    scim_token_hash: str = Field(unique=True, max_length=64)
    health: str = Field(default="under_validation", max_length=32)
    health_detail: str | None = Field(
        default=None, max_length=2000, description="Why health is what it is, for the IT admin."
    )
    breaker: str = Field(
        default="closed",
        max_length=16,
        description="closed: sign in; open: refused too often, no sign-in; half_open: probing.",
    )
    refusals: int = Field(default=0, description="Refused sign-ins since the last success.")
    breaker_changed_at: datetime | None = None
    authoritative: bool = Field(
        default=False,
        sa_column_kwargs={"server_default": text("false")},
        description="Usher owns the app's accounts: it also revokes and deactivates what it "
        "only observed. Off: it removes only what it granted itself.",
    )
    protected_accounts: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False, server_default="[]"),
        description="userNames or emails (any case) Usher never touches: break-glass admins.",
    )
    delete_users: bool = Field(
        default=False,
        sa_column_kwargs={"server_default": text("false")},
        description="A SCIM DELETE runs the app's delete_user, where its template declares one.",
    )
    max_removals_per_hour: int = Field(
        default=GUARD_MAX_REMOVALS,
        sa_column_kwargs={"server_default": text(str(GUARD_MAX_REMOVALS))},
        description="The mass-change guard: once more accounts than this would lose access "
        "within an hour, their removals wait for an operator's approval.",
    )
    removals_approved_at: datetime | None = Field(
        default=None,
        description="When an operator last approved held removals: what the guard admitted "
        "before then no longer counts against the hour.",
    )
    onboarding: str = Field(
        default=Onboarding.ready,
        max_length=16,
        sa_column_kwargs={"server_default": Onboarding.ready},
        description="importing: its jobs wait until list_users has imported the app's existing "
        "accounts; ready: it plans.",
    )
    remediate: bool = Field(
        default=False,
        sa_column_kwargs={"server_default": text("false")},
        description="An inventory's drift is remedied (identities reconciled, orphans "
        "deactivated), and only while the integration is also authoritative.",
    )
    next_inventory_at: datetime | None = Field(
        default=None,
        description="When the daily inventory is due next (None: now); a worker claims it by "
        "compare-and-set, so one runs however many workers look.",
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class IntegrationSecret(SQLModel, table=True):
    """One secret of an integration, encrypted by the vault."""

    __tablename__ = "integration_secret"
    integration_id: str = Field(foreign_key="integration.id", primary_key=True, max_length=32)
    name: str = Field(primary_key=True, max_length=100)
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class IntegrationSession(SQLModel, table=True):
    """The app's logged-in browser state for an integration, encrypted, shared by workers."""

    __tablename__ = "integration_session"
    integration_id: str = Field(foreign_key="integration.id", primary_key=True, max_length=32)
    generation: int = Field(default=0, description="Bumped by each new sign-in.")
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class Identity(SQLModel, table=True):
    """A SCIM User of one integration: what the IdP says the account should be."""

    __table_args__ = (
        UniqueConstraint("integration_id", "user_name_key", name="uq_identity_user_name"),
        Index("ix_identity_external_id", "integration_id", "external_id", "created_at", "id"),
        Index("ix_identity_listing", "integration_id", "created_at", "id"),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    integration_id: str = Field(foreign_key="integration.id", index=True, max_length=32)
    user_name: str = Field(max_length=500)
    user_name_key: str = Field(max_length=500, description="userName case-folded, for eq.")
    external_id: str | None = Field(default=None, max_length=500)
    display_name: str | None = Field(default=None, max_length=500)
    active: bool = True
    resource: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    version: int = 1
    generation: int = Field(default=1, description="Bumped by each change the app's flows see.")
    deleted_at: datetime | None = Field(
        default=None, description="Set by a SCIM DELETE: hidden from SCIM, deprovisioned."
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ScimGroup(SQLModel, table=True):
    """A SCIM Group of one integration; its members live in Membership."""

    __tablename__ = "scim_group"
    __table_args__ = (
        UniqueConstraint("integration_id", "display_name_key", name="uq_group_display_name"),
        Index("ix_scim_group_external_id", "integration_id", "external_id", "created_at", "id"),
        Index("ix_scim_group_listing", "integration_id", "created_at", "id"),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    integration_id: str = Field(foreign_key="integration.id", index=True, max_length=32)
    display_name: str = Field(max_length=500)
    display_name_key: str = Field(max_length=500)
    external_id: str | None = Field(default=None, max_length=500)
    resource: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    version: int = 1
    generation: int = 1
    deleted_at: datetime | None = Field(
        default=None, description="Set by a SCIM DELETE: hidden, its former members reconciled."
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Membership(SQLModel, table=True):
    """One member of a group, kept as a row so that thousands need no rewrite of the group."""

    group_id: str = Field(foreign_key="scim_group.id", primary_key=True, max_length=32)
    member_id: str = Field(primary_key=True, max_length=32, index=True)
    member_type: str = Field(default="User", max_length=16)
    display: str | None = Field(default=None, max_length=500)


class GroupMapping(SQLModel, table=True):
    """An integration's rule: the members of a group named otherwise get an entitlement value.

    A pushed group whose displayName or externalId is an entitlement value grants it without
    a mapping. A mapping names its group by the externalId the IdP sent (Entra's objectId:
    names change), else by the group's id, else as typed for a group not pushed yet.
    """

    __tablename__ = "group_mapping"
    __table_args__ = (
        UniqueConstraint(
            "integration_id", "group_kind", "group_key", "value", name="uq_group_mapping"
        ),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    integration_id: str = Field(foreign_key="integration.id", index=True, max_length=32)
    group_kind: str = Field(
        max_length=16,
        description="external_id, id, or name: a displayName or externalId as typed.",
    )
    group_key: str = Field(max_length=500)
    group_label: str = Field(max_length=500, description="The group's name when mapped.")
    value: str = Field(max_length=500, description="The entitlement value its members get.")
    created_at: datetime = Field(default_factory=utcnow)


ASSIGNMENT_DUE_SQL = "expired_at IS NULL AND revoked_at IS NULL AND expires_at IS NOT NULL"
"""The assignments the expiry timer still has to look at."""


class Assignment(SQLModel, table=True):
    """An entitlement value granted to one identity directly, through the assignments API.

    The fourth source of desired state, beside the user's attributes, named groups and
    mappings. It grants while neither revoked nor expired and before `expires_at`; the
    expiry timer marks it expired once and queues its identity's job.
    """

    __table_args__ = (
        Index("ix_assignment_identity", "identity_id", "created_at"),
        Index("ix_assignment_listing", "integration_id", "created_at", "id"),
        Index(
            "ix_assignment_due",
            "expires_at",
            sqlite_where=text(ASSIGNMENT_DUE_SQL),
            postgresql_where=text(ASSIGNMENT_DUE_SQL),
        ),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    integration_id: str = Field(foreign_key="integration.id", max_length=32)
    identity_id: str = Field(foreign_key="identity.id", max_length=32)
    value: str = Field(max_length=500, description="An entitlement value of the catalogue.")
    reason: str = Field(max_length=500, description="Why, as the ticket says; plans show it.")
    created_by: str = Field(max_length=200, description="The API key or operator who asked.")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = Field(default=None, max_length=200)
    expired_at: datetime | None = Field(
        default=None, description="When the expiry timer ended it and queued its identity."
    )


class AssignmentRequest(SQLModel, table=True):
    """A POST of an assignment under an Idempotency-Key: a retry gets the first answer back."""

    __tablename__ = "assignment_request"
    __table_args__ = (
        UniqueConstraint("integration_id", "idempotency_key", name="uq_assignment_request_key"),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    integration_id: str = Field(foreign_key="integration.id", max_length=32)
    idempotency_key: str = Field(max_length=255)
    request_sha256: str = Field(max_length=64, description="The request body's fingerprint.")
    assignment_id: str | None = Field(default=None, foreign_key="assignment.id", max_length=32)
    status_code: int = Field(default=201)
    response: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class AppAccount(SQLModel, table=True):
    """An identity's account in the app: what Usher granted, apart from what it observed.

    `exists`, `active` and `entitlements` are what Usher's own actions made true; an account
    found already there (a create that ended "already") is recorded in the `observed_*`
    fields instead. Usher removes only what it granted, unless the integration is
    authoritative.
    """

    __tablename__ = "app_account"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    integration_id: str = Field(foreign_key="integration.id", index=True, max_length=32)
    identity_id: str = Field(foreign_key="identity.id", unique=True, max_length=32)
    app_key: str | None = Field(default=None, max_length=500)
    exists: bool = False
    active: bool | None = None
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    entitlements: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    observed_at: datetime | None = Field(
        default=None, description="When Usher found the account already in the app, if it did."
    )
    observed_active: bool | None = Field(
        default=None, description="Active or not as found in the app; None: not seen."
    )
    observed_entitlements: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False, server_default="[]"),
        description="Values found in the app that Usher did not grant.",
    )
    reconciled_generation: int = Field(
        default=0,
        description="The identity's generation a job last made the account match; the sweep "
        "brings back every identity whose generation is newer and has no live job.",
    )
    observed_exists: bool | None = Field(
        default=None,
        description="Whether the last inventory listed the account; None: none looked yet.",
    )
    inventoried_at: datetime | None = Field(
        default=None, description="When an inventory last looked for the account in the app."
    )
    updated_at: datetime = Field(default_factory=utcnow)


class AppOrphan(SQLModel, table=True):
    """An account the app lists that no identity owns, as the last inventory read it.

    Kept apart from `app_account` (never a made-up identity); a job whose identity matches
    it by the template's rule adopts it as found, so no one is invited twice.
    """

    __tablename__ = "app_orphan"
    __table_args__ = (
        UniqueConstraint("integration_id", "app_key", name="uq_app_orphan_key"),
        Index("ix_app_orphan_match", "integration_id", "match_key"),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    integration_id: str = Field(foreign_key="integration.id", max_length=32)
    app_key: str = Field(max_length=500, description="The app's own id of the account.")
    match_key: str | None = Field(
        default=None, max_length=500, description="The matching column's value, as compared."
    )
    label: str = Field(max_length=500, description="The matching column's value as shown.")
    active: bool | None = None
    entitlements: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    protected: bool = Field(default=False, description="The service account or a listed one.")
    first_seen_at: datetime = Field(default_factory=utcnow)
    seen_at: datetime = Field(default_factory=utcnow)
    deactivated_at: datetime | None = Field(
        default=None, description="When a remediation deactivated it in the app."
    )


class DriftReport(SQLModel, table=True):
    """What one inventory found: orphans, identities missing in the app, differences."""

    __tablename__ = "drift_report"
    __table_args__ = (Index("ix_drift_report_latest", "integration_id", "created_at"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    integration_id: str = Field(foreign_key="integration.id", max_length=32)
    job_id: str = Field(foreign_key="job.id", max_length=32)
    created_at: datetime = Field(default_factory=utcnow)
    imported: bool = Field(default=False, description="The onboarding import's report.")
    accounts: int = Field(default=0, description="Accounts the app listed.")
    orphans: int = 0
    missing: int = 0
    differing: int = 0
    protected: int = 0
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Job(SQLModel, table=True):
    """One reconcile run for one identity: "make the account match the IdP now"."""

    __table_args__ = (
        Index(
            "uq_job_pending_identity",
            "identity_id",
            unique=True,
            sqlite_where=text(PENDING_SQL),
            postgresql_where=text(PENDING_SQL),
        ),
        Index(
            "uq_job_pending_group",
            "group_id",
            unique=True,
            sqlite_where=text(PENDING_SQL),
            postgresql_where=text(PENDING_SQL),
        ),
        Index(
            "uq_job_running_identity",
            "identity_id",
            unique=True,
            sqlite_where=text(RUNNING_SQL),
            postgresql_where=text(RUNNING_SQL),
        ),
        Index(
            "uq_job_running_group",
            "group_id",
            unique=True,
            sqlite_where=text(RUNNING_SQL),
            postgresql_where=text(RUNNING_SQL),
        ),
        Index("ix_job_status_lease", "status", "lease_until"),
        Index("ix_job_status_not_before", "status", "not_before"),
        Index("ix_job_activity", "created_at", "id"),
        Index("ix_job_activity_integration", "integration_id", "created_at", "id"),
        Index(
            "uq_job_pending_inventory",
            "integration_id",
            unique=True,
            sqlite_where=text(f"{INVENTORY_SQL} AND {PENDING_SQL}"),
            postgresql_where=text(f"{INVENTORY_SQL} AND {PENDING_SQL}"),
        ),
        Index(
            "uq_job_running_inventory",
            "integration_id",
            unique=True,
            sqlite_where=text(f"{INVENTORY_SQL} AND {RUNNING_SQL}"),
            postgresql_where=text(f"{INVENTORY_SQL} AND {RUNNING_SQL}"),
        ),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    integration_id: str = Field(foreign_key="integration.id", index=True, max_length=32)
    identity_id: str | None = Field(
        default=None, foreign_key="identity.id", index=True, max_length=32
    )
    group_id: str | None = Field(
        default=None,
        foreign_key="scim_group.id",
        index=True,
        max_length=32,
        description="A group job expands into the identity jobs of `members`.",
    )
    members: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False, server_default="[]"),
        description="A group job's members that joined or left: one row, however many.",
    )
    kind: str = Field(
        default=JobKind.reconcile,
        max_length=16,
        sa_column_kwargs={"server_default": JobKind.reconcile},
        description="inventory: read the app's accounts with list_users (no identity, no group).",
    )
    status: str = Field(default=JobStatus.queued, max_length=16)
    lane: str = Field(
        default=Lane.normal,
        max_length=16,
        description="urgent: the identity should lose access; reserved worker slots run it.",
    )
    attempt: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_until: datetime | None = None
    not_before: datetime | None = Field(
        default=None, description="A pending job is not delivered before this time (back-off)."
    )
    worker: str | None = Field(default=None, max_length=200)
    error: str | None = None
    superseded_by: str | None = Field(
        default=None, max_length=32, description="The newer job that reconciles this identity."
    )


def inventories_of(integration_id: str) -> list[Any]:
    """Return the conditions selecting an integration's inventory jobs: their one flight."""
    return [Job.integration_id == integration_id, Job.kind == JobKind.inventory]


class Action(SQLModel, table=True):
    """One flow run inside a job (create_user, grant_entitlement, ...)."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    job_id: str = Field(foreign_key="job.id", index=True, max_length=32)
    attempt: int = 1
    position: int = 0
    name: str = Field(max_length=64)
    target: str | None = Field(default=None, max_length=500, description="Entitlement value.")
    flow_sha256: str | None = Field(
        default=None, max_length=64, description="The SHA-256 of the flow file this action ran."
    )
    fragment_sha256: dict[str, str] = Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False, server_default="{}"),
        description="The SHA-256 of each fragment the flow uses, by name.",
    )
    status: str = Field(default=ActionStatus.running, max_length=16)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    error: str | None = None
    degraded: bool = Field(
        default=False,
        sa_column_kwargs={"server_default": text("false")},
        description="A step matched only through a fallback locator: the app's UI drifted.",
    )


class Step(SQLModel, table=True):
    """One flow step: what ran, how long, which locator matched, and its screenshot."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    action_id: str = Field(foreign_key="action.id", index=True, max_length=32)
    position: int = 0
    name: str = Field(max_length=200)
    kind: str = Field(max_length=32)
    status: str = Field(default=StepStatus.ok, max_length=16)
    duration_ms: int = 0
    locator: str | None = Field(default=None, max_length=1000)
    failed_locator: str | None = Field(
        default=None,
        max_length=1000,
        description="Set when only a fallback matched: the locators tried before it that "
        "found nothing (the step's own first); `locator` is the fallback that matched.",
    )
    url: str | None = Field(default=None, max_length=2000)
    error: str | None = None
    started_at: datetime = Field(default_factory=utcnow)


class Evidence(SQLModel, table=True):
    """One evidence file (screenshot, stripped HTML, console log) with its SHA-256."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    job_id: str = Field(foreign_key="job.id", index=True, max_length=32)
    step_id: str | None = Field(default=None, foreign_key="step.id", index=True, max_length=32)
    kind: str = Field(max_length=32)
    key: str = Field(max_length=500, description="Where the EvidenceStore keeps it.")
    content_type: str = Field(max_length=100)
    sha256: str = Field(max_length=64)
    size: int
    created_at: datetime = Field(default_factory=utcnow)


class EvidenceBlob(SQLModel, table=True):
    """An evidence file kept in the database, for workers that share no disk."""

    __tablename__ = "evidence_blob"
    key: str = Field(primary_key=True, max_length=500)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sha256: str = Field(max_length=64)
    size: int
    created_at: datetime = Field(default_factory=utcnow)


class IntegrationWebhook(SQLModel, table=True):
    """Where an integration's alerts go: a URL and the secret that signs each delivery."""

    __tablename__ = "integration_webhook"
    integration_id: str = Field(foreign_key="integration.id", primary_key=True, max_length=32)
    url: str = Field(max_length=2000)
    secret_ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class DeliveryStatus(StrEnum):
    """Where one alert's delivery stands."""

    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class WebhookDelivery(SQLModel, table=True):
    """One alert to one integration's webhook: queued with what caused it, sent by a worker."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_due", "status", "next_at"),
        Index("ix_webhook_delivery_listing", "integration_id", "created_at"),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    integration_id: str = Field(foreign_key="integration.id", max_length=32)
    event: str = Field(max_length=100)
    job_id: str | None = Field(default=None, max_length=32)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=DeliveryStatus.pending, max_length=16)
    attempts: int = 0
    next_at: datetime = Field(default_factory=utcnow)
    last_code: int | None = Field(default=None, description="The receiver's last HTTP status.")
    last_error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None


class RemovalStatus(StrEnum):
    """Where one job's access removals stand with the mass-change guard."""

    planned = "planned"
    """Foreseen before the job ran (a group change, a deactivation): counts while it is live."""
    admitted = "admitted"
    """Within the hour's budget: the job runs its removals."""
    held = "held"
    """Over the budget: the job's removals wait in `waiting` for an operator."""
    approved = "approved"
    """An operator approved them: the job runs its removals, never held again."""
    dropped = "dropped"
    """The job ran and planned no removal after all: it does not count."""


class Removal(SQLModel, table=True):
    """One job's access removals as the mass-change guard counted them, one row per job.

    The guard counts distinct accounts (identities) in a sliding hour per integration; the
    rows are written under the integration's row lock, so workers never admit past it.
    """

    __table_args__ = (
        Index("ix_removal_window", "integration_id", "counted_at"),
        Index("ix_removal_status", "integration_id", "status"),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    integration_id: str = Field(foreign_key="integration.id", max_length=32)
    identity_id: str = Field(foreign_key="identity.id", max_length=32)
    job_id: str = Field(foreign_key="job.id", unique=True, max_length=32)
    status: str = Field(default=RemovalStatus.planned, max_length=16)
    actions: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False),
        description="The removals planned, as `action [value]`, for the operator to review.",
    )
    counted_at: datetime = Field(default_factory=utcnow, description="Where it sits in the hour.")
    approved_by: str | None = Field(default=None, max_length=200)
    approved_at: datetime | None = None


class Role(StrEnum):
    """What an operator may do: a viewer reads everything and changes nothing."""

    viewer = "viewer"
    admin = "admin"


class ApiToken(SQLModel, table=True):
    """An operator's API token; only its hash is stored."""

    __tablename__ = "api_token"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    token_hash: str = Field(unique=True, max_length=64)
    role: str = Field(
        default=Role.admin, max_length=16, sa_column_kwargs={"server_default": Role.admin}
    )
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None


class IntegrationKey(SQLModel, table=True):
    """An API key of one integration, for its assignments API only; only its hash is stored."""

    __tablename__ = "integration_key"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    integration_id: str = Field(foreign_key="integration.id", index=True, max_length=32)
    name: str = Field(max_length=200)
    key_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class AuditEvent(SQLModel, table=True):
    """An append-only log line: who did what to which target, chained to the line before.

    `engine.storage.audit` numbers and hashes each event when its transaction commits;
    rows written before the chain began (migration 0008) have no `seq`.
    """

    __tablename__ = "audit_event"
    __table_args__ = (UniqueConstraint("seq", name="uq_audit_event_seq"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=200)
    event: str = Field(max_length=100)
    integration_id: str | None = Field(default=None, index=True, max_length=32)
    job_id: str | None = Field(default=None, index=True, max_length=32)
    target: str | None = Field(default=None, max_length=500)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    seq: int | None = Field(default=None, description="The event's place in the chain, from 1.")
    prev_sha256: str | None = Field(
        default=None, max_length=64, description="The hash of the event before it."
    )
    sha256: str | None = Field(
        default=None, max_length=64, description="The hash of this event, its prev included."
    )


class Operator(SQLModel, table=True):
    """A person who signs in to the pages; only an Argon2id hash of the password is kept."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    username: str = Field(unique=True, max_length=200, description="Case-folded.")
    password_hash: str = Field(max_length=500)
    role: str = Field(default=Role.viewer, max_length=16)
    disabled: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class ScimRequest(SQLModel, table=True):
    """One request an IdP made, without its body (bodies can carry passwords)."""

    __tablename__ = "scim_request"
    __table_args__ = (Index("ix_scim_request_listing", "integration_id", "at", "id"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    integration_id: str = Field(foreign_key="integration.id", max_length=32)
    at: datetime = Field(default_factory=utcnow, index=True)
    method: str = Field(max_length=10)
    path: str = Field(max_length=1000)
    status: int
    identity_id: str | None = Field(default=None, max_length=32)
    job_id: str | None = Field(default=None, max_length=32)
