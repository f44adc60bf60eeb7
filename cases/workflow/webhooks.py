"""Signed outgoing webhooks with retries: a rule's webhook action writes a delivery (an outbox
row) in the rule's transaction; after commit a worker posts it, and failures come back on a
backoff through the sweep (`cases.tasks.webhooks_sweep`, every 30 seconds).

What a receiver gets: the same bytes on every attempt (the JSON is fixed when the delivery is
written), `X-CRM-Delivery` to drop repeats, and `X-CRM-Signature: sha256=<hex>`, an
HMAC-SHA256 with the endpoint's secret over "<X-CRM-Timestamp>.<body>". The timestamp is the
real clock at sending time (the receiver compares it with its own), even when a caller moves
the schedule with `now`.

Decisions worth knowing:

- **At least once, never twice at the same time.** A worker claims a delivery with one
  conditional UPDATE (pending and due → due again only after the request's timeout plus 30 s,
  a lease) in autocommit, so no transaction stays open while a receiver thinks. A worker that
  dies mid-request leaves the lease to run out, and the sweep tries again: a receiver may see
  a delivery twice and should drop repeats by `X-CRM-Delivery`.
- **Every failure is retried, 4xx included**, until `max_attempts`: 2xx is success, anything
  else (timeouts, refused connections, 3xx since redirects are not followed, 4xx, 5xx) is an
  attempt that failed. A 400/401/404 is usually a receiver being redeployed or a secret being
  rotated on their side, which fixes itself within the retry window; giving up at once would
  lose the event for good. The backoff (30 s, doubling, at most 2 h) keeps this cheap.
  `Retry-After` (seconds or an HTTP date) is honoured on 429 and 503 when it asks for longer.
- **A receiver's misbehaviour never raises**: at most 64 KiB of an error answer is read (for
  a short excerpt in `last_error`), within the timeout; a 2xx answer's body is not read.
  Error texts never contain the secret, the signature or the URL (URLs often carry tokens).
- **Giving up** marks the delivery failed, logs a warning and emails the admins once.
- **Redelivery** ("send again now" in admin): a pending delivery keeps its attempts and is
  only moved forward; a failed one starts a fresh round (attempts back to 0), because an admin
  redelivers after fixing the receiver and one more single attempt would give up again on the
  first blip.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from cases.choices import DeliveryState
from cases.models import Case, WebhookDelivery, WebhookEndpoint, WorkflowRun
from cases.workflow.fields import RuleError
from crm.alerts import email_admins

logger = logging.getLogger(__name__)

USER_AGENT = "SupportCRM-Webhooks/1"
BACKOFF_START = 30  # seconds after the first failed attempt, doubling after each further one
BACKOFF_CAP = 2 * 60 * 60
LEASE_MARGIN = 30  # seconds a claim outlives the request's timeout
MAX_ANSWER_BYTES = 64 * 1024
EXCERPT_CHARS = 200
RETRY_AFTER_STATUSES = frozenset({429, 503})
ERROR_CHARS = 500  # WebhookDelivery.last_error's max_length


# --- writing a delivery --------------------------------------------------------------------------


def webhook_sign(*, secret: str, timestamp: int, body: bytes) -> str:
    """The `X-CRM-Signature` value: "sha256=" and the hex HMAC-SHA256 of "<timestamp>.<body>".
    The timestamp is signed too, so a captured request cannot be replayed later as new."""
    message = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def webhook_body(*, payload: dict[str, Any]) -> str:
    """The JSON a delivery sends: compact and with sorted keys, so the same payload is always
    the same bytes (receivers may hash or compare them)."""
    return json.dumps(payload, cls=DjangoJSONEncoder, sort_keys=True, separators=(",", ":"))


def webhook_enqueue(
    *,
    endpoint: WebhookEndpoint,
    payload: dict[str, Any],
    case: Case | None = None,
    run: WorkflowRun | None = None,
) -> WebhookDelivery:
    """Write a delivery of `payload` to `endpoint`, due now, and post it after commit.

    Called inside the rule's transaction: a rolled-back rule leaves no delivery and sends
    nothing. Should the task not reach the broker, the sweep finds the delivery due anyway.
    """
    if not endpoint.active:
        raise RuleError(
            f"The webhook “{endpoint.name}” is deactivated: activate it or choose another.",
            field="webhook",
        )
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        case=case,
        run=run,
        body=webhook_body(payload=payload),
        state=DeliveryState.PENDING,
        next_attempt_at=timezone.now(),
    )
    _deliver_on_commit(delivery.pk)
    return delivery


def _deliver_on_commit(delivery_id: int) -> None:
    from cases import tasks

    transaction.on_commit(lambda: tasks.webhook_deliver.delay(delivery_id), robust=True)


def webhook_redeliver(*, delivery: WebhookDelivery) -> None:
    """Admin's "send again now": the delivery is due at once and posted after commit.

    A failed delivery starts a fresh round of attempts; a pending one keeps its count (see the
    module docstring). A delivered one is refused, as is one whose endpoint is deactivated
    (it would only fail again). A delivery in the middle of an attempt may be sent twice;
    receivers drop repeats by `X-CRM-Delivery`.
    """
    with transaction.atomic():
        locked = (
            WebhookDelivery.objects.select_for_update()
            .select_related("endpoint")
            .get(pk=delivery.pk)
        )
        if locked.state == DeliveryState.DELIVERED:
            raise RuleError(f"Delivery #{locked.pk} was delivered already.")
        if not locked.endpoint.active:
            raise RuleError(
                f"The webhook “{locked.endpoint.name}” is deactivated: activate it first."
            )
        if locked.state == DeliveryState.FAILED:
            locked.attempts = 0
        locked.state = DeliveryState.PENDING
        locked.next_attempt_at = timezone.now()
        locked.save(update_fields=["state", "attempts", "next_attempt_at"])
        _deliver_on_commit(locked.pk)
    delivery.state, delivery.attempts = locked.state, locked.attempts
    delivery.next_attempt_at = locked.next_attempt_at


# --- delivering ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one POST came to: `ok` for a 2xx answer; otherwise a short error for admins."""

    ok: bool
    status: int | None = None
    error: str = ""
    retry_after: float | None = None


