"""Every Prometheus metric Usher exports: names, label sets and buckets in one place.

Each process counts what it does itself, in prometheus_client's default registry: the API
its SCIM requests, a worker its jobs, actions, steps, sign-ins and browser contexts (with
`usher up`, one process does both). Prometheus scrapes every process and sums. What only
the database knows (live jobs by state, queue depth, the oldest queued job, each breaker)
is read at scrape time by the API alone, so that N workers never report it N times.

Labels are bounded: methods, resource types and status codes of SCIM; app, action and
outcome names from the app templates and the job's states; integration ids (one per
connected app instance). Never a job id, a user, an email or a path.
"""

import hmac
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from engine.constants import (
    ACTION_DURATION_BUCKETS_S,
    JOB_DURATION_BUCKETS_S,
    SCIM_DURATION_BUCKETS_S,
    STEP_DURATION_BUCKETS_S,
)

OTHER = "other"
"""The label value of anything outside a bounded set (a method or resource nobody serves)."""
UNKNOWN = "unknown"
"""The app of a job whose integration could not be read."""
SCIM_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
SCIM_RESOURCES = frozenset(
    {
        "Users",
        "Groups",
        "Me",
        "Bulk",
        ".search",
        "Schemas",
        "ResourceTypes",
        "ServiceProviderConfig",
        "Entitlements",
        "Roles",
    }
)
SCIM_RESOURCE_SEGMENT = 4
"""`/scim/v2/{integration}/{resource}/…` split at each `/` ("" first): the resource type."""

# No `_created` series beside each counter and histogram: they would double every series.
disable_created_metrics()


class SignInResult(StrEnum):
    """How one run of an integration's login flow ended."""

    signed_in = "signed_in"
    """A new session was made and kept."""
    kept = "kept"
    """The kept session was still signed in."""
    refused = "refused"
    """The app turned the service account down (counts toward the breaker)."""
    failed = "failed"
    """Any other failure: a fault, a page that never settled, a human-only obstacle."""
    paused = "paused"
    """The breaker allowed no sign-in."""


SCIM_REQUESTS = Counter(
    "usher_scim_requests",
    "SCIM requests answered by this process, by method, resource type and HTTP status.",
    ["method", "resource", "status"],
)
SCIM_DURATION = Histogram(
    "usher_scim_request_duration_seconds",
    "Time from a SCIM request's arrival to its answer, enqueueing its jobs included.",
    ["method", "resource"],
    buckets=SCIM_DURATION_BUCKETS_S,
)
JOB_DURATION = Histogram(
    "usher_job_duration_seconds",
    "A job attempt from its claim to its end, by app and the state it ended in.",
    ["app", "outcome"],
    buckets=JOB_DURATION_BUCKETS_S,
)
ACTION_DURATION = Histogram(
    "usher_action_duration_seconds",
    "One run of an action's flow (login included), by app, action and outcome.",
    ["app", "action", "outcome"],
    buckets=ACTION_DURATION_BUCKETS_S,
)
STEP_DURATION = Histogram(
    "usher_step_duration_seconds",
    "One flow step, its screenshot included, by app and action.",
    ["app", "action"],
    buckets=STEP_DURATION_BUCKETS_S,
)
SIGN_INS = Counter(
    "usher_sign_ins",
    "Runs of an integration's login flow, by result (signed_in, kept, refused, failed, paused).",
    ["integration", "result"],
)
BROWSER_CONTEXTS_OPEN = Gauge(
    "usher_browser_contexts_open",
    "Browser contexts open in this process: one per running job or probe.",
)
BROWSER_LAUNCHES = Counter(
    "usher_browser_launches",
    "Chromiums this process launched (the first, and each after recycling or a crash).",
)


def scim_label(path: str) -> str:
    """Return the resource type a SCIM path addresses, or `other`: a bounded label."""
    segments = path.split("/")
    if len(segments) <= SCIM_RESOURCE_SEGMENT:
        return OTHER
    resource = segments[SCIM_RESOURCE_SEGMENT]
    return resource if resource in SCIM_RESOURCES else OTHER


def observe_scim(method: str, path: str, status: int, seconds: float) -> None:
    """Count one SCIM answer and its latency."""
    method = method if method in SCIM_METHODS else OTHER
    resource = scim_label(path)
    SCIM_REQUESTS.labels(method, resource, str(status)).inc()
    SCIM_DURATION.labels(method, resource).observe(seconds)


