"""Graph change-notification subscriptions, for any resource an app syncs.

An app registers a kind (`register("mail_folder", schedule_round=...)`) and asks for a
subscription per synced resource (`subscription_ensure`). Graph then calls the webhooks
(`crm.webhooks`) whenever that resource changes; a notification only *schedules* the app's
sync round (`notification_accept`), coalesced per resource across web processes, so a burst
of notifications starts one round, and the round itself reads what changed through delta.

Lifetimes: Graph lets an Outlook subscription live 10,080 minutes; beat renews those expiring
within a day (`subscriptions_renew_due`), and hourly finds expired or failing ones and
recreates them (`subscriptions_repair`). While a resource has no working subscription, its
app polls it (`needs_polling`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from crm.choices import SubscriptionState
from crm.graph.client import GraphClient
from crm.graph.errors import GraphError
from crm.models import GraphSubscription

logger = logging.getLogger(__name__)

RENEW_WITHIN = timedelta(hours=24)
FAILURES_BEFORE_RECREATE = 3
LOOKUP_CACHE_SECONDS = 30.0
# A scheduled round keeps the mark until it starts (`round_starting`); should it never start
# (a lost task), notifications schedule again after this long, and beat's periodic round of
# every mailbox has read the changes meanwhile.
PENDING_MARK_SECONDS = 300


@dataclass(frozen=True)
class Kind:
    """How an app's resources are synced: `schedule_round(target_id)` queues a round (it runs
    in a web process: queue a task, do not sync there)."""

    name: str
    schedule_round: Callable[[int], None]
    target_exists: Callable[[int], bool]


_kinds: dict[str, Kind] = {}


def register(
    name: str, *, schedule_round: Callable[[int], None], target_exists: Callable[[int], bool]
) -> None:
    """Called from an app's `ready()`. `target_exists` lets the hourly repair delete the
    subscriptions of resources that are gone, however they went."""
    _kinds[name] = Kind(name=name, schedule_round=schedule_round, target_exists=target_exists)


def notifications_enabled() -> bool:
    """Graph can only call an https address it can reach."""
    return settings.PUBLIC_BASE_URL.startswith("https://")


def notification_url() -> str:
    return f"{settings.PUBLIC_BASE_URL}/api/v1/webhooks/microsoft"


def lifecycle_url() -> str:
    return f"{settings.PUBLIC_BASE_URL}/api/v1/webhooks/microsoft/lifecycle"


def _digest(client_state: str) -> str:
    return hashlib.sha256(client_state.encode()).hexdigest()


def _client(subscription: GraphSubscription) -> GraphClient:
    return GraphClient(mailbox=subscription.limiter_key or None)


def _lifetime_end() -> datetime:
    return timezone.now() + timedelta(minutes=settings.GRAPH_SUBSCRIPTION_MINUTES)


def _graph_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


# --- creating, renewing, deleting -------------------------------------------------------------


def subscription_ensure(
    *, kind: str, target_id: int, resource: str, limiter_key: str = ""
) -> GraphSubscription | None:
    """The resource's subscription, created in Graph if it has none that works. None when
    notifications are off (no public https address)."""
    if not notifications_enabled():
        return None
    subscription, _ = GraphSubscription.objects.get_or_create(
        kind=kind,
        target_id=target_id,
        defaults={"resource": resource, "limiter_key": limiter_key},
    )
    if subscription.state == SubscriptionState.ACTIVE and subscription.resource == resource:
        return subscription
    if _backing_off(subscription):
        return subscription  # polled meanwhile; the hourly repair tries again too
    subscription.resource, subscription.limiter_key = resource, limiter_key
    return subscription_create(subscription=subscription)


def _backing_off(subscription: GraphSubscription) -> bool:
    """After failures, wait 1, 2, 4… minutes (at most an hour) before trying again: every
    round of a polled folder would otherwise ask Graph to create it once a minute."""
    if not subscription.failures:
        return False
    wait = timedelta(minutes=min(2 ** (subscription.failures - 1), 60))
    return timezone.now() - subscription.updated_at < wait


def subscription_create(*, subscription: GraphSubscription) -> GraphSubscription:
    """Create the subscription in Graph with a fresh clientState (Graph first calls our
    webhooks with a validation token, which they answer at once)."""
    client_state = secrets.token_urlsafe(32)
    body = {
        "changeType": subscription.change_type,
        "notificationUrl": notification_url(),
        "lifecycleNotificationUrl": lifecycle_url(),
        "resource": subscription.resource,
        "expirationDateTime": _graph_time(_lifetime_end()),
        "clientState": client_state,
        "latestSupportedTlsVersion": "v1_2",
    }
    try:
        created = _client(subscription).request_json("POST", "subscriptions", json=body)
    except GraphError as exc:
        return _failed(subscription, f"create: {exc}")
    subscription.graph_id = created["id"]
    subscription.client_state_hash = _digest(client_state)
    subscription.expires_at = parse_datetime(created.get("expirationDateTime", "")) or None
    subscription.state = SubscriptionState.ACTIVE
    subscription.failures, subscription.last_error = 0, ""
    subscription.last_renewed_at = timezone.now()
    subscription.save()
    _forget(subscription.graph_id)
    return subscription


def subscription_renew(*, subscription: GraphSubscription) -> GraphSubscription:
    """Extend the lifetime to the longest Graph allows; a subscription Graph no longer knows
    is recreated."""
    if not subscription.graph_id:
        return subscription_create(subscription=subscription)
    body = {"expirationDateTime": _graph_time(_lifetime_end())}
    try:
        renewed = _client(subscription).request_json(
            "PATCH", f"subscriptions/{subscription.graph_id}", json=body
        )
    except GraphError as exc:
        if exc.status == 404:
            return subscription_create(subscription=subscription)
        return _failed(subscription, f"renew: {exc}")
    subscription.expires_at = parse_datetime(renewed.get("expirationDateTime", "")) or None
    subscription.state, subscription.failures, subscription.last_error = (
        SubscriptionState.ACTIVE,
        0,
        "",
    )
    subscription.last_renewed_at = timezone.now()
    subscription.save()
    return subscription


def subscription_reauthorize(*, subscription: GraphSubscription) -> GraphSubscription:
    """Graph asked (lifecycle `reauthorizationRequired`): reauthorize, or renew if that fails."""
    try:
        _client(subscription).request("POST", f"subscriptions/{subscription.graph_id}/reauthorize")
    except GraphError as exc:
        logger.warning(
            "graph subscription %s: reauthorize failed (%s); renewing", subscription, exc
        )
        return subscription_renew(subscription=subscription)
    subscription.last_renewed_at = timezone.now()
    subscription.save(update_fields=["last_renewed_at", "updated_at"])
    return subscription


def subscription_delete(*, subscription: GraphSubscription) -> None:
    """Delete in Graph (gone already is fine) and here."""
    if subscription.graph_id and subscription.state != SubscriptionState.INACTIVE:
        try:
            _client(subscription).request("DELETE", f"subscriptions/{subscription.graph_id}")
        except GraphError as exc:
            if exc.status != 404:
                logger.warning("graph subscription %s: delete failed: %s", subscription, exc)
    _forget(subscription.graph_id)
    subscription.delete()


def subscriptions_delete_for(*, kind: str, target_ids: list[int]) -> int:
    """Delete the subscriptions of resources that stopped syncing (a folder, a mailbox).
    Precondition: not inside a transaction that may roll back (Graph is called): use
    `transaction.on_commit`."""
    gone = list(GraphSubscription.objects.filter(kind=kind, target_id__in=target_ids))
    for subscription in gone:
        subscription_delete(subscription=subscription)
    return len(gone)


def _failed(subscription: GraphSubscription, error: str) -> GraphSubscription:
    logger.warning("graph subscription %s: %s", subscription, error)
    subscription.failures += 1
    subscription.last_error = error[:2000]
    subscription.state = (
        SubscriptionState.INACTIVE if subscription.graph_id is None else SubscriptionState.FAILING
    )
    subscription.save()
    return subscription


# --- beat -------------------------------------------------------------------------------------


def subscriptions_renew_due() -> int:
    """Renew active subscriptions that expire within a day (beat, every 12 hours)."""
    due = GraphSubscription.objects.filter(
        state=SubscriptionState.ACTIVE, expires_at__lt=timezone.now() + RENEW_WITHIN
    )
    renewed = 0
    for subscription in due.order_by("expires_at"):
        renewed += subscription_renew(subscription=subscription).state == SubscriptionState.ACTIVE
    return renewed


def subscriptions_repair() -> int:
    """Expired or failing subscriptions become inactive and are recreated (beat, hourly)."""
    now = timezone.now()
    broken = GraphSubscription.objects.exclude(state=SubscriptionState.ACTIVE) | (
        GraphSubscription.objects.filter(state=SubscriptionState.ACTIVE, expires_at__lt=now)
    )
    repaired = 0
    for subscription in broken.order_by("pk"):
        kind = _kinds.get(subscription.kind)
        if kind is None or not kind.target_exists(subscription.target_id):
            subscription_delete(subscription=subscription)
            continue
        subscription.state = SubscriptionState.INACTIVE
        subscription.save(update_fields=["state", "updated_at"])
        _forget(subscription.graph_id)
        repaired += subscription_create(subscription=subscription).state == SubscriptionState.ACTIVE
    return repaired


def needs_polling(*, kind: str, target_ids: list[int]) -> list[int]:
    """Of these resources, the ones without a working subscription: their app polls them."""
    if not notifications_enabled():
        return list(target_ids)
    working = set(
        GraphSubscription.objects.filter(
            kind=kind,
            target_id__in=target_ids,
            state=SubscriptionState.ACTIVE,
            expires_at__gt=timezone.now(),
        ).values_list("target_id", flat=True)
    )
    return [target for target in target_ids if target not in working]


# --- notifications (web processes) -------------------------------------------------------------


@dataclass(frozen=True)
class Known:
    pk: int
    kind: str
    target_id: int
    client_state_hash: str
    until: float


_known: dict[str, Known] = {}


def _lookup(graph_id: str) -> Known | None:
    """The subscription behind Graph's id, remembered briefly in this process: at a thousand
    notifications a second, a query each would be most of the webhook's cost."""
    hit = _known.get(graph_id)
    if hit is not None and hit.until > time.monotonic():
        return hit
    row = (
        GraphSubscription.objects.filter(graph_id=graph_id)
        .exclude(state=SubscriptionState.INACTIVE)
        .values_list("pk", "kind", "target_id", "client_state_hash")
        .first()
    )
    if row is None:
        _known.pop(graph_id, None)
        return None
    hit = Known(*row, until=time.monotonic() + LOOKUP_CACHE_SECONDS)
    _known[graph_id] = hit
    return hit


