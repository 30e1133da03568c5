"""Every key prefix, queue name and magic number Usher uses, in one place."""

from typing import Final

REDIS_PREFIX: Final = "usher:"
QUEUE_NAME: Final = f"{REDIS_PREFIX}queue"
IDENTITY_LOCK_PREFIX: Final = f"{REDIS_PREFIX}lock:identity:"
TOTP_STEP_PREFIX: Final = f"{REDIS_PREFIX}totp:"
LOGIN_LOCK_PREFIX: Final = f"{REDIS_PREFIX}lock:login:"
LOGIN_LOCK_S: Final = 120
"""How long one worker may hold an integration's sign-in lock."""
LOGIN_WAIT_S: Final = 150
"""How long a worker waits for another one's sign-in before trying later."""

RECONCILE_FUNCTION: Final = "reconcile_job"
RELAY_FUNCTION: Final = "relay"

JOB_TIMEOUT_S: Final = 300
"""The longest one reconcile may run; arq holds a crashed worker's job this long + 10 s."""
LEASE_RENEWALS: Final = 4
"""A running job renews its lease (and its identity lock) this many times per lease."""
BUSY_DEFER_S: Final = 2.0
"""How long a job waits before trying again when another job holds its identity."""
ARQ_MAX_TRIES: Final = 10_000
"""arq counts every Retry; Usher counts attempts in the database instead."""
RETRY_BACKOFF_S: Final = (5, 30, 120)
RELAY_EVERY_S: Final = 30
KEEP_RESULT_S: Final = 60

TOTP_MIN_LEFT_S: Final = 10
"""Type a TOTP code only with at least this much of its window left."""

MASK_COLOR: Final = "#FF00FF"
SCREENSHOT_TYPE: Final = "png"
STEP_TIMEOUT_MS: Final = 10_000
NAVIGATION_TIMEOUT_MS: Final = 20_000

SCIM_MAX_BODY_BYTES: Final = 1_048_576
SCIM_MAX_RESULTS: Final = 200
TOKEN_BYTES: Final = 32
TOKEN_PREFIX_SCIM: Final = "usc_"
TOKEN_PREFIX_API: Final = "uop_"

CHROMIUM_SYSTEM_PATH: Final = "/usr/bin/chromium"
TEST_HOST_RESOLVER_RULES: Final = "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost"
