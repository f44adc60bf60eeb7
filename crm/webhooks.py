"""Microsoft Graph calls these: change notifications and lifecycle events.

Public (no session, no CSRF: Graph cannot have either) and cheap on purpose: Graph wants an
answer within three seconds and sends bursts, so a notification is verified (its
`clientState` against the subscription's stored hash), coalesced and answered 202; the work
(a delta round, a reauthorization) runs in the worker. What cannot be verified schedules
nothing and is logged.

The rules live here, free of any web framework (`Answer`, `read_items`, `triage`, `summary`);
two front ends use them: Django views (below), and an ASGI fast path (`crm.webhook_asgi`) that
production traffic takes, because the full Django stack costs several milliseconds a request
and Graph's bursts come at a thousand a second.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from crm.graph import subscriptions

logger = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 2048
MAX_ITEMS = 1000
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})
NOTIFICATIONS, LIFECYCLE = "notifications", "lifecycle"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _error(status: int, message: str, **headers: str) -> Answer:
    return Answer(status, json.dumps({"error": message}).encode(), headers=headers)


ACCEPTED = Answer(202)


def validation_answer(token: str) -> Answer:
    """Graph's handshake: the token back, as plain text, at once."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return _error(400, "The validation token is empty or too long.")
    return Answer(
        200,
        token.encode(),
        "text/plain; charset=utf-8",
        {"X-Content-Type-Options": "nosniff"},
    )


def body_too_large(content_length: str | None) -> Answer | None:
    declared = content_length or "0"
    if not declared.isdigit() or int(declared) > settings.WEBHOOK_MAX_BODY_BYTES:
        return _error(413, "The body is too large.")
    return None


def read_items(body: bytes) -> tuple[list, Answer | None]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return [], _error(400, "The body is not JSON.")
    items = parsed.get("value") if isinstance(parsed, dict) else None
    if not isinstance(items, list) or not items:
        return [], _error(400, "Expected a JSON object with a non-empty `value` list.")
    return items[:MAX_ITEMS], None


def triage(endpoint: str, item: object) -> tuple[str, subscriptions.Known | None]:
    """("ok", the subscription) for an item we can act on; ("forged", None) when its
    subscription is unknown or its clientState wrong; ("bad", None) when it is no
    notification of this endpoint at all."""
    if not isinstance(item, dict):
        return "bad", None
    if endpoint == LIFECYCLE and item.get("lifecycleEvent") not in LIFECYCLE_EVENTS:
        return "bad", None
    known = subscriptions.verified(item.get("subscriptionId"), item.get("clientState"))
    return ("ok", known) if known is not None else ("forged", None)


def summary(outcomes: list[str], remote: str) -> Answer:
    accepted, forged = outcomes.count("ok"), outcomes.count("forged")
    if forged:
        logger.warning(
            "graph webhook: %s notification(s) with an unknown subscription or a wrong "
            "clientState from %s were ignored",
            forged,
            remote,
        )
    if not accepted and forged:
        return _error(403, "Unknown subscription or wrong clientState.")
    if not accepted:
        return _error(400, "No notification in the body could be read.")
    return ACCEPTED


class RateWindow:
    """Requests per client address in the current second, in this process.

    Kept in memory, not in Redis: a shared counter would cost two round trips on every
    notification, which was most of the webhook's time (measured). The limit therefore holds
    per web process; with N processes an address gets at most N times the setting.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.second = 0
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()

    def over(self, address: str) -> bool:
        now = int(self.clock())
        with self.lock:
            if now != self.second:
                self.second, self.counts = now, {}
            count = self.counts[address] = self.counts.get(address, 0) + 1
        return count > settings.WEBHOOK_RATE_PER_SECOND


rate_window = RateWindow()
TOO_MANY = _error(429, "Too many requests.", **{"Retry-After": "1"})


# --- the Django front end ----------------------------------------------------------------------


@csrf_exempt
@require_POST
def notifications(request: HttpRequest) -> HttpResponse:
    return _respond(_receive(request, NOTIFICATIONS))


@csrf_exempt
@require_POST
def lifecycle(request: HttpRequest) -> HttpResponse:
    return _respond(_receive(request, LIFECYCLE))


def _receive(request: HttpRequest, endpoint: str) -> Answer:
    if "validationToken" in request.GET:
        return validation_answer(request.GET["validationToken"])
    remote = request.META.get("REMOTE_ADDR", "?")
    if rate_window.over(remote):
        return TOO_MANY
    refused = body_too_large(request.META.get("CONTENT_LENGTH"))
    if refused:
        return refused
    items, problem = read_items(request.body)
    if problem:
        return problem
    outcomes = []
    for item in items:
        outcome, known = triage(endpoint, item)
        if outcome == "ok" and endpoint == NOTIFICATIONS:
            subscriptions.notification_accept(known)
        elif outcome == "ok":
            subscriptions.lifecycle_schedule(known, item["lifecycleEvent"])
        outcomes.append(outcome)
    return summary(outcomes, remote)


def _respond(answer: Answer) -> HttpResponse:
    response = HttpResponse(answer.body, status=answer.status, content_type=answer.content_type)
    for name, value in answer.headers.items():
        response[name] = value
    return response
