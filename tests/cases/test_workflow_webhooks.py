"""Outgoing webhooks: signed deliveries to a real HTTP receiver on loopback, retried with
backoff, claimed so that two workers never send one delivery at once, and their admin.

The receiver is a ThreadingHTTPServer in a thread that records every request and answers from
a script (status, delay, headers, body, or raw bytes that are not HTTP at all). Time moves by
passing `now`, never by sleeping; the one real wait is the timeout test's 1 s timeout.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection, transaction
from django.utils import timezone

from cases import services
from cases.choices import DeliveryState
from cases.models import WebhookDelivery, WebhookEndpoint
from cases.workflow.fields import RuleError
from cases.workflow.webhooks import (
    webhook_backoff,
    webhook_deliver,
    webhook_enqueue,
    webhook_redeliver,
    webhook_sign,
    webhooks_deliver_due,
)
from tests.cases.factories import CaseFactory, make_agent
from tests.conftest import free_port

pytestmark = pytest.mark.django_db

SECRET = "whsec-0123456789abcdef"
ENDPOINTS = "/admin/cases/webhookendpoint/"
DELIVERIES = "/admin/cases/webhookdelivery/"


# --- the receiver --------------------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer: wait `delay` seconds, then answer `status` (or write `raw`)."""

    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    raw: bytes | None = None


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Records requests; answers each with the next scripted reply (200 once the script is
    used up). `hold()` makes the next answer wait until `release()`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[Reply] = []
        self.lock = threading.Lock()
        self.arrived = threading.Event()
        self.gate: threading.Event | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/crm"

    def answer(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def hold(self) -> None:
        self.gate = threading.Event()

    def release(self) -> None:
        if self.gate is not None:
            self.gate.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                    reply = receiver.script.pop(0) if receiver.script else Reply()
                receiver.arrived.set()
                if receiver.gate is not None:
                    receiver.gate.wait(timeout=30)
                if reply.delay:
                    threading.Event().wait(reply.delay)
                try:
                    if reply.raw is not None:
                        self.wfile.write(reply.raw)
                        self.close_connection = True
                        return
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (the timeout test)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.server.handle_error = lambda *args: None  # type: ignore[method-assign]
    thread = threading.Thread(target=receiver.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield receiver
    receiver.release()
    receiver.server.shutdown()
    receiver.server.server_close()
    thread.join(timeout=10)


# --- factories -----------------------------------------------------------------------------------


def make_endpoint(url: str, **fields) -> WebhookEndpoint:
    fields.setdefault("name", f"Receiver {WebhookEndpoint.objects.count() + 1}")
    fields.setdefault("secret", SECRET)
    return WebhookEndpoint.objects.create(url=url, **fields)


def make_delivery(endpoint: WebhookEndpoint, *, payload: dict | None = None, **fields):
    """A pending delivery due now, written directly (no task enqueued)."""
    body = json.dumps(payload or {"event": "case.updated"}, sort_keys=True, separators=(",", ":"))
    fields.setdefault("next_attempt_at", timezone.now())
    return WebhookDelivery.objects.create(endpoint=endpoint, body=body, **fields)


@pytest.fixture
def endpoint(receiver) -> WebhookEndpoint:
    return make_endpoint(receiver.url)


def at(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


# --- what the receiver gets ----------------------------------------------------------------------


def test_the_body_is_the_stored_json_and_the_signature_verifies_with_the_secret(
    receiver, endpoint, django_capture_on_commit_callbacks
):
    case = CaseFactory()
    payload = {"event": "case.updated", "case": {"number": case.number, "n": Decimal("1.50")}}
    with django_capture_on_commit_callbacks():
        delivery = webhook_enqueue(endpoint=endpoint, payload=payload, case=case)

    assert delivery.body == json.dumps(
        {"case": {"n": "1.50", "number": case.number}, "event": "case.updated"},
        separators=(",", ":"),
    )
    result = webhook_deliver(delivery_id=delivery.pk)

    assert result is not None
    assert result.state == DeliveryState.DELIVERED
    [request] = receiver.received
    assert request.path == "/hooks/crm"
    assert request.body == delivery.body.encode()
    headers = request.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "SupportCRM-Webhooks/1"
    assert headers["X-CRM-Delivery"] == str(delivery.pk)
    assert headers["X-CRM-Attempt"] == "1"
    signed = headers["X-CRM-Timestamp"].encode() + b"." + request.body
    expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert headers["X-CRM-Signature"] == f"sha256={expected}"
    assert SECRET not in str(headers)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 1, 200)
    assert delivery.delivered_at is not None
    assert delivery.next_attempt_at is None


def test_webhook_sign_is_hmac_sha256_over_timestamp_dot_body():
    digest = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert webhook_sign(secret="k", timestamp=1_700_000_000, body=b"{}") == f"sha256={digest}"


# --- enqueueing after commit ---------------------------------------------------------------------


def test_a_delivery_is_posted_only_after_the_rule_commits(
    receiver, endpoint, eager_celery, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        delivery = webhook_enqueue(endpoint=endpoint, payload={"n": 1})
        assert receiver.received == []
    assert len(callbacks) == 1
    assert (delivery.state, delivery.attempts) == (DeliveryState.PENDING, 0)
    assert receiver.received == []

    with django_capture_on_commit_callbacks(execute=True):
        second = webhook_enqueue(endpoint=endpoint, payload={"n": 2})

    assert [r.headers["X-CRM-Delivery"] for r in receiver.received] == [str(second.pk)]
    second.refresh_from_db()
    assert second.state == DeliveryState.DELIVERED


def test_a_rolled_back_rule_leaves_no_delivery_and_sends_nothing(
    receiver, endpoint, eager_celery, django_capture_on_commit_callbacks
):
    def rule_that_fails_after_enqueueing() -> None:
        with transaction.atomic():
            webhook_enqueue(endpoint=endpoint, payload={"n": 1})
            raise ZeroDivisionError

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(ZeroDivisionError):
            rule_that_fails_after_enqueueing()
    assert callbacks == []
    assert not WebhookDelivery.objects.exists()
    assert receiver.received == []


def test_an_inactive_endpoint_cannot_be_enqueued(endpoint):
    endpoint.active = False
    endpoint.save()
    with pytest.raises(RuleError, match="deactivated") as raised:
        webhook_enqueue(endpoint=endpoint, payload={})
    assert raised.value.field == "webhook"
    assert not WebhookDelivery.objects.exists()


def test_an_endpoint_deactivated_before_delivery_fails_the_delivery_without_sending(
    receiver, endpoint
):
    delivery = make_delivery(endpoint)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False)

    webhook_deliver(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.state, delivery.last_error) == (DeliveryState.FAILED, "endpoint deactivated")
    assert delivery.attempts == 0
    assert receiver.received == []


# --- retries -------------------------------------------------------------------------------------


def test_a_500_is_retried_with_doubling_backoff_until_it_succeeds(receiver, endpoint):
    receiver.answer(Reply(500, body=b"database down"), Reply(502, body=b""), Reply(200))
    delivery = make_delivery(endpoint)
    now = timezone.now()

    webhook_deliver(delivery_id=delivery.pk, now=now)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, 500)
    assert delivery.last_error == "HTTP 500: database down"
    assert delivery.next_attempt_at == now + timedelta(seconds=30)

    assert webhooks_deliver_due(now=now + timedelta(seconds=29)) == 0
    second = now + timedelta(seconds=31)
    assert webhooks_deliver_due(now=second) == 1
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status, delivery.last_error) == (2, 502, "HTTP 502")
    assert delivery.next_attempt_at == second + timedelta(seconds=60)

    third = second + timedelta(seconds=60)
    assert webhooks_deliver_due(now=third) == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 3, 200)
    assert delivery.last_error == ""
    assert [r.headers["X-CRM-Attempt"] for r in receiver.received] == ["1", "2", "3"]
    assert len({r.body for r in receiver.received}) == 1  # the same bytes every time


