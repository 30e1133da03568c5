"""What a process keeps between SCIM requests, each entry bounded in age and in number."""

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Keep at most `size` values, each for `ttl_s` seconds; the oldest stored goes first.

    A stale value is never returned: the caller reads the source again and stores it.
    """

    def __init__(self, ttl_s: float, size: int) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """Return the value stored under a key within `ttl_s`, else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, value = entry
        if time.monotonic() - stored_at >= self.ttl_s:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V) -> None:
        """Store a value as read now, dropping the oldest entry past the size bound."""
        self._entries.pop(key, None)
        self._entries[key] = (time.monotonic(), value)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def drop(self, key: K) -> None:
        """Forget a key, so the next look-up reads the source."""
        self._entries.pop(key, None)

    def __len__(self) -> int:
        """Return how many entries are held, stale ones included until looked up."""
        return len(self._entries)


@dataclass(frozen=True)
class Tenant:
    """What a SCIM request needs of its integration: its id, its app, its token's hash."""

    id: str
    app: str
    token_hash: str
