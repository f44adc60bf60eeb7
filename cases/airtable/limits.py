"""Airtable's rate limit, held across every worker process: at most
`AIRTABLE_REQUESTS_PER_SECOND` requests per base in any window of one second (plus
`AIRTABLE_RATE_MARGIN_SECONDS`), and after a 429 no request to the base at all until its
lockout has passed.

Airtable answers the request over the limit with 429 and then refuses the whole base for 30
seconds, so a limit held per process (two workers each sending five a second) costs far more
than it saves (DESIGN.md, "Known traps").

Airtable counts a request when it arrives, which we cannot see: it is somewhere between our
sending it and its answer coming back. So a request counts from the moment it takes its turn
until one window after its answer (while in flight it counts for sure). Two requests that
both count then arrived at least a window apart, however long the network or a busy machine
delayed either; a window measured from sending alone let 429s through on a loaded machine.
As `crm.graph.limits` does for Graph's slots:

- With `REDIS_URL`: one sorted set per base of turns scored by when they stop counting (an
  in-flight turn far ahead, its answer's moment once released), and a lockout key expiring
  with the lockout, read and written by Lua scripts on Redis's own clock (machines' clocks need
  not agree). A process that dies mid-request loses its turn after `IN_FLIGHT_SECONDS`.
- Without it (embedded, one machine): the same state in a small file per base under
  `VAR_DIR/locks`, read and rewritten under an exclusive `flock`.

A caller that must wait sleeps for the time the limiter names and asks again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import redis
from django.conf import settings

REDIS_KEY_PREFIX = "crm:airtable:rate:"
IN_FLIGHT_SECONDS = 300.0  # longer than any request with its timeouts
POLL_SECONDS = 0.02  # how soon to ask again while every turn is in flight

# KEYS[1]: the base's turns (sorted set, scored by when each stops counting), KEYS[2]: its
# lockout key. ARGV: limit, window in ms, in-flight ms, poll ms, a token.
# Returns 0 when the request may go (its turn is taken), else ms to wait.
TAKE_SCRIPT = """
local locked = redis.call('PTTL', KEYS[2])
if locked > 0 then
  return locked
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[5])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[2]))
  return 0
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, math.min(tonumber(first[2]) - now, tonumber(ARGV[4])))
"""

# KEYS[1]: the base's turns. ARGV: window in ms, the token. The answer came: the turn counts
# for one more window from now.
RELEASE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
return 0
"""


def base_key(base_id: str, api_url: str | None = None) -> str:
    """`api.airtable.com/appXXXX`: the base on its Airtable service (a test's own fake server
    is another service, so test runs sharing a Redis do not share limits)."""
    url = api_url or settings.AIRTABLE_API_URL
    return f"{urlsplit(url).netloc.lower()}/{base_id}"


class RateBackend(Protocol):
    def try_take(self, key: str, limit: int, window: float, token: str) -> float:
        """0 if a request may go now (its turn `token` is taken), else seconds to wait."""

    def release(self, key: str, window: float, token: str) -> None:
        """The request's answer came: its turn counts for one more window from now."""

    def lock_out(self, key: str, seconds: float) -> None:
        """No request to the base for `seconds` (Airtable answered 429)."""


class RedisRate:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._take = client.register_script(TAKE_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)

    def try_take(self, key: str, limit: int, window: float, token: str) -> float:
        keys = [f"{REDIS_KEY_PREFIX}{key}", f"{REDIS_KEY_PREFIX}{key}:locked"]
        args = [limit, _ms(window), _ms(IN_FLIGHT_SECONDS), _ms(POLL_SECONDS), token]
        return int(self._take(keys=keys, args=args)) / 1000

    def release(self, key: str, window: float, token: str) -> None:
        self._release(keys=[f"{REDIS_KEY_PREFIX}{key}"], args=[_ms(window), token])

    def lock_out(self, key: str, seconds: float) -> None:
        self.client.set(f"{REDIS_KEY_PREFIX}{key}:locked", "1", px=max(1, round(seconds * 1000)))


