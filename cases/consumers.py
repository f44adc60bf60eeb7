"""The agents' live socket (`ws/live`): case changes, queue changes, notifications, presence.

A page subscribes to what it shows; the socket hears the channel-layer groups of `crm.live`
and forwards only what the agent may see:

- **Authentication** is the session (AuthMiddlewareStack). Anonymous or deactivated: the
  socket is accepted and closed at once with 4401, so the page knows not to retry.
- **A case** (`{"subscribe": {"case": "CASE-…"}}`) only if `selectors.case_list` holds it,
  and its events are checked against the same selector again before they are forwarded (the
  case may have moved to a team the agent is not in). One case per socket: a page shows one.
- **The queue** (`{"subscribe": "queue"}`) joins the groups of the agent's teams (every team
  for admins); cases assigned to the agent arrive through their own user group. A queue event
  names the case only if `case_list`'s rule (admin, team member, assignee) holds for the case's
  team and assignee carried in the event; otherwise it says only that the queue changed (a
  case left it). The agent's teams are read once per connection and again at most every
  `TEAMS_REFRESH_SECONDS`, so a busy queue costs no query per event.
- **Notifications** always: the user's own group.
- **Presence** (`{"presence": {"case": …, "state": "viewing"|"replying"}}`, repeated as a
  heartbeat): kept in the cache with a TTL (`crm.live.presence_update`); changes are broadcast
  to the case group and each socket drops its own agent from the list it shows.

**Embedded default** (`crm.live.live_poll_seconds() > 0`): one poller per process (not per
socket) reads, every few seconds, the timeline events and notifications committed since it last
looked (two indexed range queries whatever the number of sockets) and sends them to the groups
like the direct path does, skipping what this process already sent. Ids from a sequence can
commit out of order, so the poller re-reads the last `POLL_GRACE_SECONDS` worth of ids and
remembers which it has seen.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.db.models import Count, Max

from cases import selectors
from cases.models import TimelineEvent
from cases.services.timeline import case_changed_event
from crm import live
from crm import selectors as crm_selectors
from crm.models import Notification, Team, User

logger = logging.getLogger(__name__)

UNAUTHENTICATED = 4401
PRESENCE_STATES = frozenset({"viewing", "replying"})
TEAMS_REFRESH_SECONDS = 60
SEEN_EVENTS = 64
POLL_GRACE_SECONDS = 30
POLL_BATCH = 2000


def _display_name(user: User) -> str:
    return user.get_full_name() or user.email


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """One agent's page. See the module docstring for what it hears and forwards."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=UNAUTHENTICATED)
            return
        self.user: User = user
        self.name = _display_name(user)
        self.case: dict[str, Any] | None = None
        self.presence_state = ""
        self.queue_groups: list[str] = []
        self.seen: deque[str] = deque(maxlen=SEEN_EVENTS)
        await self._load_access()
        await self.channel_layer.group_add(live.user_group(user.pk), self.channel_name)
        await _poller_join()
        self.joined = True

    async def disconnect(self, code: int) -> None:
        if not getattr(self, "joined", False):
            return
        self.joined = False
        await self._leave_case()
        for group in [live.user_group(self.user.pk), *self.queue_groups]:
            await self.channel_layer.group_discard(group, self.channel_name)
        _poller_leave()

    # --- what the page asks for ----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Bad frames (binary, not JSON, not an object) get an error, never a crash."""
        if not getattr(self, "joined", False):
            return
        try:
            content = json.loads(text_data) if text_data is not None else None
        except ValueError:
            content = None
        if not isinstance(content, dict):
            await self.send_json({"type": "error", "error": "bad_request"})
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        subscribe = content.get("subscribe")
        presence = content.get("presence")
        if subscribe == "queue":
            await self._subscribe_queue()
        elif isinstance(subscribe, dict) and isinstance(subscribe.get("case"), str):
            await self._subscribe_case(subscribe["case"])
        elif isinstance(presence, dict):
            await self._presence(presence)
        else:
            await self.send_json({"type": "error", "error": "unknown_request"})

    async def _subscribe_case(self, number: str) -> None:
        case = await database_sync_to_async(self._visible_case)(number=number[:40])
        if case is None:
            await self.send_json({"type": "error", "error": "not_found", "case": number[:40]})
            return
        await self._leave_case()
        self.case = case
        await self.channel_layer.group_add(live.case_group(case["pk"]), self.channel_name)
        await self.send_json({"type": "subscribed", "case": case["number"]})
        agents = await live.presence_read(case_id=case["pk"])
        await self._send_presence(case["number"], agents)

    async def _subscribe_queue(self) -> None:
        groups = [live.team_group(team_id) for team_id in sorted(await self._queue_team_ids())]
        for group in set(groups) - set(self.queue_groups):
            await self.channel_layer.group_add(group, self.channel_name)
        self.queue_groups = groups
        await self.send_json({"type": "subscribed", "queue": True})

    async def _presence(self, request: dict[str, Any]) -> None:
        state = request.get("state")
        if self.case is None or request.get("case") != self.case["number"]:
            await self.send_json({"type": "error", "error": "not_subscribed"})
            return
        if state not in PRESENCE_STATES:
            await self.send_json({"type": "error", "error": "bad_state"})
            return
        self.presence_state = state
        entry = {"user_id": self.user.pk, "name": self.name, "state": state}
        agents, changed = await live.presence_update(
            case_id=self.case["pk"], channel=self.channel_name, entry=entry
        )
        if changed:
            await self._broadcast_presence(self.case, agents)

    async def _leave_case(self) -> None:
        case, self.case = self.case, None
        if case is None:
            return
        await self.channel_layer.group_discard(live.case_group(case["pk"]), self.channel_name)
        if self.presence_state:
            self.presence_state = ""
            agents, changed = await live.presence_update(
                case_id=case["pk"], channel=self.channel_name, entry=None
            )
            if changed:
                await self._broadcast_presence(case, agents)

    async def _broadcast_presence(self, case: dict[str, Any], agents: list[dict]) -> None:
        await self.channel_layer.group_send(
            live.case_group(case["pk"]),
            {
                "type": "live.presence",
                "case_id": case["pk"],
                "case": case["number"],
                "agents": agents,
            },
        )

    # --- access, through the selectors ---------------------------------------------------------

    def _visible_case(self, *, number: str) -> dict[str, Any] | None:
        return (
            selectors.case_list(user=self.user)
            .filter(number=number.strip().upper())
            .values("pk", "number")
            .first()
        )

    def _still_visible(self, case_id: int) -> bool:
        return selectors.case_list(user=self.user).filter(pk=case_id).exists()

    @database_sync_to_async
    def _read_access(self) -> tuple[bool, set[int]]:
        user = User.objects.get(pk=self.user.pk)  # fresh: no memoised team ids
        return crm_selectors.user_is_admin(user), crm_selectors.user_team_ids(user)

    async def _load_access(self) -> None:
        self.is_admin, self.team_ids = await self._read_access()
        self.access_read_at = time.monotonic()

    async def _queue_team_ids(self) -> set[int]:
        if not self.is_admin:
            return self.team_ids
        return set(await database_sync_to_async(self._all_team_ids)())

    @staticmethod
    def _all_team_ids() -> list[int]:
        return list(Team.objects.values_list("pk", flat=True))

    async def _may_see_in_queue(self, event: dict[str, Any]) -> bool:
        """`selectors.case_list`'s rule on the event's team and assignee, without a query."""
        if time.monotonic() - self.access_read_at > TEAMS_REFRESH_SECONDS:
            await self._load_access()
        return (
            self.is_admin
            or event.get("team_id") in self.team_ids
            or event.get("assignee_id") == self.user.pk
        )

    # --- what the groups say -------------------------------------------------------------------

    def _first_time(self, event: dict[str, Any]) -> bool:
        """The same event reaches a socket once per group it is in: forward it once."""
        event_id = event.get("id")
        if event_id in self.seen:
            return False
        if event_id:
            self.seen.append(event_id)
        return True

    async def live_case(self, event: dict[str, Any]) -> None:
        if not self._first_time(event):
            return
        if self.case is not None and event["case_id"] == self.case["pk"]:
            if await database_sync_to_async(self._still_visible)(event["case_id"]):
                await self.send_json(
                    {
                        "type": "case.changed",
                        "case": event["case"],
                        "kind": event["kind"],
                        "summary": event["summary"],
                    }
                )
            else:
                await self._leave_case()
                await self.send_json({"type": "error", "error": "not_found", "case": event["case"]})
        if self.queue_groups:
            visible = await self._may_see_in_queue(event)
            await self.send_json(
                {"type": "queue.changed", "case": event["case"] if visible else ""}
            )

    async def live_notification(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {
                "type": "notification",
                "unread": event["unread"],
                "title": event.get("title", ""),
                "url": event.get("url", ""),
            }
        )

    async def live_presence(self, event: dict[str, Any]) -> None:
        if self.case is None or event["case_id"] != self.case["pk"]:
            return
        await self._send_presence(event["case"], event["agents"])

    async def _send_presence(self, number: str, agents: list[dict[str, Any]]) -> None:
        others = [
            {"name": agent["name"], "state": agent["state"]}
            for agent in agents
            if agent["user_id"] != self.user.pk
        ]
        await self.send_json({"type": "presence", "case": number, "agents": others})


