"""Telling people when mail stops flowing: admins about mailboxes that stopped syncing, an
agent about their own mailbox that needs them to sign in again."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from crm.alerts import email_admins
from mailsync.models import DelegatedGrant, Mailbox
from mailsync.selectors import mailboxes_stale

logger = logging.getLogger(__name__)


def mailboxes_alert_stale() -> int:
    """One email to the admins listing the mailboxes that have newly stopped syncing; each
    mailbox is reported once until it syncs cleanly again (and again when no admin had an
    address to write to). Returns how many were reported."""
    with transaction.atomic():
        stale = list(
            mailboxes_stale()
            .filter(stale_alert_sent_at__isnull=True)
            .select_related("grant", "team", "owner")
            .select_for_update(of=("self",), skip_locked=True)
            .order_by("address")
        )
        if not stale:
            return 0
        if not email_admins(_stale_subject(stale), _stale_body(stale)):
            return 0  # nobody could be told: try again on the next check
        Mailbox.objects.filter(pk__in=[m.pk for m in stale]).update(
            stale_alert_sent_at=timezone.now()
        )
    return len(stale)


def _stale_subject(stale: list[Mailbox]) -> str:
    if len(stale) == 1:
        return f"Mailbox {stale[0].address} has stopped syncing"
    return f"{len(stale)} mailboxes have stopped syncing"


def _stale_body(stale: list[Mailbox]) -> str:
    minutes = settings.MAILBOX_SYNC_ALERT_MINUTES
    lines = [f"These Microsoft 365 mailboxes have not synced cleanly for {minutes} minutes:", ""]
    for mailbox in stale:
        lines += [f"- {mailbox.address} ({_belongs_to(mailbox)})", f"  {_state(mailbox)}"]
    lines += ["", f"Mailboxes in admin: {_absolute('/admin/mailsync/mailbox/')}"]
    return "\n".join(lines)


def _belongs_to(mailbox: Mailbox) -> str:
    return f"team {mailbox.team}" if mailbox.team_id else f"agent {mailbox.owner}"


def _state(mailbox: Mailbox) -> str:
    grant = getattr(mailbox, "grant", None)
    last = (
        timezone.localtime(mailbox.last_clean_sync_at).strftime("%Y-%m-%d %H:%M %Z")
        if mailbox.last_clean_sync_at
        else "never"
    )
    if grant is not None and grant.reconnect_needed:
        reason = "Reconnect needed: its owner must sign in again from their profile. "
        reason += grant.last_error
    else:
        reason = (mailbox.last_error or "No error recorded: is a worker running?").splitlines()[0]
    return f"Last clean sync: {last}. {reason}"


def _absolute(path: str) -> str:
    return f"{settings.PUBLIC_BASE_URL}{path}" if settings.PUBLIC_BASE_URL else path


def owner_tell_reconnect(*, grant: DelegatedGrant) -> None:
    """Email the owner of a mailbox whose sign-in Microsoft refused for good (once, when it
    happens): only they can connect it again."""
    owner, address = grant.mailbox.owner, grant.mailbox.address
    if owner is None or not owner.email:
        return
    send_mail(
        subject=f"{settings.EMAIL_SUBJECT_PREFIX}Connect your mailbox {address} again",
        message=(
            f"Microsoft no longer accepts the CRM's access to {address}:\n"
            f"{grant.last_error}\n\n"
            "Mail of this mailbox does not reach the CRM until you connect it again: open your "
            f"profile ({_absolute('/profile/')}) and choose “Reconnect”."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[owner.email],
    )
