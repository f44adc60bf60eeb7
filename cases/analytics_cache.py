"""Cached analytics figures, invalidated by change numbers.

At a million cases a report's aggregates take a few hundred milliseconds, too slow to run on
every page view. They are cached, and the cache key carries the *change numbers* of what the
figures read, so a change makes the old entry unreachable at once instead of waiting for a
timeout:

- every case change passes `cases.services.timeline.timeline_record`, which after commit bumps
  the counters `all`, `team:<id>` (the case's team, and the team it left) and `user:<id>` (its
  assignee, and the one it left) with `analytics_bump`;
- a reader takes the counters its figures depend on (`analytics_scope`): an admin sees every
  case, so `all`; anyone else the teams they belong to and their own `user:` counter, because
  `case_list` also shows cases assigned to them in other teams.

The counters live in the cache itself (Redis in production, `INCR` is atomic; the file cache in
the embedded default, which crosses processes too). A counter that is missing, after an
eviction or a flush, is recreated from the clock, so it never repeats a value an old entry was
stored under. The order of events is safe: the reader takes the counters *before* it queries,
and the bump happens *after* commit, so an entry is never stored under a number newer than the
data it saw.

An entry also counts as moved once it is older than `ANALYTICS_MAX_AGE_SECONDS` (an hour by
default): a backstop for changes that write no timeline row (bulk loads, raw SQL);
"now"-relative windows move on anyway because their bounds are part of the key. Entries stay
in the cache for `ANALYTICS_KEEP_SECONDS` (a week), so a page seen in that time always has a
figure to answer with.

**Stale while recomputing.** A cold report at a million cases takes up to two seconds, and on
a busy team nearly every view follows some change. So an entry keeps the counters it was
computed at; when they have moved, the page is answered with the figure it had and one
background thread recomputes it (`ANALYTICS_REFRESH_IN_BACKGROUND`, on by default; the test
settings turn it off so that a change shows at once). A page therefore waits for a query
only when it has no figure at all, and a figure is never more than one recomputation behind
the changes its viewer may see.

**Warm-up.** So that a page is rarely the one to wait, the worker recomputes, every
`ANALYTICS_WARM_SECONDS`, the dashboard and the first report of every agent who signed in
within `ANALYTICS_WARM_DAYS` (`cases.tasks.analytics_warm`); figures nothing moved cost it a
cache read.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction

from crm import selectors as crm_selectors
from crm.db import transaction_batch
from crm.models import User

T = TypeVar("T")
PREFIX = "analytics"
REFRESH_LOCK_SECONDS = 60
# Part of every key: entries of another shape (an earlier release's) are never read back.
ENTRY_FORMAT = 2
logger = logging.getLogger(__name__)


def _counter_key(name: str) -> str:
    return f"{PREFIX}:n:{name}"


def _fresh() -> int:
    return time.time_ns()


def analytics_scope(user: User) -> list[str]:
    """The counters whose change invalidates what `user` sees (`case_list`'s scope)."""
    if crm_selectors.user_is_admin(user):
        return ["all"]
    teams = sorted(crm_selectors.user_team_ids(user))
    return [*(f"team:{t}" for t in teams), f"user:{user.pk}"]


def _counters(names: list[str]) -> dict[str, int]:
    keys = {_counter_key(n): n for n in names}
    found = cache.get_many(list(keys))
    for key in keys:
        if key not in found:
            # add() keeps a value another process set meanwhile; read back whichever won.
            cache.add(key, _fresh(), timeout=None)
            found[key] = cache.get(key, _fresh())
    return {keys[k]: v for k, v in found.items()}


def analytics_bump(*, team_ids: Iterable[int | None], user_ids: Iterable[int | None]) -> None:
    """Move the counters of a change to these teams and users on, once, after commit.

    Names gather per transaction (a sweep that records a thousand timeline rows bumps each
    counter once); without a transaction they move at once. (In a test that never commits,
    changes made outside `captureOnCommitCallbacks` join a batch that never flushes: capture
    them too, or use a transactional test.)
    """
    names = ["all", *(f"team:{t}" for t in team_ids if t), *(f"user:{u}" for u in user_ids if u)]
    if not transaction.get_connection().in_atomic_block:
        _bump(names)
        return
    transaction_batch("analytics", _Pending).names.update(dict.fromkeys(names))


class _Pending:
    """The counters a transaction in progress will bump when it commits."""

    def __init__(self) -> None:
        self.names: dict[str, None] = {}

    def flush(self) -> None:
        _bump(list(self.names))


def _bump(names: list[str]) -> None:
    for name in dict.fromkeys(names):
        key = _counter_key(name)
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, _fresh(), timeout=None)


