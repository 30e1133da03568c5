"""Automation: the flow language and its check, the runner, the browser, sign-in, TOTP, replay.

Drives Chromium; knows nothing of jobs. May import `engine.storage` and `engine.apps`.
"""