# --- the embedded default's poll: one per process ----------------------------------------------


class _Watermark:
    """Reads rows by increasing id, tolerating ids that commit out of order.

    Ids above `floor` are read again on every round; those already handled are remembered
    (`seen`) until the floor passes them, which it does `POLL_GRACE_SECONDS` after they were
    first seen. A transaction that commits later than that after a younger one is missed,
    the accepted cost of a bounded read.
    """

    def __init__(self, floor: int) -> None:
        self.floor = floor
        self.seen: dict[int, float] = {}

    def fresh(self, ids: list[int]) -> list[int]:
        return [i for i in ids if i not in self.seen]

    def advance(self, ids: list[int], *, full: bool) -> None:
        now = time.monotonic()
        for i in ids:
            self.seen.setdefault(i, now)
        settled = [i for i, at in self.seen.items() if now - at >= POLL_GRACE_SECONDS]
        if full and ids:  # more than a batch in the window: move on rather than stall
            settled.append(max(ids))
        if settled:
            self.floor = max(self.floor, *settled)
            self.seen = {i: at for i, at in self.seen.items() if i > self.floor}


class _Poller:
    """Polls while at least one socket of this process is open."""

    def __init__(self) -> None:
        self.sockets = 0
        self.task: asyncio.Task | None = None
        self.ready = asyncio.Event()
        self.timeline = _Watermark(0)
        self.notifications = _Watermark(0)

    async def run(self) -> None:
        """Start from what exists now (older changes are in the page already), then poll."""
        try:
            floors = await database_sync_to_async(_current_floors)()
            self.timeline, self.notifications = _Watermark(floors[0]), _Watermark(floors[1])
        finally:
            self.ready.set()
        while self.sockets > 0:
            await asyncio.sleep(live.live_poll_seconds() or live.DEFAULT_POLL_SECONDS)
            if self.sockets <= 0:
                break
            try:
                items = await database_sync_to_async(self.read)()
                layer = get_channel_layer()
                for groups, event in items:
                    for group in groups:
                        await layer.group_send(group, event)
            except Exception:
                logger.exception("live: the poll for changes failed")
        self.task = None
        self.ready.clear()

    def read(self) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
        """Two indexed range reads (plus one count when there are new notifications)."""
        return self._read_timeline() + self._read_notifications()

    def _read_timeline(self) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
        rows = list(
            TimelineEvent.objects.filter(pk__gt=self.timeline.floor)
            .order_by("pk")
            .values(
                "pk", "case_id", "kind", "summary", "data",
                "case__number", "case__team_id", "case__assignee_id",
            )[:POLL_BATCH]
        )  # fmt: skip
        ids = [row["pk"] for row in rows]
        fresh = set(self.timeline.fresh(ids))
        self.timeline.advance(ids, full=len(rows) == POLL_BATCH)
        latest: dict[int, dict[str, Any]] = {}
        for row in rows:
            if row["pk"] in fresh and not live.already_published(("timeline", row["pk"])):
                latest[row["case_id"]] = row  # one event per case per round, the newest
        return [_case_item(row) for row in latest.values()]

    def _read_notifications(self) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
        rows = list(
            Notification.objects.filter(pk__gt=self.notifications.floor)
            .order_by("pk")
            .values("pk", "recipient_id", "title", "url")[:POLL_BATCH]
        )
        ids = [row["pk"] for row in rows]
        fresh = set(self.notifications.fresh(ids))
        self.notifications.advance(ids, full=len(rows) == POLL_BATCH)
        newest = {
            row["recipient_id"]: row
            for row in rows
            if row["pk"] in fresh and not live.already_published(("notification", row["pk"]))
        }
        if not newest:
            return []
        counts = dict(
            Notification.objects.filter(recipient_id__in=newest, read_at__isnull=True)
            .values("recipient_id")
            .annotate(n=Count("pk"))
            .values_list("recipient_id", "n")
        )
        return [
            (
                (live.user_group(user_id),),
                live.notification_event(
                    unread=counts.get(user_id, 0), title=row["title"], url=row["url"]
                ),
            )
            for user_id, row in newest.items()
        ]


