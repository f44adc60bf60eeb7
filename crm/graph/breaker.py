"""A circuit breaker per mailbox, shared by every process through Django's cache.

When a mailbox keeps failing (Graph down for it, throttling hard, the network gone), retrying
each request with backoff only adds load and ties workers up for minutes at a time. So after
`GRAPH_BREAKER_THRESHOLD` consecutive requests failed even after their retries, the breaker
opens: for `GRAPH_BREAKER_COOLDOWN_SECONDS` every request for the mailbox fails at once with
`GraphCircuitOpen`, without touching the network. After the cool-down one trial request is let
through (half-open; `cache.add` elects it across processes): its success closes the breaker,
its failure opens it again for another cool-down.

What counts:

- failure: `GraphThrottled` or `GraphUnavailable` (their retries exhausted, dropped connections
  included), or a guarded block that marks its outcome failed (a $batch chunk whose every
  sub-request stayed throttled or unavailable);
- success: any answer, including a typed error such as 404 (Graph answered, so the mailbox is
  reachable); it resets the count;
- neither: `GraphBusy` (our own limiter, not the mailbox), `GraphCircuitOpen`, errors that are
  not Graph's (the identity platform, programming errors).

The state lives in the cache (Redis in production, the file cache embedded) so all workers share
it. `cache.incr` is atomic on Redis and best effort on the file cache, which is good enough for
a breaker. The cool-down is stored as a moment, not as a cache timeout, because cache backends
round timeouts to whole seconds.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from crm.graph.errors import (
    GraphBusy,
    GraphCircuitOpen,
    GraphError,
    GraphThrottled,
    GraphUnavailable,
)
from crm.graph.limits import mailbox_key

logger = logging.getLogger(__name__)

# Failures are forgotten this long after the last one, so that a failure a week ago does not
# count as "consecutive" with today's.
FAILURE_MEMORY_SECONDS = 3600


@dataclass
class Outcome:
    """What a guarded block tells the breaker besides raising: `failed` marks a result that
    came back without an exception yet shows the mailbox failing."""

    failed: bool = False


class CircuitBreaker:
    """The breaker of one mailbox on one Graph service (see `crm.graph.limits.mailbox_key`)."""

    def __init__(self, mailbox: str, *, graph_url: str | None = None) -> None:
        self.mailbox = mailbox.lower()
        prefix = f"graph:breaker:{mailbox_key(mailbox, graph_url)}"
        self._failures_key = f"{prefix}:failures"
        self._open_until_key = f"{prefix}:open-until"
        self._trial_key = f"{prefix}:trial"

    @contextmanager
    def guard(self) -> Iterator[Outcome]:
        """Admit one request (or raise `GraphCircuitOpen`), then record how it went."""
        trial, clean = self._admit()
        outcome = Outcome()
        try:
            yield outcome
        except (GraphBusy, GraphCircuitOpen):
            self._abstain(trial=trial)
            raise
        except (GraphThrottled, GraphUnavailable):
            self._record_failure(trial=trial)
            raise
        except GraphError:
            self._record_success(trial=trial, clean=clean)
            raise
        except BaseException:
            self._abstain(trial=trial)
            raise
        if outcome.failed:
            self._record_failure(trial=trial)
        else:
            self._record_success(trial=trial, clean=clean)

    def state(self) -> str:
        """The state as every process sees it: closed, open, or half-open (a trial may go,
        or is under way)."""
        failures, open_until = self._read()
        if failures < settings.GRAPH_BREAKER_THRESHOLD:
            return "closed"
        return "open" if time.time() < open_until else "half-open"

    def reset(self) -> None:
        """Close the breaker and forget its failures (an operator's override, and tests)."""
        cache.delete_many([self._failures_key, self._open_until_key, self._trial_key])

    def _read(self) -> tuple[int, float]:
        values = cache.get_many([self._failures_key, self._open_until_key])
        return values.get(self._failures_key, 0), values.get(self._open_until_key, 0.0)

    def _admit(self) -> tuple[bool, bool]:
        """(whether this request is the half-open trial, whether the breaker was clean);
        raises while the circuit is open. Most requests find it clean and leave it so, and
        their success then needs no write."""
        failures, open_until = self._read()
        if failures < settings.GRAPH_BREAKER_THRESHOLD:
            return False, (failures, open_until) == (0, 0.0)
        now = time.time()
        if now < open_until:
            raise self._refusal(failures, open_until - now, "")
        if cache.add(self._trial_key, True, timeout=self._trial_timeout()):
            return True, False
        raise self._refusal(failures, self._trial_timeout(), "; a trial request is under way")

    def _refusal(self, failures: int, retry_after: float, detail: str) -> GraphCircuitOpen:
        return GraphCircuitOpen(
            f"Microsoft Graph: circuit open for mailbox {self.mailbox} after {failures} "
            f"consecutive failed requests; next trial in {retry_after:.1f} s{detail}",
            retry_after=retry_after,
        )

    def _trial_timeout(self) -> int:
        """How long a trial may stay unresolved (its process may have died) before another
        process may try: one cool-down, in the whole seconds cache timeouts take."""
        return max(1, math.ceil(settings.GRAPH_BREAKER_COOLDOWN_SECONDS))

    def _record_failure(self, *, trial: bool) -> None:
        failures = self._count_failure()
        if failures < settings.GRAPH_BREAKER_THRESHOLD:
            return
        cooldown = settings.GRAPH_BREAKER_COOLDOWN_SECONDS
        cache.set(self._open_until_key, time.time() + cooldown, FAILURE_MEMORY_SECONDS)
        cache.delete(self._trial_key)
        if trial or failures == settings.GRAPH_BREAKER_THRESHOLD:
            logger.warning(
                "graph: circuit for %s open for %g s after %d consecutive failed requests",
                self.mailbox, cooldown, failures,
            )  # fmt: skip

    def _count_failure(self) -> int:
        cache.add(self._failures_key, 0, FAILURE_MEMORY_SECONDS)
        try:
            failures = cache.incr(self._failures_key)
        except ValueError:  # expired between add and incr
            cache.set(self._failures_key, 1, FAILURE_MEMORY_SECONDS)
            return 1
        cache.touch(self._failures_key, FAILURE_MEMORY_SECONDS)
        return failures

    def _record_success(self, *, trial: bool, clean: bool = False) -> None:
        if not clean:
            cache.delete_many([self._failures_key, self._open_until_key, self._trial_key])
        if trial:
            logger.info("graph: circuit for %s closed again after a successful trial", self.mailbox)

    def _abstain(self, *, trial: bool) -> None:
        if trial:
            cache.delete(self._trial_key)