def test_backoff_doubles_from_30_seconds_up_to_two_hours():
    waits = [webhook_backoff(attempts=n).total_seconds() for n in range(1, 11)]
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3840, 7200, 7200]
    assert webhook_backoff(attempts=200).total_seconds() == 7200


def test_a_timeout_is_recorded_and_retried(receiver):
    endpoint = make_endpoint(receiver.url, timeout_seconds=1)
    receiver.answer(Reply(200, delay=2), Reply(204))
    delivery = make_delivery(endpoint)
    now = timezone.now()

    webhook_deliver(delivery_id=delivery.pk, now=now)

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, None)
    assert delivery.last_error == "timed out after 1 s"
    assert delivery.next_attempt_at == now + timedelta(seconds=30)
    webhooks_deliver_due(now=now + timedelta(seconds=30))
    delivery.refresh_from_db()
    assert (delivery.state, delivery.last_status) == ("delivered", 204)


def test_it_gives_up_after_max_attempts_and_tells_the_admins_once(receiver, mailoutbox):
    admin_user = make_agent(role="admin", email="root@support.example")
    endpoint = make_endpoint(receiver.url, name="Billing system", max_attempts=3)
    receiver.answer(Reply(500), Reply(500), Reply(404, body=b"no such hook"))
    case = CaseFactory()
    delivery = make_delivery(endpoint, case=case)
    now = timezone.now()

    for step in range(3):
        assert webhooks_deliver_due(now=now + timedelta(hours=step * 3)) == 1

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("failed", 3, 404)
    assert delivery.last_error == "HTTP 404: no such hook"
    assert delivery.next_attempt_at is None
    assert webhooks_deliver_due(now=now + timedelta(days=2)) == 0
    assert len(receiver.received) == 3
    [email] = mailoutbox
    assert admin_user.email in email.to
    assert "Billing system" in email.subject
    assert f"#{delivery.pk}" in email.subject
    assert case.number in email.body
    assert "HTTP 404" in email.body
    assert SECRET not in email.body