def webhook_deliver(*, delivery_id: int, now: datetime | None = None) -> WebhookDelivery | None:
    """Make one attempt at a delivery if it is pending and due; None when there is nothing
    to do (delivered, given up, not due, or claimed by another worker).

    Precondition: not called inside a transaction that stays open (the claim's row lock would
    then be held for the whole request). `now` moves the schedule (tests, the sweep).
    """
    now = now or timezone.now()
    delivery = _claim(delivery_id=delivery_id, now=now)
    if delivery is None:
        return None
    endpoint = delivery.endpoint
    if not endpoint.active:
        logger.info(
            "Webhook delivery %s dropped: endpoint %s is deactivated", delivery.pk, endpoint.pk
        )
        return _record(
            delivery,
            state=DeliveryState.FAILED,
            next_attempt_at=None,
            last_error="endpoint deactivated",
        )
    attempt = delivery.attempts + 1
    outcome = _post(delivery, attempt=attempt)
    if outcome.ok:
        return _record(
            delivery,
            state=DeliveryState.DELIVERED,
            attempts=attempt,
            next_attempt_at=None,
            delivered_at=now,
            last_status=outcome.status,
            last_error="",
        )
    return _record_failure(delivery, attempt=attempt, outcome=outcome, now=now)


def webhooks_deliver_due(*, limit: int = 200, now: datetime | None = None) -> int:
    """Attempt the pending deliveries that are due, the longest waiting first, at most
    `limit` of them (beat, every 30 s). Returns how many were attempted: a delivery another
    worker claimed first is not counted."""
    now = now or timezone.now()
    due = list(
        WebhookDelivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(webhook_deliver(delivery_id=pk, now=now) is not None for pk in due)


def webhook_backoff(*, attempts: int, retry_after: float | None = None) -> timedelta:
    """How long to wait after `attempts` failed attempts: 30 s, doubling, at most 2 h; a
    longer `Retry-After` wins, within the same cap."""
    seconds = min(BACKOFF_START * 2 ** min(max(attempts - 1, 0), 20), BACKOFF_CAP)
    if retry_after is not None:
        seconds = max(seconds, min(retry_after, BACKOFF_CAP))
    return timedelta(seconds=seconds)


def _timeout(endpoint: WebhookEndpoint) -> int:
    return max(1, endpoint.timeout_seconds)


def _claim(*, delivery_id: int, now: datetime) -> WebhookDelivery | None:
    """Take the delivery for one attempt, or None. The UPDATE is conditional on the row still
    being pending and due: of two workers, PostgreSQL re-checks the second one's condition
    after the first committed its lease, so exactly one of them gets the row."""
    due = {"pk": delivery_id, "state": DeliveryState.PENDING, "next_attempt_at__lte": now}
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(**due).first()
    if delivery is None:
        return None
    lease_until = now + timedelta(seconds=_timeout(delivery.endpoint) + LEASE_MARGIN)
    if not WebhookDelivery.objects.filter(**due).update(next_attempt_at=lease_until):
        return None
    delivery.next_attempt_at = lease_until
    return delivery


def _record(delivery: WebhookDelivery, **fields: Any) -> WebhookDelivery:
    """Write an attempt's result. A queryset update: the row may have gone with its case's
    endpoint meanwhile, and that is no reason to fail."""
    if "last_error" in fields:
        fields["last_error"] = fields["last_error"][:ERROR_CHARS]
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
    for name, value in fields.items():
        setattr(delivery, name, value)
    return delivery


def _record_failure(
    delivery: WebhookDelivery, *, attempt: int, outcome: Outcome, now: datetime
) -> WebhookDelivery:
    endpoint = delivery.endpoint
    if attempt >= max(1, endpoint.max_attempts):
        _record(
            delivery,
            state=DeliveryState.FAILED,
            attempts=attempt,
            next_attempt_at=None,
            last_status=outcome.status,
            last_error=outcome.error,
        )
        _alert_gave_up(delivery)
        return delivery
    wait = webhook_backoff(attempts=attempt, retry_after=outcome.retry_after)
    return _record(
        delivery,
        attempts=attempt,
        next_attempt_at=now + wait,
        last_status=outcome.status,
        last_error=outcome.error,
    )


def _post(delivery: WebhookDelivery, *, attempt: int) -> Outcome:
    """POST the stored body once. Every failure becomes an Outcome, never an exception."""
    endpoint = delivery.endpoint
    body = delivery.body.encode()
    timestamp = int(time.time())
    timeout = _timeout(endpoint)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-CRM-Delivery": str(delivery.pk),
        "X-CRM-Timestamp": str(timestamp),
        "X-CRM-Signature": webhook_sign(
            secret=endpoint.secret or "", timestamp=timestamp, body=body
        ),
        "X-CRM-Attempt": str(attempt),
    }
    deadline = time.monotonic() + timeout
    try:
        with requests.Session() as session:
            session.trust_env = False  # no proxies or CA bundles from the worker's environment
            with session.post(
                endpoint.url,
                data=body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                stream=True,
            ) as response:
                return _answer(response, deadline=deadline)
    except requests.Timeout:
        return Outcome(ok=False, error=f"timed out after {timeout} s")
    except requests.ConnectionError as error:
        return Outcome(ok=False, error=_connection_problem(error))
    except requests.RequestException as error:
        return Outcome(ok=False, error=f"request failed ({type(error).__name__})")
    except Exception as error:  # a receiver's garbage must not kill the worker's loop
        logger.warning("Webhook delivery %s: unexpected error", delivery.pk, exc_info=True)
        return Outcome(ok=False, error=f"request failed ({type(error).__name__})")