def _forget(graph_id: str | None) -> None:
    if graph_id:
        _known.pop(graph_id, None)


def verified(graph_id: object, client_state: object) -> Known | None:
    """The subscription a notification names, if its clientState is the one we gave it."""
    if not isinstance(graph_id, str) or not isinstance(client_state, str) or not graph_id:
        return None
    return _checked(_lookup(graph_id[:100]), client_state)


def verified_if_cached(graph_id: object, client_state: object) -> Known | None | bool:
    """`verified` without I/O: False when the answer needs the database (not remembered)."""
    if not isinstance(graph_id, str) or not isinstance(client_state, str) or not graph_id:
        return None
    hit = _known.get(graph_id[:100])
    if hit is None or hit.until <= time.monotonic():
        return False
    return _checked(hit, client_state)


def _checked(known: Known | None, client_state: str) -> Known | None:
    if known is None or not known.client_state_hash:
        return None
    if not hmac.compare_digest(_digest(client_state), known.client_state_hash):
        return None
    return known


def notification_accept(known: Known) -> bool:
    """Schedule a round for the notified resource unless one is scheduled already; True when
    this notification scheduled it. The mark lives in the shared cache (Redis in production),
    so a burst spread over several web processes still starts one round."""
    if known.kind not in _kinds:
        return False
    if not cache.add(pending_key(known.kind, known.target_id), 1, PENDING_MARK_SECONDS):
        return False
    round_claimed(known)
    return True