def test_a_3xx_is_a_failure_and_the_redirect_is_not_followed(receiver, endpoint):
    receiver.answer(Reply(302, headers={"Location": receiver.url + "/elsewhere"}))
    delivery = make_delivery(endpoint)

    webhook_deliver(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.state, delivery.last_status) == ("pending", 302)
    assert "redirects are not followed" in delivery.last_error
    assert [r.path for r in receiver.received] == ["/hooks/crm"]


@pytest.mark.parametrize(
    ("status", "retry_after", "expected_wait"),
    [
        (503, "600", 600),  # longer than the backoff: honoured
        (429, "5", 30),  # shorter: the backoff wins
        (429, "999999", 7200),  # capped at two hours
        (503, "Wed, 21 Oct 2099 07:28:00 GMT", 7200),  # an HTTP date, capped
        (500, "600", 30),  # only 429 and 503 are asked to wait
    ],
)
def test_retry_after_is_honoured_on_429_and_503(
    receiver, endpoint, status, retry_after, expected_wait
):
    receiver.answer(Reply(status, headers={"Retry-After": retry_after}))
    delivery = make_delivery(endpoint)
    now = timezone.now()

    webhook_deliver(delivery_id=delivery.pk, now=now)

    delivery.refresh_from_db()
    assert delivery.next_attempt_at == now + timedelta(seconds=expected_wait)
    assert delivery.last_status == status


def test_a_receivers_misbehaviour_never_raises(receiver, endpoint):
    huge = b"x" * (5 * 1024 * 1024)
    receiver.answer(
        Reply(500, body=huge),
        Reply(raw=b"this is not HTTP\r\n\r\n"),
        Reply(400, body=b"\x00\xff\xfe bad\nbytes"),
    )
    delivery = make_delivery(endpoint)
    now = timezone.now()

    webhook_deliver(delivery_id=delivery.pk, now=now)
    delivery.refresh_from_db()
    assert delivery.last_error.startswith("HTTP 500: xxx")
    assert len(delivery.last_error) < 250

    webhooks_deliver_due(now=now + timedelta(hours=1))
    delivery.refresh_from_db()
    assert delivery.last_status is None
    assert delivery.last_error == "connection closed without a valid HTTP answer"

    webhooks_deliver_due(now=now + timedelta(hours=2))
    delivery.refresh_from_db()
    assert delivery.last_status == 400
    assert delivery.state == DeliveryState.PENDING
    assert delivery.last_error.startswith("HTTP 400:")
    assert "bad bytes" in delivery.last_error
    assert delivery.attempts == 3


def test_a_refused_connection_is_a_failed_attempt():
    endpoint = make_endpoint(f"http://127.0.0.1:{free_port()}/hooks")  # nothing listens there
    delivery = make_delivery(endpoint)

    webhook_deliver(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_error) == (1, "connection refused")
    assert "127.0.0.1" not in delivery.last_error


def test_a_delivery_that_is_not_due_or_not_pending_is_left_alone(receiver, endpoint):
    later = make_delivery(endpoint, next_attempt_at=at(60))
    done = make_delivery(endpoint, state=DeliveryState.DELIVERED)

    assert webhook_deliver(delivery_id=later.pk) is None
    assert webhook_deliver(delivery_id=done.pk) is None
    assert webhook_deliver(delivery_id=999_999) is None
    assert receiver.received == []


def test_the_sweep_takes_the_longest_waiting_first_and_at_most_limit(receiver, endpoint):
    newest = make_delivery(endpoint, next_attempt_at=at(-10))
    oldest = make_delivery(endpoint, next_attempt_at=at(-300))
    middle = make_delivery(endpoint, next_attempt_at=at(-60))

    assert webhooks_deliver_due(limit=2) == 2

    sent = [int(r.headers["X-CRM-Delivery"]) for r in receiver.received]
    assert sent == [oldest.pk, middle.pk]
    newest.refresh_from_db()
    assert newest.state == DeliveryState.PENDING