def _answer(response: requests.Response, *, deadline: float) -> Outcome:
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(ok=True, status=status)
    if 300 <= status < 400:
        return Outcome(ok=False, status=status, error=f"HTTP {status}: redirects are not followed")
    retry_after = None
    if status in RETRY_AFTER_STATUSES:
        retry_after = _retry_after(response.headers.get("Retry-After"))
    excerpt = _excerpt(_read_capped(response, deadline=deadline))
    error = f"HTTP {status}: {excerpt}" if excerpt else f"HTTP {status}"
    return Outcome(ok=False, status=status, error=error, retry_after=retry_after)


def _read_capped(response: requests.Response, *, deadline: float) -> bytes:
    """At most MAX_ANSWER_BYTES of the answer, and only until the deadline: a receiver that
    trickles an endless body does not hold the worker. A body lost on the way reads as what
    arrived."""
    received = bytearray()
    try:
        for chunk in response.iter_content(chunk_size=8192):
            received += chunk
            if len(received) >= MAX_ANSWER_BYTES or time.monotonic() > deadline:
                break
    except (requests.RequestException, OSError, ValueError):
        pass
    return bytes(received[:MAX_ANSWER_BYTES])


def _excerpt(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _retry_after(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date); None when
    absent or unreadable."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


_NAME_NOT_RESOLVED = re.compile(
    r"NameResolution|Name or service not known|nodename nor servname|getaddrinfo", re.I
)


def _connection_problem(error: requests.ConnectionError) -> str:
    """A short reason without the URL, which requests puts in its messages."""
    text = repr(error)
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if "refused" in text.lower():
        return "connection refused"
    if _NAME_NOT_RESOLVED.search(text):
        return "host name not resolved"
    if re.search(r"BadStatusLine|RemoteDisconnected|Connection aborted|reset", text, re.I):
        return "connection closed without a valid HTTP answer"
    return "connection failed"


# --- giving up -----------------------------------------------------------------------------------


def _alert_gave_up(delivery: WebhookDelivery) -> None:
    """Log and email the admins, once: only the attempt that gives up calls this, and the
    claim makes that attempt one worker's. A mail server that fails is logged, not raised
    (the delivery's state is written already and the admin list shows it)."""
    endpoint = delivery.endpoint
    logger.warning(
        "Webhook delivery %s to %s gave up after %s attempts: %s",
        delivery.pk,
        endpoint.name,
        delivery.attempts,
        delivery.last_error,
    )
    subject = f"Webhook “{endpoint.name}” gave up on delivery #{delivery.pk}"
    case = f"case {delivery.case.number}" if delivery.case_id and delivery.case else "no case"
    lines = [
        f"The CRM could not deliver webhook #{delivery.pk} ({case}) to “{endpoint.name}” "
        f"after {delivery.attempts} attempts and stopped trying.",
        f"Last error: {delivery.last_error or '—'}",
        "",
        "Check the receiver, then use “Send again now” on the delivery in the admin.",
    ]
    link = _admin_url(delivery)
    if link:
        lines.append(link)
    try:
        email_admins(subject, "\n".join(lines) + "\n")
    except Exception:
        logger.exception("Could not email the admins about webhook delivery %s", delivery.pk)


def _admin_url(delivery: WebhookDelivery) -> str:
    try:
        path = reverse("admin:cases_webhookdelivery_change", args=[delivery.pk])
    except NoReverseMatch:
        return ""
    return f"{settings.PUBLIC_BASE_URL}{path}"
