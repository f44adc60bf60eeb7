"""How many Graph requests may be in flight for one mailbox, counted across every worker process
and machine.

Exchange Online serves at most four concurrent requests per mailbox and app and answers a fifth
with 429 ApplicationThrottled. An in-process semaphore would bind one worker only (DESIGN.md,
"Known traps"), so the slots live where every process sees them:

- With `REDIS_URL` (production, the test suite): one sorted set per mailbox whose members are
  slot tokens scored by the moment their lease ends. A Lua script drops expired leases and takes
  the slots only if enough are free, atomically, on Redis's own clock (so machines' clocks need
  not agree). Release removes the tokens. A process that dies holding a slot loses it when the
  lease runs out: keep `GRAPH_SLOT_LEASE_SECONDS` well above `GRAPH_TIMEOUT_SECONDS`.
- Without it (embedded, one machine): `GRAPH_MAILBOX_CONCURRENCY` lock files per mailbox under
  `VAR_DIR/locks`, each taken with a non-blocking `flock`; the kernel releases a dead holder's.

Waiting for a slot polls with a short jittered sleep for up to `GRAPH_SLOT_WAIT_SECONDS`, then
raises `GraphBusy` (a `GraphThrottled`: the caller retries later, as after a 429).

Slots are counted per mailbox address (lowercased) on one Graph service: the same address on
another host (a national cloud, a test run's own simulator) is another mailbox to Exchange, and
test runs that share a Redis do not share limits.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import redis
from django.conf import settings

from crm.graph.errors import GraphBusy

POLL_SECONDS = (0.005, 0.03)
REDIS_KEY_PREFIX = "crm:graph:slots:"

# KEYS[1]: the mailbox's slot set. ARGV: limit, lease in ms, then one token per wanted slot.
ACQUIRE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local wanted = #ARGV - 2
if redis.call('ZCARD', KEYS[1]) + wanted > tonumber(ARGV[1]) then
  return 0
end
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1]: the mailbox's slot set. How many leases have not ended yet.
IN_USE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""


def mailbox_key(mailbox: str, graph_url: str | None = None) -> str:
    """`graph.microsoft.com/support@contoso.com`: the mailbox on its Graph service (default:
    `GRAPH_API_URL`), the key of its limiter slots and of its circuit breaker."""
    host = urlsplit(graph_url or settings.GRAPH_API_URL).netloc.lower()
    return f"{host}/{mailbox.lower()}"


class SlotBackend(Protocol):
    def try_acquire(self, key: str, count: int, limit: int) -> list | None:
        """Take `count` slots at once if that many are free, without waiting; None if not."""

    def release(self, key: str, held: list) -> None: ...

    def in_use(self, key: str, limit: int) -> int: ...


class RedisSlots:
    """Slots as leased tokens in a Redis sorted set per mailbox."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._acquire = client.register_script(ACQUIRE_SCRIPT)
        self._in_use = client.register_script(IN_USE_SCRIPT)

    def try_acquire(self, key: str, count: int, limit: int) -> list[str] | None:
        tokens = [uuid.uuid4().hex for _ in range(count)]
        lease_ms = max(1, round(settings.GRAPH_SLOT_LEASE_SECONDS * 1000))
        taken = self._acquire(keys=[REDIS_KEY_PREFIX + key], args=[limit, lease_ms, *tokens])
        return tokens if taken else None

    def release(self, key: str, held: list[str]) -> None:
        if held:
            self.client.zrem(REDIS_KEY_PREFIX + key, *held)

    def in_use(self, key: str, limit: int) -> int:
        return int(self._in_use(keys=[REDIS_KEY_PREFIX + key]))


class FileSlots:
    """Slots as lock files held with `flock` (one machine only; the kernel frees a dead
    process's locks). Each acquisition opens its own file description, so threads of one
    process exclude one another too."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def try_acquire(self, key: str, count: int, limit: int) -> list[int] | None:
        held: list[int] = []
        for path in self._paths(key, limit):
            descriptor = _lock_without_waiting(path)
            if descriptor is not None:
                held.append(descriptor)
                if len(held) == count:
                    return held
        self.release(key, held)
        return None

    def release(self, key: str, held: list[int]) -> None:
        for descriptor in held:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)

    def in_use(self, key: str, limit: int) -> int:
        busy = 0
        for path in self._paths(key, limit):
            descriptor = _lock_without_waiting(path)
            if descriptor is None:
                busy += 1
            else:
                self.release(key, [descriptor])
        return busy

    def _paths(self, key: str, limit: int) -> list[Path]:
        self.folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        return [self.folder / f"graph-mailbox-{digest}.{slot}.lock" for slot in range(limit)]


def _lock_without_waiting(path: Path) -> int | None:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


_redis_backends: dict[str, RedisSlots] = {}
_redis_backends_lock = threading.Lock()


def slot_backend() -> SlotBackend:
    """Redis when `REDIS_URL` is set (slots shared by every machine), lock files otherwise."""
    url = settings.REDIS_URL
    if not url:
        return FileSlots(Path(settings.VAR_DIR) / "locks")
    with _redis_backends_lock:
        if url not in _redis_backends:
            _redis_backends[url] = RedisSlots(redis.Redis.from_url(url))
        return _redis_backends[url]


@contextmanager
def mailbox_slots(mailbox: str, *, count: int = 1, graph_url: str | None = None) -> Iterator[None]:
    """Hold `count` of the mailbox's `GRAPH_MAILBOX_CONCURRENCY` slots for the block (a $batch
    may run several of its sub-requests at once, so it takes more than one). The slots are
    taken together or not at all, so two batches never hold half each and wait for the rest.

    Raises `GraphBusy` when they do not come free within `GRAPH_SLOT_WAIT_SECONDS`.
    """
    limit = settings.GRAPH_MAILBOX_CONCURRENCY
    count = max(1, min(count, limit))
    key = mailbox_key(mailbox, graph_url)
    backend = slot_backend()
    held = _wait_for_slots(backend, key, count, limit)
    try:
        yield
    finally:
        backend.release(key, held)


def slots_in_use(mailbox: str, *, graph_url: str | None = None) -> int:
    """How many of the mailbox's slots are held right now, by any process (for metrics and
    tests; the answer may be stale by the time it arrives, and on lock files counting takes
    each free lock for an instant, so a request starting just then waits one poll)."""
    key = mailbox_key(mailbox, graph_url)
    return slot_backend().in_use(key, settings.GRAPH_MAILBOX_CONCURRENCY)


def _wait_for_slots(backend: SlotBackend, key: str, count: int, limit: int) -> list:
    wait = settings.GRAPH_SLOT_WAIT_SECONDS
    deadline = time.monotonic() + wait
    while True:
        held = backend.try_acquire(key, count, limit)
        if held is not None:
            return held
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GraphBusy(
                f"Microsoft Graph: no free request slot for {key} within {wait:g} s "
                f"(at most {limit} requests in flight per mailbox)"
            )
        time.sleep(min(remaining, random.uniform(*POLL_SECONDS)))  # noqa: S311 - jitter only