# --- one sender at a time ------------------------------------------------------------------------


def _in_thread(target, results: list, *args) -> threading.Thread:
    def run() -> None:
        try:
            results.append(target(*args))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_delivery_claimed_by_one_worker_is_not_sent_by_another(receiver, endpoint):
    delivery = make_delivery(endpoint)
    receiver.hold()
    first: list = []

    worker = _in_thread(lambda: webhook_deliver(delivery_id=delivery.pk), first)
    assert receiver.arrived.wait(timeout=10)
    second = webhook_deliver(delivery_id=delivery.pk)  # while the first waits for its answer
    receiver.release()
    worker.join(timeout=30)

    assert second is None
    assert first[0].state == DeliveryState.DELIVERED
    assert len(receiver.received) == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (DeliveryState.DELIVERED, 1)


@pytest.mark.django_db(transaction=True)
def test_two_workers_starting_together_send_once(receiver, endpoint):
    delivery = make_delivery(endpoint)
    barrier = threading.Barrier(2)
    results: list = []

    def deliver() -> WebhookDelivery | None:
        barrier.wait(timeout=10)
        return webhook_deliver(delivery_id=delivery.pk)

    workers = [_in_thread(deliver, results) for _ in range(2)]
    for worker in workers:
        worker.join(timeout=30)

    assert sorted(result is None for result in results) == [False, True]
    assert len(receiver.received) == 1


# --- redelivery ----------------------------------------------------------------------------------


def test_redelivering_a_failed_delivery_starts_a_fresh_round(
    receiver, endpoint, django_capture_on_commit_callbacks
):
    delivery = make_delivery(
        endpoint, state=DeliveryState.FAILED, attempts=8, next_attempt_at=None, last_status=500
    )
    with django_capture_on_commit_callbacks() as callbacks:
        webhook_redeliver(delivery=delivery)
    assert len(callbacks) == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (DeliveryState.PENDING, 0)

    webhook_deliver(delivery_id=delivery.pk)
    assert receiver.received[0].headers["X-CRM-Attempt"] == "1"


def test_redelivering_a_pending_delivery_keeps_its_attempts_and_makes_it_due(endpoint):
    delivery = make_delivery(endpoint, attempts=3, next_attempt_at=at(3600))
    webhook_redeliver(delivery=delivery)
    delivery.refresh_from_db()
    assert delivery.attempts == 3
    assert delivery.next_attempt_at <= timezone.now()


def test_a_delivered_delivery_or_a_deactivated_endpoint_is_not_redelivered(endpoint):
    delivered = make_delivery(endpoint, state=DeliveryState.DELIVERED)
    with pytest.raises(RuleError, match="delivered already"):
        webhook_redeliver(delivery=delivered)
    failed = make_delivery(endpoint, state=DeliveryState.FAILED)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False)
    with pytest.raises(RuleError, match="deactivated"):
        webhook_redeliver(delivery=failed)


# --- admin ---------------------------------------------------------------------------------------


@pytest.fixture
def as_superuser(client):
    client.force_login(make_agent(role="admin"))
    return client


def endpoint_form(**values) -> dict:
    data = {
        "name": "Billing system",
        "url": "https://billing.example/hooks",
        "secret": "",
        "active": "on",
        "timeout_seconds": "10",
        "max_attempts": "8",
    }
    data.update(values)
    return data


def test_the_endpoint_secret_is_write_only_and_kept_when_left_empty(as_superuser):
    added = as_superuser.post(f"{ENDPOINTS}add/", endpoint_form(secret=SECRET))
    assert added.status_code == 302, added.content
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret == SECRET

    page = as_superuser.get(f"{ENDPOINTS}{endpoint.pk}/change/")
    assert page.status_code == 200
    assert SECRET not in page.content.decode()
    assert 'type="password"' in page.content.decode()
    assert SECRET not in as_superuser.get(ENDPOINTS).content.decode()

    changed = as_superuser.post(
        f"{ENDPOINTS}{endpoint.pk}/change/", endpoint_form(name="Billing", secret="")
    )
    assert changed.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.name, endpoint.secret) == ("Billing", SECRET)
    [entry, *_] = LogEntry.objects.order_by("-pk")
    assert "secret" not in entry.get_change_message().lower()

    as_superuser.post(f"{ENDPOINTS}{endpoint.pk}/change/", endpoint_form(secret="rotated"))
    endpoint.refresh_from_db()
    assert endpoint.secret == "rotated"


