"""Every key prefix, queue name and magic number Usher uses, in one place."""

from typing import Final

REDIS_PREFIX: Final = "usher:"
QUEUE_NAME: Final = f"{REDIS_PREFIX}queue"
URGENT_QUEUE_NAME: Final = f"{REDIS_PREFIX}queue:urgent"
"""The queue of jobs that remove access; each worker keeps slots that read only it."""
TOTP_STEP_PREFIX: Final = f"{REDIS_PREFIX}totp:"
GATE_PREFIX: Final = f"{REDIS_PREFIX}gate:"
"""A sorted set per integration: the running jobs' slot leases, scored by expiry."""
PACE_PREFIX: Final = f"{REDIS_PREFIX}pace:"
"""A counter per integration and minute: the actions started in that minute."""
GATE_HOLD_S: Final = 2.0
"""How long a job that found its integration's gate full waits before it is delivered again."""
GATE_WAITERS_PREFIX: Final = f"{REDIS_PREFIX}gate:urgent:"
"""A sorted set per integration: the urgent jobs waiting for a slot, scored by when their wait
lapses. While one waits, a freed slot goes to it, never to a normal job."""
GATE_URGENT_WAIT_S: Final = 3 * GATE_HOLD_S
"""How long an urgent job's claim on the next free slot lasts unless it comes back for it."""
PACE_WAITS: Final = 3
"""The most minute windows one action waits for its integration's pace before going anyway."""
LOGIN_LOCK_PREFIX: Final = f"{REDIS_PREFIX}lock:login:"
LOGIN_LOCK_S: Final = 15
"""The sign-in lock's lease: renewed while held, so a dead holder frees it within this."""
LOGIN_WAIT_S: Final = 90
"""How long a worker waits for another one's sign-in before trying later (transient)."""

RECONCILE_FUNCTION: Final = "reconcile_job"
INVENTORY_FUNCTION: Final = "inventory_job"
"""The same job function under its own name, for inventories: arq bounds each name's run."""
RELAY_FUNCTION: Final = "relay"

JOB_TIMEOUT_S: Final = 300
"""The longest one reconcile may run; arq cancels it after this long."""
INVENTORY_TIMEOUT_S: Final = 3600
"""The longest one inventory may run: listing a large app's accounts takes many pages."""
LEASE_RENEWALS: Final = 4
"""A running job renews its lease this many times per lease."""
BUSY_WAIT_MAX_S: Final = 60.0
"""The longest a job waits while another job of its identity runs; that job's end frees it."""
DELIVERY_SLACK_S: Final = 1.0
"""A delivery this early for a job's `not_before` still claims it (timers and clocks drift)."""
ARQ_MAX_TRIES: Final = 3
"""arq re-delivers a job id only after a worker died; the database counts real attempts."""
RETRY_BACKOFF_S: Final = (5, 30, 120)
"""The delay before attempt 2, 3, 4+ of a job; the last one caps every later delay."""
ACTION_BACKOFF_S: Final = (1.0, 3.0, 8.0)
"""The pause before an action's 2nd, 3rd, 4th+ try after a transient fault."""
SWEEP_BATCH: Final = 500
"""The most identities one sweep pass queues; the next pass takes the rest."""
IMPORT_RETRY_S: Final = 300.0
"""After an integration's import was queued, the next try of it is due this much later
should it not have ended (its app refused, its flow broke)."""
DRIFT_DEACTIVATE_MAX: Final = 50
"""The most orphans one remediating inventory deactivates; the next run takes the rest."""
RECONCILE_WAIT_S: Final = 300.0
"""How long `usher reconcile` waits for its inventory by default before giving up waiting."""
GROUP_FANOUT_BATCH: Final = 500
"""Members of a group job fanned out into identity jobs per transaction, in the worker."""
RETRY_JITTER: Final = 0.2
"""Each back-off is spread by this fraction either way, so failed jobs do not return together."""
KEEP_RESULT_S: Final = 0
"""arq keeps no result: a job id can be delivered again as soon as its last run ended."""
REDIS_RECONNECT_BACKOFF_S: Final = (0.5, 1.0, 2.0, 4.0)
"""A worker's wait before each try to reach Redis again; the last one caps every later wait."""
REDIS_RECONNECT_JITTER: Final = 0.2
"""Each reconnect wait is spread by this fraction either way, so workers do not return together."""
REDIS_PROBE_TIMEOUT_S: Final = 2.0
"""How long one try to reach Redis may take, so a hung Redis cannot hang the probe."""
EMBEDDED_REDIS_START_RETRIES: Final = 20
"""Tries to reach a just-started embedded Redis: its socket file exists before it listens."""
EMBEDDED_REDIS_START_BACKOFF_S: Final = (0.05, 0.5)
"""First and longest wait between those tries (exponential in between)."""

