"""Local delivery: a spooled message becomes a `Message` in each local recipient's Inbox, and a
copy in the sender's Sent Items when an agent submitted it through SMTP AUTH or the CRM sent
it from a local mailbox (`relay.relay_submit`).

Local messages fill the same columns Graph sync fills (`mime.ParsedMessage.message_fields`),
get change numbers in their mailbox's container and are announced through
`mailsync.signals.message_ingested` after commit, so everything downstream (intake, ActiveSync,
the API) treats both kinds of mailbox alike.

Delivery is idempotent and all or nothing: the spooled row is locked, skipped once delivered,
and its messages, attachments and `delivered` status are one transaction; a unique constraint
on (mailbox, inbound, sent copy) backs that up. Attachment bytes are written to storage before
the transaction (a file system is not transactional) and removed again if it fails; a worker
killed at that moment can leave an unreferenced file, never a message without its file.

Only local recipients are delivered here; mail the CRM sends to other domains goes through
the outbound queue and the SMTP relay (`mailsync.services.relay`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import groupby

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from crm.changes import change_seq_allocate_many
from crm.models import User
from mailsync import selectors
from mailsync.choices import InboundStatus, WellKnownFolder
from mailsync.mime import ParsedAttachment, ParsedMessage, parse_message
from mailsync.models import Attachment, InboundMessage, Mailbox, MailFolder, Message
from mailsync.services.attachments import storage_name
from mailsync.services.recipient_stats import recipient_stats_soon
from mailsync.signals import message_ingested

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Copy:
    """Where one copy of the message goes."""

    mailbox: Mailbox
    folder: MailFolder
    sent_copy: bool = False


def inbound_deliver(*, inbound_id: int) -> list[Message]:
    """Deliver a spooled message into its local mailboxes; returns the messages created (none
    if it was delivered already, or another worker holds it right now).

    Safe to run any number of times, concurrently too, and after a crash at any point: the
    spooled row is locked with `skip_locked`, so a duplicate task returns at once while
    another worker delivers.
    """
    written: list[str] = []
    try:
        return _deliver(inbound_id, written)
    except BaseException:
        _delete_files(written)
        raise


def _deliver(inbound_id: int, written: list[str]) -> list[Message]:
    with transaction.atomic():
        inbound = (
            InboundMessage.objects.select_for_update(skip_locked=True)
            .filter(pk=inbound_id, status=InboundStatus.PENDING)
            .first()
        )
        if inbound is None:
            return []
        copies = delivery_copies(inbound=inbound)
        if not copies:
            _finish(inbound, InboundStatus.FAILED, "None of its recipients is a local mailbox.")
            return []
        parsed = parse_message(bytes(inbound.raw))
        files = [[_attachment(part, written) for part in parsed.attachments] for _ in copies]
        messages = _create_messages(inbound, parsed, copies)
        for message, attachments in zip(messages, files, strict=True):
            for attachment in attachments:
                attachment.message = message
        Attachment.objects.bulk_create([a for attachments in files for a in attachments])
        _finish(inbound, InboundStatus.DELIVERED, "")
        announced = [(m.pk, m.mailbox_id, copy.folder.well_known) for m, copy in zip(
            messages, copies, strict=True)]  # fmt: skip
        transaction.on_commit(lambda: _announce(announced), robust=True)
        for mailbox_id in sorted({c.mailbox.pk for c in copies if c.sent_copy}):
            recipient_stats_soon(mailbox_id=mailbox_id)
    return messages


def delivery_copies(*, inbound: InboundMessage) -> list[Copy]:
    """Each local recipient's Inbox, and the sender's Sent Items if an agent submitted it from
    a local mailbox they may send as; ordered by mailbox container, the order in which their
    change-number rows are locked (DESIGN.md habit 2)."""
    mailboxes = list(
        selectors.local_mailboxes_for(addresses=inbound.rcpt_tos).select_related("container")
    )
    sender = _sender_mailbox(inbound)
    folders = {
        (folder.mailbox_id, folder.well_known): folder
        for folder in MailFolder.objects.filter(
            mailbox__in=[m.pk for m in mailboxes] + ([sender.pk] if sender else []),
            well_known__in=[WellKnownFolder.INBOX, WellKnownFolder.SENT],
        )
    }
    wanted = [(m, WellKnownFolder.INBOX, False) for m in mailboxes]
    if sender is not None:
        wanted.append((sender, WellKnownFolder.SENT, True))
    copies = []
    for mailbox, role, sent_copy in wanted:
        folder = folders.get((mailbox.pk, role))
        if folder is None:
            logger.warning("local delivery: %s has no %s folder", mailbox, role)
            continue
        copies.append(Copy(mailbox, folder, sent_copy))
    return sorted(copies, key=lambda c: (c.mailbox.container_id, c.sent_copy))


def _sender_mailbox(inbound: InboundMessage) -> Mailbox | None:
    if inbound.submitted_from_id is not None:  # sent from the CRM's own screens or services
        return Mailbox.objects.select_related("container").get(pk=inbound.submitted_from_id)
    if inbound.authenticated_user_id is None or not inbound.mail_from:
        return None
    user = User.objects.filter(pk=inbound.authenticated_user_id).first()
    if user is None:
        return None
    sender = selectors.local_sender_mailbox(user=user, address=inbound.mail_from)
    return Mailbox.objects.select_related("container").get(pk=sender.pk) if sender else None


def _create_messages(
    inbound: InboundMessage, parsed: ParsedMessage, copies: list[Copy]
) -> list[Message]:
    """Precondition: inside the delivery transaction. Takes each mailbox's change numbers (a
    lock on its container row until commit), containers in the order of `copies`."""
    numbers: list[int] = []
    for _, group in groupby(copies, key=lambda c: c.mailbox.container_id):
        group = list(group)
        numbers += change_seq_allocate_many(group[0].mailbox.container, len(group))
    messages = [
        _message(inbound, parsed, copy, number)
        for copy, number in zip(copies, numbers, strict=True)
    ]
    return Message.objects.bulk_create(messages)


def _message(inbound: InboundMessage, parsed: ParsedMessage, copy: Copy, number: int) -> Message:
    fields = parsed.message_fields()
    # We are the final delivery agent, so the envelope sender becomes Return-Path (RFC 5321
    # 4.4); "<>" tells intake the message is a bounce or another automatic reply.
    fields["headers"]["return-path"] = f"<{inbound.mail_from}>"
    fields["bcc"] = _sender_bcc(inbound, parsed) if copy.sent_copy else []
    return Message(
        mailbox=copy.mailbox,
        folder=copy.folder,
        inbound=inbound,
        sent_copy=copy.sent_copy,
        change_container=copy.mailbox.container,
        change_seq=number,
        received_at=inbound.received_at,
        is_read=copy.sent_copy,
        **fields,
    )


def _sender_bcc(inbound: InboundMessage, parsed: ParsedMessage) -> list[dict[str, str]]:
    """Only the sender sees Bcc: the envelope recipients not named in To or Cc."""
    named = {a["address"] for a in parsed.to + parsed.cc + parsed.bcc}
    hidden = [
        {"name": "", "address": address.lower()}
        for address in dict.fromkeys(a.strip().lower() for a in inbound.rcpt_tos)
        if address and address not in named
    ]
    return parsed.bcc + hidden


def _attachment(part: ParsedAttachment, written: list[str]) -> Attachment:
    """An unsaved Attachment with its bytes in storage (under a safe name of our own: the
    sender's file name is only shown, never used as a path)."""
    attachment = Attachment(
        name=part.name,
        content_type=part.content_type,
        size=part.size,
        is_inline=part.is_inline,
        content_id=part.content_id,
        fetched_at=timezone.now(),
    )
    attachment.content.save(storage_name(part.name), ContentFile(part.content), save=False)
    written.append(attachment.content.name)
    return attachment


def _finish(inbound: InboundMessage, status: str, problem: str) -> None:
    """Precondition: inside the delivery transaction, holding the row's lock."""
    inbound.status = status
    inbound.problem = problem
    inbound.delivered_at = timezone.now() if status == InboundStatus.DELIVERED else None
    InboundMessage.objects.filter(pk=inbound.pk).update(
        status=status, problem=problem, delivered_at=inbound.delivered_at,
        attempts=F("attempts") + 1,
    )  # fmt: skip


def _announce(messages: list[tuple[int, int, str]]) -> None:
    """After commit; a receiver that fails for one message does not silence the others."""
    for message_id, mailbox_id, role in messages:
        try:
            message_ingested.send(
                sender=Message, message_id=message_id, mailbox_id=mailbox_id, folder_role=role
            )
        except Exception:
            logger.exception("local delivery: announcing message %s failed", message_id)


def _delete_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("local delivery: could not remove %s", name)