def test_the_endpoint_form_refuses_bad_values(as_superuser):
    page = as_superuser.post(
        f"{ENDPOINTS}add/", endpoint_form(url="ftp://files.example/", timeout_seconds="0")
    )
    assert page.status_code == 200
    errors = page.context["adminform"].form.errors
    assert set(errors) == {"url", "timeout_seconds"}
    assert not WebhookEndpoint.objects.exists()


def test_only_superusers_reach_the_webhook_admin(client, team, endpoint):
    lead = make_agent(team=team, role="lead")
    client.force_login(lead)
    assert client.get(ENDPOINTS).status_code == 403
    assert client.get(DELIVERIES).status_code == 403
    assert client.get(f"{ENDPOINTS}{endpoint.pk}/change/").status_code == 403


def test_the_delivery_list_and_page_render_read_only(as_superuser, endpoint):
    case = CaseFactory()
    delivery = make_delivery(
        endpoint,
        case=case,
        payload={"event": "case.updated", "case": {"number": case.number}},
        attempts=2,
        last_status=503,
        last_error="HTTP 503: try later",
    )
    listing = as_superuser.get(DELIVERIES)
    assert listing.status_code == 200
    text = listing.content.decode()
    assert "HTTP 503: try later" in text
    assert case.number in text
    assert "Send again now" in text
    assert as_superuser.get(f"{DELIVERIES}?state=pending").status_code == 200
    assert as_superuser.get(f"{DELIVERIES}add/").status_code == 403

    page = as_superuser.get(f"{DELIVERIES}{delivery.pk}/change/")
    assert page.status_code == 200
    assert "<pre" in page.content.decode()
    assert "&quot;event&quot;: &quot;case.updated&quot;" in page.content.decode()  # indented
    assert 'name="_save"' not in page.content.decode()


def test_send_again_now_sends_failed_deliveries_after_commit(
    as_superuser, receiver, endpoint, eager_celery, django_capture_on_commit_callbacks
):
    failed = make_delivery(endpoint, state=DeliveryState.FAILED, attempts=8, next_attempt_at=None)
    delivered = make_delivery(endpoint, state=DeliveryState.DELIVERED)

    with django_capture_on_commit_callbacks(execute=True):
        answer = as_superuser.post(
            DELIVERIES,
            {"action": "send_again_now", "_selected_action": [failed.pk, delivered.pk]},
            follow=True,
        )

    assert answer.status_code == 200
    text = answer.content.decode()
    assert "1 delivery(ies) queued" in text
    assert "1 delivered one(s) left alone" in text
    failed.refresh_from_db()
    assert (failed.state, failed.attempts) == (DeliveryState.DELIVERED, 1)
    assert [r.headers["X-CRM-Delivery"] for r in receiver.received] == [str(failed.pk)]


# --- from a rule to the receiver ---------------------------------------------------------------


def test_a_rule_posts_the_case_to_its_webhook_after_commit(
    receiver, endpoint, eager_celery, django_capture_on_commit_callbacks
):
    from cases.choices import RuleTrigger
    from cases.models import WorkflowRun
    from tests.cases.factories import TeamFactory, make_rule

    make_rule("Tell the ERP", trigger=RuleTrigger.CASE_UPDATED,
              conditions=[("case.priority", "changed_to", "urgent")],
              actions=[{"kind": "webhook", "webhook": endpoint}])  # fmt: skip
    case = CaseFactory(team=TeamFactory(name="Ops"), title="Line 3 stopped")

    with django_capture_on_commit_callbacks(execute=True):
        services.case_update(actor=None, case=case, priority="urgent")

    [request] = receiver.received
    body = json.loads(request.body)
    assert body["event"] == "workflow.rule_fired"
    assert body["rule"]["name"] == "Tell the ERP"
    assert body["case"]["number"] == case.number
    assert body["case"]["priority"] == "urgent"
    assert body["changes"] == {"priority": ["normal", "urgent"]}
    timestamp = request.headers["X-CRM-Timestamp"]
    expected = webhook_sign(secret=SECRET, timestamp=int(timestamp), body=request.body)
    assert request.headers["X-CRM-Signature"] == expected
    run = WorkflowRun.objects.get(case=case)
    delivery = WebhookDelivery.objects.get(run=run)
    assert delivery.state == DeliveryState.DELIVERED
    assert run.actions[0]["summary"] == f"webhook “{endpoint}” queued (delivery #{delivery.pk})"