def round_claimed(known: Known) -> None:
    """This notification set the resource's mark: note it and queue the round (at once: the
    round reads Graph, not anything this request writes)."""
    GraphSubscription.objects.filter(pk=known.pk).update(last_notification_at=timezone.now())
    _kinds[known.kind].schedule_round(known.target_id)


def round_starting(*, kind: str, target_id: int) -> None:
    """An app's round is about to read the resource: a notification from now on needs a round
    of its own, so the coalescing mark goes."""
    cache.delete(pending_key(kind, target_id))


def pending_key(kind: str, target_id: int) -> str:
    return f"graphsub:pending:{kind}:{target_id}"


def lifecycle_schedule(known: Known, event: str) -> None:
    """Lifecycle events are handled in the worker (they call Graph)."""
    from crm.tasks import subscription_lifecycle

    subscription_lifecycle.delay(known.pk, event)


def lifecycle_handle(*, subscription_id: int, event: str) -> None:
    """reauthorizationRequired → reauthorize; subscriptionRemoved → recreate, then a round;
    missed → a round (what was missed is read through delta)."""
    subscription = GraphSubscription.objects.filter(pk=subscription_id).first()
    if subscription is None:
        return
    kind = _kinds.get(subscription.kind)
    if event == "reauthorizationRequired":
        subscription_reauthorize(subscription=subscription)
    elif event == "subscriptionRemoved":
        _forget(subscription.graph_id)
        subscription.state = SubscriptionState.INACTIVE
        subscription.save(update_fields=["state", "updated_at"])
        subscription_create(subscription=subscription)
        if kind:
            kind.schedule_round(subscription.target_id)
    elif event == "missed" and kind:
        kind.schedule_round(subscription.target_id)
