"""Live updates: events for the agents' open pages, sent over Channels after commit.

Services say what changed (`publish_on_commit`); the WebSocket consumers (`cases.consumers`)
decide who may hear it. Three rules keep this off the hot path and out of the way of the
change itself (DESIGN.md habit 3, Zulip's `send_event_on_commit`):

- **After commit, never inside.** Events are collected per transaction and sent by one
  `transaction.on_commit` callback, so a rolled-back change announces nothing and no channel
  layer I/O happens while rows are locked. Outside a transaction they go at once.
- **Deduplicated.** Events carry a key; within one transaction the last event of a key wins,
  so a service that writes five timeline rows for one case sends one "case changed".
  (A savepoint that rolls back may leave its event in the batch: a spurious refresh, which is
  harmless; a lost one would not be.)
- **Never raised.** A channel layer that is down is logged; the change stands.

Group names: `case.<id>` (viewers of a case), `team.<id>` (queues of a team), `user.<id>`
(an agent's own sockets: notifications, and queue news of cases assigned to them).

**Embedded default.** `InMemoryChannelLayer` reaches only consumers of the process that sends,
and the worker (intake of mail) is another process. There the web process polls (see
`live_poll_seconds` and `cases.consumers`); it skips what this process already sent
directly, which `already_published` remembers.

Presence ("Ben Agent is viewing") is kept in the Django cache: Redis in production, so every
web process shares it; the file cache in the embedded default, where there is one web process.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Count

from crm.db import transaction_batch
from crm.models import Notification

logger = logging.getLogger(__name__)

IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"
DEFAULT_POLL_SECONDS = 5.0
PRESENCE_TTL_SECONDS = 40
PUBLISHED_MEMORY = 10_000


def case_group(case_id: int) -> str:
    return f"case.{case_id}"


def team_group(team_id: int) -> str:
    return f"team.{team_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def new_event_id() -> str:
    """An id a consumer uses to drop the copy of an event it hears through a second group."""
    return uuid.uuid4().hex[:16]


def live_poll_seconds() -> float:
    """How often the web process polls for changes made by other processes; 0 = never.

    `LIVE_POLL_SECONDS` decides when set; otherwise 5 s with the in-memory channel layer
    (the embedded default: the worker's events cannot reach the web process) and 0 with a
    real one (Redis carries every process's events).
    """
    configured = getattr(settings, "LIVE_POLL_SECONDS", None)
    if configured is not None:
        return float(configured)
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    return DEFAULT_POLL_SECONDS if backend == IN_MEMORY_LAYER else 0.0


# --- publishing -------------------------------------------------------------------------------


@dataclass
class _Batch:
    """The events of one transaction, by key; sent once after it commits."""

    events: OrderedDict[str, tuple[tuple[str, ...], dict[str, Any]]] = field(
        default_factory=OrderedDict
    )
    published: list[tuple[str, int]] = field(default_factory=list)

    def flush(self) -> None:
        _send(list(self.events.values()))
        remember_published(self.published)


def publish_on_commit(
    *,
    groups: Iterable[str],
    event: dict[str, Any],
    key: str | None = None,
    published: Iterable[tuple[str, int]] = (),
    using: str = DEFAULT_DB_ALIAS,
) -> None:
    """Send `event` to `groups` once the current transaction commits (at once without one).

    `key` deduplicates within the transaction: a later event with the same key replaces the
    earlier one and goes to the groups of both. `published` names the rows this event reports
    (`("timeline", id)`), so the embedded poll does not report them a second time.
    """
    if not connections[using].in_atomic_block:
        _send([(tuple(groups), event)])
        remember_published(published)
        return
    batch = transaction_batch("crm.live", _Batch, using=using)
    key = key or new_event_id()
    earlier = batch.events.pop(key, None)  # re-added at the end: order follows the latest
    merged = dict.fromkeys((*earlier[0], *groups) if earlier else groups)
    batch.events[key] = (tuple(merged), event)
    batch.published.extend(published)


def _send(items: list[tuple[tuple[str, ...], dict[str, Any]]]) -> None:
    """group_send every event to its groups; a failure is logged, never raised."""
    if not items:
        return
    layer = get_channel_layer()
    if layer is None:
        return

    async def send_all() -> None:
        for groups, event in items:
            for group in groups:
                await layer.group_send(group, event)

    try:
        _run_from_sync(send_all)
    except Exception:
        logger.exception("live: could not send %d event(s)", len(items))


def _run_from_sync(coroutine_function: Callable[[], Awaitable[None]]) -> None:
    """Run a coroutine from sync code: async_to_sync, which uses the server's loop when
    called from a request's thread. A thread that runs an event loop itself while calling
    sync code (a greenlet-driven tool, e.g. a test driving a browser) cannot use it; there a
    helper thread runs the coroutine in a loop of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(coroutine_function)()
        return
    failure: list[BaseException] = []

    def helper() -> None:
        try:
            asyncio.run(coroutine_function())
        except BaseException as exc:  # reported in the calling thread
            failure.append(exc)

    thread = threading.Thread(target=helper, name="crm-live-send")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


# --- what this process already sent (the embedded poll skips it) ------------------------------

_published_lock = threading.Lock()
_published_order: deque[tuple[str, int]] = deque(maxlen=PUBLISHED_MEMORY)
_published_set: set[tuple[str, int]] = set()


def remember_published(rows: Iterable[tuple[str, int]]) -> None:
    """Note rows whose events this process sent directly. Only kept while the poll runs."""
    if not live_poll_seconds():
        return
    with _published_lock:
        for row in rows:
            if len(_published_order) == _published_order.maxlen:
                _published_set.discard(_published_order[0])
            _published_order.append(row)
            _published_set.add(row)


def already_published(row: tuple[str, int]) -> bool:
    with _published_lock:
        return row in _published_set


# --- notifications ----------------------------------------------------------------------------


def notification_event(*, unread: int, title: str = "", url: str = "") -> dict[str, Any]:
    return {"type": "live.notification", "unread": unread, "title": title, "url": url}


def notifications_publish(*, rows: list[Notification]) -> None:
    """After commit: tell each recipient their unread count and their newest notification.

    One grouped count for all recipients; runs outside the notifying transaction, so it
    costs that transaction nothing.
    """
    newest: dict[int, Notification] = {}
    for row in rows:
        newest[row.recipient_id] = row
    if not newest:
        return
    counts = dict(
        Notification.objects.filter(recipient_id__in=newest, read_at__isnull=True)
        .values("recipient_id")
        .annotate(n=Count("pk"))
        .values_list("recipient_id", "n")
    )
    _send(
        [
            (
                (user_group(user_id),),
                notification_event(unread=counts.get(user_id, 0), title=row.title, url=row.url),
            )
            for user_id, row in newest.items()
        ]
    )
    remember_published(("notification", row.pk) for row in rows)


def unread_publish(*, user_id: int, unread: int) -> None:
    """A new unread count without news (the agent read some): the bell only, no toast."""
    _send([((user_group(user_id),), notification_event(unread=unread))])


# --- presence ---------------------------------------------------------------------------------


def _presence_key(case_id: int) -> str:
    return f"live:presence:{case_id}"


def presence_agents(entries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per agent (several tabs are one agent; replying wins), sorted by name."""
    agents: dict[int, dict[str, Any]] = {}
    for entry in entries.values():
        agent = agents.setdefault(
            entry["user_id"], {"user_id": entry["user_id"], "name": entry["name"], "state": ""}
        )
        if entry["state"] == "replying" or not agent["state"]:
            agent["state"] = entry["state"]
    return sorted(agents.values(), key=lambda a: (a["name"].lower(), a["user_id"]))


async def presence_update(
    *, case_id: int, channel: str, entry: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], bool]:
    """Set (or with `entry=None` remove) one socket's presence on a case; drop expired ones.

    Returns the agents present and whether that list changed (then the caller broadcasts).
    Read-modify-write on one cache key: two processes writing at the same instant may lose
    one entry, which its owner's next heartbeat (every 15 s) puts back.
    """
    key = _presence_key(case_id)
    now = time.time()
    stored: dict[str, dict[str, Any]] = await cache.aget(key) or {}
    live = {ch: e for ch, e in stored.items() if e.get("expires", 0) > now}
    before = presence_agents(live)
    if entry is None:
        live.pop(channel, None)
    else:
        live[channel] = {**entry, "expires": now + PRESENCE_TTL_SECONDS}
    if live:
        await cache.aset(key, live, timeout=PRESENCE_TTL_SECONDS * 2)
    elif stored:
        await cache.adelete(key)
    after = presence_agents(live)
    return after, after != before


async def presence_read(*, case_id: int) -> list[dict[str, Any]]:
    now = time.time()
    stored: dict[str, dict[str, Any]] = await cache.aget(_presence_key(case_id)) or {}
    return presence_agents({ch: e for ch, e in stored.items() if e.get("expires", 0) > now})