class FileRate:
    """The window and the lockout in a JSON file per base, under an exclusive `flock` (one
    machine; the kernel frees a dead holder's lock)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def try_take(self, key: str, limit: int, window: float, token: str) -> float:
        with self._state(key) as state:
            now = time.time()
            if state["locked_until"] > now:
                return state["locked_until"] - now
            turns = {t: until for t, until in state["turns"].items() if until > now}
            state["turns"] = turns
            if len(turns) < limit:
                turns[token] = now + IN_FLIGHT_SECONDS
                return 0.0
            return max(0.001, min(min(turns.values()) - now, POLL_SECONDS))

    def release(self, key: str, window: float, token: str) -> None:
        with self._state(key) as state:
            if token in state["turns"]:
                state["turns"][token] = time.time() + window

    def lock_out(self, key: str, seconds: float) -> None:
        with self._state(key) as state:
            state["locked_until"] = max(state["locked_until"], time.time() + seconds)

    def _state(self, key: str) -> _LockedState:
        self.folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        return _LockedState(self.folder / f"airtable-rate-{digest}.json")


class _LockedState:
    """The file's JSON, read and written back under `flock` for the `with` block."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> dict:
        self.descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.descriptor, fcntl.LOCK_EX)
        raw = os.read(self.descriptor, 1 << 16)
        try:
            self.state = json.loads(raw) if raw else {}
        except ValueError:
            self.state = {}
        self.state.setdefault("turns", {})
        self.state.setdefault("locked_until", 0.0)
        return self.state

    def __exit__(self, *exc: object) -> None:
        try:
            data = json.dumps(self.state).encode()
            os.lseek(self.descriptor, 0, os.SEEK_SET)
            os.ftruncate(self.descriptor, 0)
            os.write(self.descriptor, data)
        finally:
            fcntl.flock(self.descriptor, fcntl.LOCK_UN)
            os.close(self.descriptor)


_redis_backends: dict[str, RedisRate] = {}
_redis_backends_lock = threading.Lock()


def rate_backend(*, shared: bool = True) -> RateBackend:
    """Redis when `REDIS_URL` is set, a lock file otherwise. `shared=False` gives a backend
    with a connection of its own (what another process would have; for tests)."""
    url = settings.REDIS_URL
    if not url:
        return FileRate(Path(settings.VAR_DIR) / "locks")
    if not shared:
        return RedisRate(redis.Redis.from_url(url))
    with _redis_backends_lock:
        if url not in _redis_backends:
            _redis_backends[url] = RedisRate(redis.Redis.from_url(url))
        return _redis_backends[url]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class BaseRateLimiter:
    """The limit of one base, as one client (one thread) uses it: `wait_turn()` before every
    request, a retry included (it ends the previous attempt's turn first), `release()` when
    the answer came, `lock_out()` when Airtable answered 429."""

    def __init__(self, key: str, backend: RateBackend | None = None) -> None:
        self.key = key
        self.backend = backend or rate_backend()
        self.limit = int(settings.AIRTABLE_REQUESTS_PER_SECOND)
        self.window = 1.0 + float(settings.AIRTABLE_RATE_MARGIN_SECONDS)
        self.waited = 0.0
        self._held = ""

    def wait_turn(self) -> None:
        self.release()
        while True:
            token = uuid.uuid4().hex
            wait = self.backend.try_take(self.key, self.limit, self.window, token)
            if wait <= 0:
                self._held = token
                return
            # A little jitter, so processes that waited for the same moment do not all ask
            # at once and most of them wait again.
            pause = wait + random.uniform(0, 0.02)  # noqa: S311 - jitter only
            self.waited += pause
            time.sleep(pause)

    def release(self) -> None:
        if self._held:
            self.backend.release(self.key, self.window, self._held)
            self._held = ""

    def lock_out(self, seconds: float) -> None:
        self.backend.lock_out(self.key, seconds)