def _case_item(row: dict[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    data = row["data"] if isinstance(row["data"], dict) else {}
    teams = {row["case__team_id"], data.get("old_team")}
    users = {row["case__assignee_id"], data.get("old_assignee")}
    groups = (
        live.case_group(row["case_id"]),
        *(live.team_group(t) for t in sorted(t for t in teams if isinstance(t, int))),
        *(live.user_group(u) for u in sorted(u for u in users if isinstance(u, int))),
    )
    event = case_changed_event(
        case_id=row["case_id"],
        number=row["case__number"],
        team_id=row["case__team_id"],
        assignee_id=row["case__assignee_id"],
        kind=row["kind"],
        summary=row["summary"],
    )
    return groups, event


def _current_floors() -> tuple[int, int]:
    timeline = TimelineEvent.objects.aggregate(top=Max("pk"))["top"] or 0
    notifications = Notification.objects.aggregate(top=Max("pk"))["top"] or 0
    return timeline, notifications


_pollers: dict[asyncio.AbstractEventLoop, _Poller] = {}


async def _poller_join() -> None:
    """Count a socket in; start this process's poller if polling is on and it is not running.

    Returns once the poller knows where to start, so nothing committed after the socket
    opened is taken for old news.
    """
    if not live.live_poll_seconds():
        return
    loop = asyncio.get_running_loop()
    for other in [lp for lp in _pollers if lp.is_closed()]:
        del _pollers[other]
    poller = _pollers.setdefault(loop, _Poller())
    poller.sockets += 1
    if poller.task is None:
        poller.task = loop.create_task(poller.run())
    await poller.ready.wait()


def _poller_leave() -> None:
    poller = _pollers.get(asyncio.get_running_loop())
    if poller is not None:
        poller.sockets = max(0, poller.sockets - 1)
