"""The SMTP listener's durable spool: what was acknowledged is in the database, and stays
queued for delivery until it is delivered (DESIGN.md "Bad input and failure").

`attempts` counts delivery attempts: the one that delivered, each that failed with an error,
and each the sweep had to queue again (its task lost, or its worker killed).

The listener answers `250` only after `inbound_receive` has committed the raw message. Its
delivery task is queued after that commit; if queuing fails (the broker is down) or the task
is lost (a worker killed before acknowledging it), beat's sweep (`inbound_requeue_stale`)
queues it again a minute later. Delivery itself is idempotent (`local.inbound_deliver`), so a
message queued twice is still delivered once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from mailsync.choices import InboundStatus
from mailsync.mime import one_line
from mailsync.models import InboundMessage

logger = logging.getLogger(__name__)

MAX_DELIVERY_ATTEMPTS = 10
RETRY_AFTER = timedelta(minutes=1)
SWEEP_BATCH = 1_000


@transaction.atomic
def inbound_receive(
    *,
    raw: bytes,
    mail_from: str,
    rcpt_tos: list[str],
    peer: str = "",
    helo: str = "",
    user_id: int | None = None,
) -> InboundMessage:
    """Store a message the listener is about to acknowledge, and queue its delivery on commit.

    Nothing is parsed here: the bytes go to the database as they came, so a message that would
    trip the parser is still kept, and the SMTP session waits only for one INSERT.
    """
    inbound = InboundMessage.objects.create(
        raw=raw,
        size=len(raw),
        mail_from=one_line(mail_from)[:998],
        rcpt_tos=[one_line(address)[:998] for address in rcpt_tos],
        peer=one_line(peer)[:100],
        helo=one_line(helo)[:255],
        authenticated_user_id=user_id,
    )
    # robust: a broker that is down must not undo the acknowledgement; the sweep requeues.
    # (Callbacks are functions, not partials: Django logs a robust failure by __qualname__.)
    transaction.on_commit(lambda: _enqueue(inbound.pk), robust=True)
    return inbound


def _enqueue(inbound_id: int) -> None:
    from mailsync.tasks import deliver_inbound

    deliver_inbound.delay(inbound_id)


def inbound_requeue_stale(*, older_than: timedelta = RETRY_AFTER, limit: int = SWEEP_BATCH) -> int:
    """Queue again the pending messages nobody delivered for `older_than` (a lost task, a
    worker killed mid-delivery, a broker that was down), at most `limit` per call, counting
    each as an attempt; give up on those with `MAX_DELIVERY_ATTEMPTS`. Returns how many were
    queued."""
    cutoff = timezone.now() - older_than
    stale = InboundMessage.objects.filter(status=InboundStatus.PENDING, received_at__lt=cutoff)
    stale.filter(attempts__gte=MAX_DELIVERY_ATTEMPTS).update(
        status=InboundStatus.FAILED,
        problem=f"Gave up after {MAX_DELIVERY_ATTEMPTS} delivery attempts.",
    )
    with transaction.atomic():
        ids = list(
            stale.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=cutoff))
            .order_by("received_at")
            .values_list("pk", flat=True)[:limit]
        )
        InboundMessage.objects.filter(pk__in=ids).update(
            enqueued_at=timezone.now(), attempts=F("attempts") + 1
        )
        for inbound_id in ids:
            transaction.on_commit(lambda inbound_id=inbound_id: _enqueue(inbound_id), robust=True)
    if ids:
        logger.info("smtp spool: %d pending message(s) queued again", len(ids))
    return len(ids)


def inbound_delivery_failed(*, inbound_id: int, problem: str) -> None:
    """Record a failed delivery attempt and why; at `MAX_DELIVERY_ATTEMPTS` the message is
    marked failed (an admin can deliver it again), before that the sweep retries it."""
    with transaction.atomic():
        InboundMessage.objects.filter(pk=inbound_id, status=InboundStatus.PENDING).update(
            problem=problem[:10_000], attempts=F("attempts") + 1
        )
        InboundMessage.objects.filter(
            pk=inbound_id, status=InboundStatus.PENDING, attempts__gte=MAX_DELIVERY_ATTEMPTS
        ).update(status=InboundStatus.FAILED)


@transaction.atomic
def inbound_redeliver(*, inbound: InboundMessage) -> bool:
    """Put a failed message back in the queue with fresh attempts (admin action). Returns
    False if it was not failed."""
    updated = InboundMessage.objects.filter(pk=inbound.pk, status=InboundStatus.FAILED).update(
        status=InboundStatus.PENDING, attempts=0, problem="", enqueued_at=timezone.now()
    )
    if updated:
        transaction.on_commit(lambda: _enqueue(inbound.pk), robust=True)
    return bool(updated)