TOTP_MIN_LEFT_S: Final = 10
"""Type a TOTP code only with at least this much of its window left (a third of a shorter
window)."""
TOTP_DEFAULT_PERIOD_S: Final = 30
"""The TOTP window of a bare base32 seed; an otpauth:// URI names its own."""
TOTP_MIN_SEED_BITS: Final = 80
"""The shortest TOTP seed Usher accepts: the app chose it (16 base32 letters is common),
Usher only types its codes."""
TOTP_LEDGER_PERIODS: Final = 4
"""How many windows the ledger remembers an account's last used time-step."""

MASK_COLOR: Final = "#FF00FF"
OUTLINE_COLOR: Final = "#FF6A00"
"""The outline drawn around the element a step acted on or asserted, in its screenshot."""
SCREENSHOT_TYPE: Final = "png"
SCREENSHOT_TIMEOUT_S: Final = 10.0
"""How long a step's picture may take, masks and all, before the step goes without one: a
page whose renderer hangs must not hang the job."""
STEP_TIMEOUT_MS: Final = 10_000
NAVIGATION_TIMEOUT_MS: Final = 20_000
REPEAT_MAX_ROUNDS: Final = 1000
"""The highest bound a flow's `repeat` may declare: every loop of a flow ends."""
FRAGMENT_MAX_DEPTH: Final = 8
"""Fragments nested deeper than this fail at run time; `flows check` refuses any cycle."""
CLICK_SETTLE_S: Final = 2.0
"""How long a click waits for the requests it sent (a fetch, a background save) to end; a
page the click opened is waited for until loaded, within the step's timeout."""
CLICK_QUIET_S: Final = 0.1
"""After a click's requests ended, the network must stay quiet this long before the step
ends: an answer's handler that opens a page or sends more is still the click's doing. A
click that sent no request does not wait for it."""
PAGER_SETTLE_S: Final = 0.5
"""How long extract_rows gives a shown but disabled Next or Load more to enable again."""
COMPILED_TEMPLATES_KEPT: Final = 4096
"""Compiled flow templates kept per process (least recently used goes first)."""

SCIM_MAX_BODY_BYTES: Final = 1_048_576
SCIM_MAX_RESULTS: Final = 200
TOKEN_BYTES: Final = 32
TOKEN_PREFIX_SCIM: Final = "usc_"
TOKEN_PREFIX_API: Final = "uop_"
TOKEN_PREFIX_INTEGRATION_KEY: Final = "uik_"
"""An integration's API key: it opens that integration's assignments API and nothing else."""
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
"""A client's key for one POST of an assignment: a retry under it gets the first answer."""
IDEMPOTENCY_KEY_MAX: Final = 255
"""The longest Idempotency-Key kept."""
IDEMPOTENT_REPLAY_HEADER: Final = "Idempotent-Replayed"
"""Set to `true` on an answer that repeats the first one given under its Idempotency-Key."""
ASSIGNMENT_EXPIRY_BATCH: Final = 500
"""The most expired assignments one maintenance pass ends; the next pass takes the rest."""
ASSIGNMENT_LIST_LIMIT: Final = 500
"""The most assignments one listing returns, newest first."""
ASSIGNMENT_TTL_MAX_S: Final = 10 * 366 * 24 * 3600
"""The longest `ttl_seconds` an assignment may ask for: ten years."""
SCIM_BUSY_RETRY_AFTER_S: Final = 2
"""The Retry-After of a SCIM write answered 503 because the database stayed busy."""

CHROMIUM_SYSTEM_PATH: Final = "/usr/bin/chromium"
"""Debian's Chromium (package chromium): the browser a headed run (`replay --headed`) shows."""
CHROMIUM_HEADLESS_SHELL_PATH: Final = "/usr/bin/chromium-headless-shell"
"""Debian's headless shell (package chromium-headless-shell), what Playwright itself launches
for headless runs: the same engine without the browser's own interface. Measured here, 15
contexts of 6 fills and screenshots each cost its processes 3.0 s of CPU against 7.5 s for
the full browser in headless mode."""
BROWSER_VIEWPORT: Final = {"width": 1280, "height": 800}
"""The viewport of every job's browser context: what each step's screenshot shows."""
MIB: Final = 1024 * 1024
"""Bytes in a mebibyte, for memory bounds given in MiB."""
TEST_HOST_RESOLVER_RULES: Final = "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost"