def observe_job(app: str, outcome: str, seconds: float) -> None:
    """Record how long a job attempt ran and how it ended."""
    JOB_DURATION.labels(app, outcome).observe(seconds)


def observe_action(app: str, action: str, outcome: str, seconds: float) -> None:
    """Record how long one action's flow ran and how it ended."""
    ACTION_DURATION.labels(app, action, outcome).observe(seconds)


def observe_step(app: str, action: str, seconds: float) -> None:
    """Record how long one flow step took."""
    STEP_DURATION.labels(app, action).observe(seconds)


def count_sign_in(integration_id: str, result: SignInResult) -> None:
    """Count one run of an integration's login flow by how it ended."""
    SIGN_INS.labels(integration_id, result.value).inc()


def browser_context_opened() -> None:
    """Count one more browser context open in this process."""
    BROWSER_CONTEXTS_OPEN.inc()


def browser_context_closed() -> None:
    """Count one browser context fewer open in this process."""
    BROWSER_CONTEXTS_OPEN.dec()


def browser_launched() -> None:
    """Count a Chromium launch."""
    BROWSER_LAUNCHES.inc()


@dataclass(frozen=True)
class DatabaseView:
    """What the database says at scrape time; every label combination is present, 0 or not."""

    jobs: Mapping[tuple[str, str], int]
    """Live jobs by (lane, state)."""
    pending: Mapping[str, int]
    """Jobs not yet running (queued, retrying, waiting) by lane."""
    oldest_queued_s: float
    """The age of the job queued longest; 0 when none is queued."""
    breakers: Sequence[tuple[str, str, str]] = field(default_factory=list)
    """(integration, app, breaker state) of every integration."""
    breaker_states: Sequence[str] = field(default_factory=list)
    """Every state a breaker may be in: each integration reports 1 for its own, 0 for others."""


class _DatabaseCollector:
    """Turn one DatabaseView (or its absence: the read failed) into metric families."""

    def __init__(self, view: DatabaseView | None) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        """Yield the database's gauges, and whether the read worked."""
        read = GaugeMetricFamily(
            "usher_metrics_database_ok",
            "1 when this scrape read the database; 0 leaves the database's gauges out.",
        )
        read.add_metric([], 1.0 if self.view is not None else 0.0)
        yield read
        if self.view is not None:
            yield from _database_families(self.view)


def _database_families(view: DatabaseView) -> Iterable[Metric]:
    """Yield the gauges read from the database."""
    jobs = GaugeMetricFamily(
        "usher_jobs",
        "Live jobs in the database by lane and state (queued, retrying, waiting, running).",
        labels=["lane", "state"],
    )
    for (lane, job_state), count in sorted(view.jobs.items()):
        jobs.add_metric([lane, job_state], count)
    depth = GaugeMetricFamily(
        "usher_queue_depth",
        "Jobs in the database not yet running (queued, retrying, waiting), by lane.",
        labels=["lane"],
    )
    for lane, count in sorted(view.pending.items()):
        depth.add_metric([lane], count)
    oldest = GaugeMetricFamily(
        "usher_oldest_queued_job_age_seconds",
        "Age of the job queued longest (0 when none is): growing means nothing takes jobs.",
    )
    oldest.add_metric([], view.oldest_queued_s)
    breaker = GaugeMetricFamily(
        "usher_integration_breaker",
        "1 for the state each integration's sign-in breaker is in (closed, open, half_open).",
        labels=["integration", "app", "state"],
    )
    for integration_id, app, current in view.breakers:
        for breaker_state in view.breaker_states:
            breaker.add_metric(
                [integration_id, app, breaker_state], 1.0 if breaker_state == current else 0.0
            )
    return [jobs, depth, oldest, breaker]


class _Both:
    """Collect this process's metrics and the database's as one registry."""

    def __init__(self, database: _DatabaseCollector) -> None:
        self.database = database

    def collect(self) -> Iterator[Metric]:
        """Yield the process's metric families, then the database's."""
        yield from REGISTRY.collect()
        yield from self.database.collect()


def exposition(view: DatabaseView | None, accept: str | None) -> tuple[bytes, str]:
    """Return this process's metrics and the database's view, encoded as `accept` asks."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Both(_DatabaseCollector(view)))
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type


def allowed(token: str | None, authorization: str | None) -> bool:
    """Tell whether a scrape may read metrics: no token is set, or it sent the token."""
    if token is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
