"""The live socket (`ws/live`) against the project's ASGI application: session authentication,
who hears what, presence, and the embedded default's poll.

Each scenario is an async function run with `async_to_sync`; the changes it makes go through
the services in committed transactions (`transaction=True`), as a request or the worker would.
With the suite's settings the channel layer and the cache are Redis (production); the poll
scenario switches to the in-memory layer of the embedded default.
"""

from __future__ import annotations

import json
import re
import threading

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cases import services
from cases.choices import TimelineKind
from cases.models import TimelineEvent
from crm import live
from crm.asgi import application
from crm.models import Notification, NotificationKind
from tests.cases.factories import CaseFactory, TeamFactory, make_agent

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10  # seconds a receive may wait for an event that must come
QUIET = 0.5  # how long "nothing arrives" is watched


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()  # presence lives in the cache (this test run's own Redis database)
    yield
    cache.clear()


class WebsocketCommunicator(ApplicationCommunicator):
    """A WebSocket client of an ASGI application (Channels' own test helper needs daphne)."""

    def __init__(self, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        scope = {"type": "websocket", "path": path, "query_string": b"", "headers": headers}
        super().__init__(application, scope)

    async def connect(self, timeout: float = WAIT) -> tuple[bool, object]:
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        return True, response.get("subprotocol")

    async def send_json_to(self, data: object) -> None:
        await self.send_input({"type": "websocket.receive", "text": json.dumps(data)})

    async def receive_json_from(self, timeout: float = WAIT) -> dict:
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, code: int = 1000, timeout: float = WAIT) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


def _session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    return f"{settings.SESSION_COOKIE_NAME}={session}".encode()


async def socket(user=None) -> WebsocketCommunicator:
    """A browser's socket: same-origin, with the session cookie of `user` if given."""
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if user is not None:
        headers.append((b"cookie", await database_sync_to_async(_session_cookie)(user)))
    return WebsocketCommunicator("/ws/live", headers)


async def opened(user, **subscribe) -> WebsocketCommunicator:
    communicator = await socket(user)
    connected, _ = await communicator.connect(timeout=WAIT)
    assert connected
    if "case" in subscribe:
        await communicator.send_json_to({"subscribe": {"case": subscribe["case"]}})
        assert await communicator.receive_json_from(WAIT) == {
            "type": "subscribed",
            "case": subscribe["case"],
        }
        first_presence = await communicator.receive_json_from(WAIT)
        assert first_presence["type"] == "presence"
    if subscribe.get("queue"):
        await communicator.send_json_to({"subscribe": "queue"})
        assert await communicator.receive_json_from(WAIT) == {"type": "subscribed", "queue": True}
    return communicator


async def next_of(communicator: WebsocketCommunicator, kind: str) -> dict:
    """The next message of this type (presence updates may come in between)."""
    while True:
        message = await communicator.receive_json_from(WAIT)
        if message["type"] == kind:
            return message


def run(scenario) -> None:
    """Run the scenario in a thread of its own: when the browser tests ran first, Playwright's
    sync API keeps an event loop in the main thread for the whole session, and async_to_sync
    refuses to run in a thread that has one."""
    failures: list[BaseException] = []

    def target() -> None:
        try:
            async_to_sync(scenario)()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            failures.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failures:
        raise failures[0]


@pytest.fixture
def billing():
    return TeamFactory(name="Billing")


@pytest.fixture
def robin(billing):
    return make_agent(team=billing, first_name="Robin", last_name="Agent")


@pytest.fixture
def ben(billing):
    return make_agent(team=billing, first_name="Ben", last_name="Agent")


@pytest.fixture
def outsider():
    return make_agent(team=TeamFactory(name="Shipping"), first_name="Olga", last_name="Other")


@pytest.fixture
def case(billing):
    return CaseFactory(team=billing, title="Invoice shows the wrong VAT")


# --- who may connect and subscribe ------------------------------------------------------------