SESSION_COOKIE: Final = "usher_session"
"""The signed, stateless session cookie of a signed-in operator: no row per session."""
LOGIN_COOKIE: Final = "usher_login"
"""A signed nonce set by the sign-in page, so that its form carries a CSRF token too."""
SESSION_MAX_AGE_S: Final = 12 * 3600
"""A session cookie older than this is refused: the operator signs in again."""
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
SIGNIN_WINDOW_S: Final = 300
"""The window over which sign-in attempts are counted, per user and per address."""
SIGNIN_MAX_PER_USER: Final = 5
"""Failed sign-in attempts one username may make in a window; then even the right password
waits."""
SIGNIN_MAX_PER_ADDRESS: Final = 20
"""Failed sign-in attempts one client address may make in a window, whatever the username."""
SIGNIN_PREFIX: Final = f"{REDIS_PREFIX}signin:"
PASSWORD_MIN_LENGTH: Final = 12
JOB_EVENTS_PREFIX: Final = f"{REDIS_PREFIX}job-events:"
"""A pub/sub channel per job: the worker announces each step and the end; pages listen."""
EVENT_PUBLISH_TIMEOUT_S: Final = 1.0
"""A step event not published within this is dropped: the job never waits on Redis for it."""
SSE_HEARTBEAT_S: Final = 15.0
"""A comment line this often keeps a live page's event stream open through proxies."""
JOB_ID_HEADER: Final = "X-Usher-Job"
"""Every SCIM write response names the job it queued, so a script can follow it."""
ACTIVITY_PAGE_SIZE: Final = 50
SCIM_LOG_KEEP_DAYS: Final = 30
"""Each SCIM request's line (never its body) is kept this long, then pruned."""
SCIM_LOG_PAGE_SIZE: Final = 100
PEOPLE_PAGE_SIZE: Final = 100
RECENT_WINDOW_S: Final = 24 * 3600
"""The integration page counts the jobs of this last stretch of time, by state."""
WATCH_IDLE_S: Final = 5.0
"""`usher jobs watch` reads the job again after this much silence, should an event be lost."""

DISTRIBUTION: Final = "usher"
"""The package name `usher --version` and the API read their version from."""
UNKNOWN_VERSION: Final = "0+unknown"
"""The version reported when Usher runs from a checkout that was never installed."""
HEARTBEAT_PREFIX: Final = f"{REDIS_PREFIX}worker:"
"""A key per worker process, refreshed while it runs: `/readyz` and `usher status` read them."""
HEARTBEAT_EVERY_S: Final = 5.0
"""How often a worker process refreshes its heartbeat, on a timer of its own."""
HEARTBEAT_TTL_S: Final = 30
"""A heartbeat not refreshed for this long expires: its worker no longer counts as alive."""
HEALTH_CHECK_TIMEOUT_S: Final = 2.0
"""How long one readiness check may take, so a hung database or Redis answers 'failed'."""
DRIFT_WINDOW_RUNS: Final = 10
"""An integration is degraded while one of its last this many runs (jobs that ran a flow)
needed a fallback locator; that many runs in a row without one make it healthy again."""
DRIFT_REPORT_DAYS: Final = 7
"""`usher flows drift` lists the steps that needed a fallback in this many last days."""
DRIFT_SCAN_STEPS: Final = 5000
"""The most recent fallback steps one drift report reads; older ones are left out."""

