"""SqlScimStorage: scim2-server's storage contract on SQLite and PostgreSQL, then Usher's rules."""

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from scim2_models import (
    Context,
    Identity as _Unused,  # noqa: F401
)