def test_an_anonymous_socket_is_closed_with_4401(db):
    async def scenario():
        communicator = await socket()
        connected, _ = await communicator.connect(timeout=WAIT)
        assert connected  # accepted only to say why it closes: the page stops retrying
        closing = await communicator.receive_output(WAIT)
        assert closing == {"type": "websocket.close", "code": 4401}
        await communicator.wait()

    run(scenario)


def test_an_agent_cannot_subscribe_to_a_case_they_cannot_see(case, outsider):
    async def scenario():
        communicator = await opened(outsider)
        await communicator.send_json_to({"subscribe": {"case": case.number}})
        assert await communicator.receive_json_from(WAIT) == {
            "type": "error",
            "error": "not_found",
            "case": case.number,
        }
        await communicator.send_json_to({"presence": {"case": case.number, "state": "viewing"}})
        assert (await communicator.receive_json_from(WAIT))["error"] == "not_subscribed"
        await communicator.disconnect()

    run(scenario)


# --- case and queue changes -------------------------------------------------------------------


def test_a_case_change_reaches_its_viewers_and_queues_of_its_team_only(case, robin, ben, outsider):
    async def scenario():
        viewer = await opened(robin, case=case.number)
        queue = await opened(ben, queue=True)
        stranger = await opened(outsider, queue=True)

        await database_sync_to_async(services.case_update)(actor=ben, case=case, priority="high")

        changed = await next_of(viewer, "case.changed")
        assert changed["case"] == case.number
        assert changed["kind"] == TimelineKind.FIELD_CHANGED
        assert "riority" in changed["summary"]
        assert await next_of(queue, "queue.changed") == {
            "type": "queue.changed",
            "case": case.number,
        }
        assert await stranger.receive_nothing(QUIET)
        assert await viewer.receive_nothing(QUIET)  # once, although in two groups
        for communicator in (viewer, queue, stranger):
            await communicator.disconnect()

    run(scenario)


def test_one_transaction_sends_one_event_per_case_and_a_rollback_sends_none(case, robin, ben):
    def two_changes():
        with transaction.atomic():
            services.case_update(actor=ben, case=case, priority="high")
            services.case_set_tags(actor=ben, case=case, names=["vat"])

    def rolled_back():
        with transaction.atomic():
            services.case_update(actor=ben, case=case, priority="low")
            transaction.set_rollback(True)

    async def scenario():
        viewer = await opened(robin, case=case.number)
        await database_sync_to_async(rolled_back)()
        await database_sync_to_async(two_changes)()
        changed = await next_of(viewer, "case.changed")
        assert changed["kind"] == TimelineKind.TAGS_CHANGED  # the last change of the two
        assert await viewer.receive_nothing(QUIET)
        await viewer.disconnect()

    run(scenario)


def test_a_case_moved_away_stops_reaching_its_former_viewer(case, robin, outsider):
    shipping = outsider.memberships.get().team

    async def scenario():
        viewer = await opened(robin, case=case.number)
        old_queue = await opened(robin, queue=True)
        await database_sync_to_async(services.case_assign)(
            actor=None, case=case, assignee=None, team=shipping
        )
        assert await next_of(viewer, "error") == {
            "type": "error",
            "error": "not_found",
            "case": case.number,
        }
        # The old team's queue hears that something left it, not which case.
        assert await next_of(old_queue, "queue.changed") == {"type": "queue.changed", "case": ""}
        await database_sync_to_async(services.case_update)(actor=None, case=case, priority="low")
        assert await viewer.receive_nothing(QUIET)
        await viewer.disconnect()
        await old_queue.disconnect()

    run(scenario)


# --- notifications ----------------------------------------------------------------------------