AUDIT_GENESIS: Final = "0" * 64
"""The `prev_sha256` of the first event of the audit chain."""
AUDIT_LOCK_KEY: Final = 0x5573686572_4175
"""PostgreSQL's advisory lock that one transaction at a time holds to extend the audit chain."""
AUDIT_SYSTEM_ACTOR: Final = "usher"
"""Who the audit chain names for a move Usher made itself (a SCIM change, the relay)."""
AUDIT_KEY_BYTES: Final = 32
"""The random anchor-signing key kept in the data dir when USHER_AUDIT_KEY is not set."""
AUDIT_ANCHOR_CONTEXT: Final = "usher-audit-anchor"
"""What an anchor's signature covers begins with this, so no other HMAC can pass for one."""
VERIFY_BATCH: Final = 1000
"""`usher evidence verify` reads events and evidence rows this many at a time."""
PRUNE_BATCH: Final = 1000
"""Evidence rows pruned per transaction, so a long backlog never holds the write lock long."""
PRUNE_BATCHES_PER_PASS: Final = 5
"""Batches one timed retention pass prunes at most; a backlog goes over several passes."""
EXPORT_MAX_JOBS: Final = 1000
"""The most jobs one evidence export holds; a wider selection is refused, to be narrowed."""
GUARD_MAX_REMOVALS: Final = 25
"""An integration's default mass-change guard: accounts that may lose access (deactivated,
deleted, a value revoked, a role lowered) within GUARD_WINDOW_S before the rest wait for an
operator's approval; `usher integrations set-guard` changes it per integration."""
GUARD_WINDOW_S: Final = 3600
"""The sliding window over which the mass-change guard counts the accounts losing access."""
WEBHOOK_SECRET_PREFIX: Final = "usher_whsec_"
WEBHOOK_SECRET_BYTES: Final = 32
WEBHOOK_SIGNATURE_HEADER: Final = "X-Usher-Signature"
"""`sha256=` and the hex HMAC-SHA256 of `{timestamp}.{body}` under the webhook's secret."""
WEBHOOK_TIMESTAMP_HEADER: Final = "X-Usher-Timestamp"
"""Unix seconds when the delivery was signed; receivers refuse one outside the replay window."""
WEBHOOK_DELIVERY_HEADER: Final = "X-Usher-Delivery"
"""The delivery's id, the same on every retry: receivers drop one they have seen."""
WEBHOOK_REPLAY_WINDOW_S: Final = 300
"""How far a receiver should let a delivery's timestamp lie from its own clock."""
WEBHOOK_TIMEOUT_S: Final = 5.0
"""How long one delivery waits for the receiver's answer."""
WEBHOOK_BACKOFF_S: Final = (5.0, 30.0, 120.0, 600.0, 1800.0)
"""The wait after each failed delivery; after the last, the delivery is given up as failed."""
WEBHOOK_BATCH: Final = 50
"""Deliveries one maintenance pass sends at most."""
WEBHOOK_CLAIM_S: Final = WEBHOOK_BATCH * WEBHOOK_TIMEOUT_S + 30.0
"""A worker's pass holds its deliveries this long, past its slowest end (every receiver
timing out), so another worker's pass never sends them twice; a dead worker's come back."""
WEBHOOK_LIST_LIMIT: Final = 10
"""The latest deliveries `usher integrations show` lists."""
ANCHOR_TAIL_BYTES: Final = 4096
"""The end of the anchor file read to find its newest line; a line is a few hundred bytes."""
SCIM_DURATION_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Histogram buckets of a SCIM answer's latency: milliseconds when well, seconds when not."""
STEP_DURATION_BUCKETS_S: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)
"""Histogram buckets of one flow step, its screenshot included; a step times out at 10 s."""
ACTION_DURATION_BUCKETS_S: Final = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
"""Histogram buckets of one action's flow."""
JOB_DURATION_BUCKETS_S: Final = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
"""Histogram buckets of one job attempt; arq stops one after JOB_TIMEOUT_S."""
METRICS_READ_TIMEOUT_S: Final = 2.0
"""How long a scrape of the API's /metrics may read the database before it reports without."""

RECORDER_MIN_SECRET_LEN = 4
"""A stored secret shorter than this is too common a string to look for in a recording."""

SQLITE_WRITE_WAIT_S: Final = 15.0
"""How long a write transaction waits for the process's SQLite writer lock before it fails,
as long as SQLite's own busy timeout lets another process's writer make it wait."""
POOL_PING_IDLE_S: Final = 30.0
"""A PostgreSQL connection idle in the pool for this long is pinged before it is used again;
one used more recently is trusted, so a busy pool makes no extra round trip per checkout."""
SCIM_AUTH_CACHE_S: Final = 5.0
"""How long a process trusts an integration's token hash and app read for a SCIM request: a
rotated token is refused in every process within this; a token that does not match the
cached hash is checked against the database at once, so a new one works immediately."""
SCIM_APP_CACHE_S: Final = 5.0
"""How long a process serves SCIM with an app's template and service before reading its
app.yaml again: an edited template is served within this."""
SCIM_CACHE_SIZE: Final = 1024
"""The most integrations (auth) and apps (template and SCIM service) a process caches."""
SCIM_LOG_FLUSH_S: Final = 1.0
"""A SCIM read's log line is written within this, with the other reads of that second, in one
write transaction: a read itself never takes SQLite's write lock."""
SCIM_LOG_BUFFER_MAX: Final = 10_000
"""Read log lines held in memory at most; past this (the database stalled) lines are dropped
and counted in the process's log."""
SCIM_LOG_PRUNE_EVERY_S: Final = 300.0
"""How often a process prunes an integration's SCIM log past SCIM_LOG_KEEP_DAYS, with a write."""