def analytics_cached(
    name: str,
    *,
    user: User,
    params: dict[str, Any],
    compute: Callable[[], T],
    background: bool = True,
) -> T:
    """`compute()`'s result for this user and these parameters.

    Fresh while none of the counters of the user's scope has moved (and it is younger than
    `ANALYTICS_MAX_AGE_SECONDS`). Once they moved, and
    `ANALYTICS_REFRESH_IN_BACKGROUND` is on, the page gets the figure it had and one
    background thread per figure computes the new one (the next view shows it); otherwise,
    and when there is no figure yet, the caller computes it. `params` must hold everything the
    result depends on besides the scope (period bounds as ISO strings, grouping, team filter).
    `background=False` is for figures cheap enough to recompute while the page waits, that
    should agree with what the page shows next to them (the dashboard's SLA panel).
    """
    scope = analytics_scope(user)
    counters = _counters(scope)
    material = json.dumps(
        {"name": name, "params": params, "scope": scope, "format": ENTRY_FORMAT}, sort_keys=True
    )
    key = f"{PREFIX}:v:{hashlib.sha256(material.encode()).hexdigest()}"
    entry = cache.get(key)
    if entry is not None:
        seen, computed_at, value = entry
        if seen == counters and time.time() - computed_at < settings.ANALYTICS_MAX_AGE_SECONDS:
            return value
        if background and settings.ANALYTICS_REFRESH_IN_BACKGROUND and not _inline.get():
            _refresh_in_background(key, counters, compute)
            return value
    return _compute_and_store(key, counters, compute)


def _compute_and_store(key: str, counters: dict[str, int], compute: Callable[[], T]) -> T:
    computed_at = time.time()
    value = compute()
    cache.set(key, (counters, computed_at, value), timeout=settings.ANALYTICS_KEEP_SECONDS)
    return value


_inline: contextvars.ContextVar[bool] = contextvars.ContextVar("analytics_inline", default=False)


@contextlib.contextmanager
def analytics_inline() -> Iterator[None]:
    """Within this block moved figures are recomputed at once, never in a thread (the warm-up
    task is itself the background)."""
    token = _inline.set(True)
    try:
        yield
    finally:
        _inline.reset(token)


_refreshing: set[threading.Thread] = set()  # for tests to wait on (`analytics_wait`)


def _refresh_in_background(key: str, counters: dict[str, int], compute: Callable[[], T]) -> None:
    """Recompute in a thread of this process, unless another process or thread already is
    (a lock in the cache, held at most a minute)."""
    if not cache.add(f"{key}:refreshing", 1, timeout=REFRESH_LOCK_SECONDS):
        return

    def refresh() -> None:
        try:
            _compute_and_store(key, counters, compute)
        except Exception:
            logger.exception("Recomputing cached analytics %s failed", key)
        finally:
            cache.delete(f"{key}:refreshing")
            connection.close()  # this thread's own database connection
            _refreshing.discard(threading.current_thread())

    thread = threading.Thread(target=refresh, name="analytics-refresh", daemon=True)
    _refreshing.add(thread)
    thread.start()


def analytics_wait(timeout: float = 30) -> None:
    """Wait for this process's background recomputations to finish (tests, benchmarks)."""
    for thread in list(_refreshing):
        thread.join(timeout)