def test_a_notification_reaches_its_recipient_with_the_unread_count(case, robin, ben):
    async def scenario():
        robins = await opened(robin)
        bens = await opened(ben)
        await database_sync_to_async(services.case_assign)(actor=ben, case=case, assignee=robin)
        notification = await next_of(robins, "notification")
        assert notification["unread"] == 1
        assert case.number in notification["title"]
        assert notification["url"].endswith(f"/cases/{case.number}/")
        assert await bens.receive_nothing(QUIET)  # the actor is not told of their own act

        def read_all():
            from crm.notifications import notifications_mark_read

            notifications_mark_read(user=robin, ids="all")

        await database_sync_to_async(read_all)()
        assert await next_of(robins, "notification") == {
            "type": "notification",
            "unread": 0,
            "title": "",
            "url": "",
        }
        await robins.disconnect()
        await bens.disconnect()

    run(scenario)


# --- presence ---------------------------------------------------------------------------------


def test_presence_shows_others_viewing_replying_and_leaving(case, robin, ben):
    async def scenario():
        robins = await opened(robin, case=case.number)
        await robins.send_json_to({"presence": {"case": case.number, "state": "viewing"}})
        assert await robins.receive_json_from(WAIT) == {
            "type": "presence",
            "case": case.number,
            "agents": [],  # never yourself
        }

        bens = await socket(ben)
        assert (await bens.connect(WAIT))[0]
        await bens.send_json_to({"subscribe": {"case": case.number}})
        assert (await bens.receive_json_from(WAIT))["type"] == "subscribed"
        # A newcomer is told at once who is there already.
        assert await bens.receive_json_from(WAIT) == {
            "type": "presence",
            "case": case.number,
            "agents": [{"name": "Robin Agent", "state": "viewing"}],
        }
        await bens.send_json_to({"presence": {"case": case.number, "state": "viewing"}})
        assert (await next_of(robins, "presence"))["agents"] == [
            {"name": "Ben Agent", "state": "viewing"}
        ]
        await bens.send_json_to({"presence": {"case": case.number, "state": "replying"}})
        assert (await next_of(robins, "presence"))["agents"] == [
            {"name": "Ben Agent", "state": "replying"}
        ]
        # A heartbeat that changes nothing broadcasts nothing.
        await bens.send_json_to({"presence": {"case": case.number, "state": "replying"}})
        assert await robins.receive_nothing(QUIET)

        await bens.disconnect()
        assert (await next_of(robins, "presence"))["agents"] == []
        await robins.disconnect()
        assert await live.presence_read(case_id=case.pk) == []

    run(scenario)


def test_an_entry_whose_heartbeat_stopped_expires(case, robin, ben):
    async def scenario():
        await live.presence_update(
            case_id=case.pk,
            channel="gone",
            entry={"user_id": ben.pk, "name": "Ben Agent", "state": "replying"},
        )
        stored = await cache.aget(f"live:presence:{case.pk}")
        stored["gone"]["expires"] = 0  # its process died 40 s ago
        await cache.aset(f"live:presence:{case.pk}", stored)
        robins = await opened(robin, case=case.number)
        await robins.send_json_to({"presence": {"case": case.number, "state": "viewing"}})
        assert (await next_of(robins, "presence"))["agents"] == []
        await robins.disconnect()

    run(scenario)


# --- the embedded default: in-memory layer, and a poll for other processes' changes ----------


