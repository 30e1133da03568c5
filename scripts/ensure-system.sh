#!/usr/bin/env bash
# Install the system pieces pip cannot: Chromium and its headless shell when Playwright's
# own is missing, and redis-server for the test suite when no USHER_TEST_REDIS_URL is given.
set -euo pipefail
py="$1"
mode="${2:-}"

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing $* from Debian's packages..." >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

playwright_chromium=$("$py" - <<'PY'
from pathlib import Path
from playwright.sync_api import sync_playwright
with sync_playwright() as p:
    print("yes" if Path(p.chromium.executable_path).exists() else "no")
PY
)
# Without Playwright's own build: Debian's Chromium, and its headless shell, which Usher's
# headless runs prefer (the same engine without the browser's interface, far less CPU).
if [ "$playwright_chromium" != "yes" ]; then
  missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromium-headless-shell ] || missing+=(chromium-headless-shell)
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
fi

if [ "$mode" = "test" ] && [ -z "${USHER_TEST_REDIS_URL:-}" ] && ! command -v redis-server >/dev/null; then
  apt_install redis-server
fi