@pytest.fixture
def embedded(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.LIVE_POLL_SECONDS = 0.2
    return settings


def test_embedded_poll_delivers_changes_made_by_another_process(embedded, case, robin):
    def worker_writes():
        """What the worker's process does: rows committed, nothing this process could hear."""
        TimelineEvent.objects.create(
            case=case, kind=TimelineKind.MESSAGE_RECEIVED, summary="Customer wrote again"
        )
        Notification.objects.create(
            recipient=robin,
            kind=NotificationKind.CUSTOMER_REPLY,
            title=f"{case.number}: the customer replied",
            url=f"/cases/{case.number}/",
        )

    async def scenario():
        viewer = await opened(robin, case=case.number)
        queue = await opened(robin, queue=True)
        await database_sync_to_async(worker_writes)()
        changed = await next_of(viewer, "case.changed")
        assert changed["summary"] == "Customer wrote again"
        assert (await next_of(viewer, "notification"))["unread"] == 1
        assert (await next_of(queue, "queue.changed"))["case"] == case.number
        await viewer.disconnect()
        await queue.disconnect()

    run(scenario)


def test_embedded_poll_does_not_repeat_what_this_process_sent(embedded, case, robin, ben):
    async def scenario():
        viewer = await opened(robin, case=case.number)
        await database_sync_to_async(services.case_update)(actor=ben, case=case, priority="high")
        assert (await next_of(viewer, "case.changed"))["kind"] == TimelineKind.FIELD_CHANGED
        assert await viewer.receive_nothing(1.0)  # five poll rounds
        await viewer.disconnect()

    run(scenario)


def test_poll_is_off_with_a_real_channel_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}
    del settings.LIVE_POLL_SECONDS
    assert live.live_poll_seconds() == 0
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert live.live_poll_seconds() == 5


# --- the page parts live.js fetches -----------------------------------------------------------


def parts_of(client: Client, number: str):
    return client.get(reverse("web:case-live", kwargs={"number": number}))


def test_the_case_parts_are_the_workspace_parts_without_the_composer(case, robin, ben):
    services.case_add_note(actor=ben, case=case, body="Finance confirmed the rate")
    services.task_create(actor=ben, case=case, subject="Refund the difference")
    client = Client()
    client.force_login(robin)

    response = parts_of(client, case.number)

    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"
    html = response.content.decode()
    parts = re.findall(r'<template data-part="(\w+)">', html)
    assert parts == ["header", "thread", "notes", "tasks", "timeline"]
    for marker in ('id="case-header"', 'class="thread"', 'id="note-list"', 'id="task-list"'):
        assert marker in html
    assert "Finance confirmed the rate" in html
    assert "Refund the difference" in html
    assert 'id="timeline"' in html
    assert "hx-swap-oob" not in html
    assert "composer" not in html


def test_the_case_parts_are_refused_to_those_who_cannot_see_the_case(case, outsider):
    client = Client()
    assert parts_of(client, case.number).status_code == 302  # to the sign-in page
    client.force_login(outsider)
    assert parts_of(client, case.number).status_code == 404


def test_the_case_parts_cost_the_same_queries_however_much_the_case_holds(case, robin, ben):
    services.case_add_note(actor=ben, case=case, body="First note")
    services.task_create(actor=ben, case=case, subject="First task", checklist=["a"])
    client = Client()
    client.force_login(robin)
    parts_of(client, case.number)  # warm: session, content types
    with CaptureQueriesContext(connection) as few:
        parts_of(client, case.number)
    for n in range(3):
        services.case_add_note(actor=ben, case=case, body=f"Note {n}")
        services.task_create(actor=ben, case=case, subject=f"Task {n}", checklist=["a", "b"])
    with CaptureQueriesContext(connection) as many:
        assert parts_of(client, case.number).status_code == 200
    assert len(many) == len(few)


def test_bad_frames_get_an_error_and_the_socket_stays_open(case, robin):
    async def scenario():
        communicator = await opened(robin)
        for frame in ({"type": "websocket.receive", "text": "{not json"},
                      {"type": "websocket.receive", "bytes": b"\x00\x01"},
                      {"type": "websocket.receive", "text": "[1, 2]"}):  # fmt: skip
            await communicator.send_input(frame)
            assert await communicator.receive_json_from() == {
                "type": "error",
                "error": "bad_request",
            }
        await communicator.send_json_to({"subscribe": {"nothing": 1}})
        assert (await communicator.receive_json_from())["error"] == "unknown_request"
        await communicator.send_json_to({"subscribe": {"case": case.number}})
        assert (await communicator.receive_json_from())["type"] == "subscribed"
        await communicator.disconnect()

    run(scenario)
