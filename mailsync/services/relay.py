"""Sending from a local mailbox: the message is built here (our Message-ID and threading
headers), spooled and delivered like mail the SMTP listener accepted, so the sender's Sent
Items copy and local recipients' copies are made by local delivery, and what goes to external
recipients waits in the outbound queue until a worker hands it to the configured SMTP relay.

The queue is durable: the row is written in the transaction that stores the Sent Items copy,
and a worker sends it after commit. A relay that is down or answers 4xx is retried with
backoff (RELAY_RETRY_SCHEDULE); a 5xx for every recipient, or retries running out, marks the
message failed, visible in admin with the relay's answer. Recipients a relay refuses while it
accepts others are recorded on the row.
"""

from __future__ import annotations

import email.policy
import html
import logging
import re
import smtplib
import ssl
from collections.abc import Sequence
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.html import strip_tags

from crm.models import User
from mailsync import selectors
from mailsync.choices import OutboundStatus
from mailsync.errors import MailboxError
from mailsync.models import InboundMessage, Mailbox, Message, OutboundMessage, SmtpRelay
from mailsync.services.local import inbound_deliver

logger = logging.getLogger(__name__)

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_BLOCK_END = re.compile(r"</(p|div|li|tr|h[1-6]|blockquote)>", re.IGNORECASE)
_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")
# Minutes to wait before each retry of a temporary failure: about 26 hours in all, as MTAs do.
RELAY_RETRY_SCHEDULE = (1, 5, 15, 30, 60, 120, 240, 480, 600)


def relay_submit(
    *,
    mailbox: Mailbox,
    subject: str,
    body_html: str,
    to: Sequence[str],
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    original: Message | None = None,
    mode: str = "new",
    attachments: Sequence = (),
    actor: User | None = None,
    auto_submitted: bool = False,
) -> Message:
    """Build, store and queue a message from a local mailbox; returns its Sent Items copy.
    A reply without recipients goes to the original's Reply-To or sender (reply all: and
    everyone else it was sent to, except this mailbox).

    Precondition: the caller checked mode, original and recipients (`sending._check`).
    """
    if mode in ("reply", "reply_all") and not to and original is not None:
        to, cc = _reply_recipients(mailbox, original, everyone=mode == "reply_all")
    relay = SmtpRelay.objects.filter(is_default=True).first()
    recipients = _unique([*to, *cc, *bcc])
    local = {m.address.lower() for m in selectors.local_mailboxes_for(addresses=recipients)}
    external = [address for address in recipients if address.lower() not in local]
    if external and relay is None:
        raise MailboxError(
            "No SMTP relay is configured for mail to other domains: add one in admin "
            "(Mail → SMTP relays) and make it the default.",
            field="mailbox",
        )
    mime = _compose(mailbox, subject, body_html, to, cc, original, mode, attachments)
    if auto_submitted:
        mime["Auto-Submitted"] = "auto-replied"
    raw = mime.as_bytes(policy=email.policy.SMTP)  # CRLF line ends, as on the wire
    with transaction.atomic():
        inbound = InboundMessage.objects.create(
            raw=raw, size=len(raw), mail_from=mailbox.address,
            rcpt_tos=[a for a in recipients if a.lower() in local], peer="crm",
            submitted_from=mailbox, authenticated_user=actor,
        )  # fmt: skip
        sent = _sent_copy(inbound_deliver(inbound_id=inbound.pk), mailbox)
        if external:
            outbound = OutboundMessage.objects.create(
                mailbox=mailbox, message=sent, relay=relay, mail_from=mailbox.address,
                rcpt_tos=external, raw=raw, internet_message_id=sent.internet_message_id,
            )  # fmt: skip
            transaction.on_commit(lambda: _schedule(outbound.pk))
    return sent


def _reply_recipients(
    mailbox: Mailbox, original: Message, *, everyone: bool
) -> tuple[list[str], list[str]]:
    author = [a["address"] for a in original.reply_to] or [original.from_address]
    if not everyone:
        return author, []
    ours = mailbox.address.lower()
    others = [a["address"] for a in original.to if a["address"].lower() != ours]
    cc = [a["address"] for a in original.cc if a["address"].lower() != ours]
    return _unique([*author, *others]), _unique(cc)


def _unique(addresses: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(a.strip() for a in addresses if a and a.strip()))


def _sent_copy(messages: list[Message], mailbox: Mailbox) -> Message:
    for message in messages:
        if message.mailbox_id == mailbox.pk and message.sent_copy:
            return message
    raise MailboxError(f"{mailbox.address} has no Sent Items folder to keep the sent copy in.")


def _compose(mailbox, subject, body_html, to, cc, original, mode, attachments) -> EmailMessage:
    mime = EmailMessage()
    mime["From"] = formataddr((mailbox.display_name, mailbox.address))
    if to:
        mime["To"] = ", ".join(to)
    if cc:
        mime["Cc"] = ", ".join(cc)
    mime["Subject"] = subject or _derived_subject(original, mode)
    mime["Date"] = format_datetime(timezone.now())
    mime["Message-ID"] = make_msgid(domain=mailbox.address.rpartition("@")[2])
    if original is not None and original.internet_message_id and mode != "forward":
        mime["In-Reply-To"] = original.internet_message_id
        mime["References"] = " ".join([*original.references.split(), original.internet_message_id])
    mime.set_content(html_to_text(body_html))
    mime.add_alternative(body_html, subtype="html")
    for file in attachments:
        maintype, _, subtype = file.content_type.partition("/")
        mime.add_attachment(
            file.content, maintype=maintype or "application",
            subtype=subtype or "octet-stream", filename=file.name,
        )  # fmt: skip
    return mime


def html_to_text(body_html: str) -> str:
    """The plain-text alternative: paragraphs and line breaks kept, tags and entities gone."""
    text = _BREAK.sub("\n", body_html)
    text = _BLOCK_END.sub("\n\n", text)
    text = html.unescape(strip_tags(text))
    return _BLANK_LINES.sub("\n\n", text).strip() + "\n"


def _derived_subject(original: Message | None, mode: str) -> str:
    if original is None:
        return ""
    prefix = "Fw: " if mode == "forward" else "Re: "
    subject = original.subject or ""
    return subject if subject.lower().startswith(prefix.lower()) else prefix + subject


def _schedule(outbound_id: int) -> None:
    from mailsync.tasks import relay_outbound

    relay_outbound.delay(outbound_id)


# --- the worker's side -------------------------------------------------------------------------


def outbound_relay(*, outbound_id: int) -> str:
    """Hand one queued message to its relay; returns its status afterwards. The row is locked
    (skip_locked) for the attempt, so a duplicate task returns at once."""
    with transaction.atomic():
        outbound = (
            OutboundMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("relay")
            .filter(pk=outbound_id, status=OutboundStatus.QUEUED)
            .first()
        )
        if outbound is None:
            return ""
        try:
            refused = _deliver(outbound)
        except smtplib.SMTPRecipientsRefused as exc:
            _failed_or_retry(outbound, exc.recipients)
        except (smtplib.SMTPException, OSError) as exc:
            _retry_or_fail(outbound, _describe(exc), permanent=_permanent(exc))
        else:
            _sent(outbound, refused)
        return outbound.status


def _deliver(outbound: OutboundMessage) -> dict[str, tuple[int, bytes]]:
    relay = outbound.relay or SmtpRelay.objects.filter(is_default=True).first()
    if relay is None:
        raise smtplib.SMTPException("No SMTP relay is configured.")
    with _connect(relay) as smtp:
        if relay.username:
            smtp.login(relay.username, relay.password)
        return smtp.sendmail(outbound.mail_from, outbound.rcpt_tos, bytes(outbound.raw))


def _connect(relay: SmtpRelay) -> smtplib.SMTP:
    context = ssl.create_default_context()
    if settings.SMTP_RELAY_CA_BUNDLE:
        context.load_verify_locations(settings.SMTP_RELAY_CA_BUNDLE)
    if relay.security == "tls":
        return smtplib.SMTP_SSL(
            relay.host, relay.port, timeout=relay.timeout_seconds, context=context
        )
    smtp = smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout_seconds)
    if relay.security == "starttls":
        smtp.starttls(context=context)
    return smtp


def _permanent(exc: Exception) -> bool:
    """A 5xx answer (other than to the connection itself) will not change on a retry."""
    code = getattr(exc, "smtp_code", None)
    return isinstance(code, int) and 500 <= code < 600


def _describe(exc: Exception) -> str:
    code, error = getattr(exc, "smtp_code", None), getattr(exc, "smtp_error", None)
    if code is not None:
        return f"{code} {_text(error)}"
    return f"{type(exc).__name__}: {exc}"


def _failed_or_retry(outbound: OutboundMessage, refused: dict) -> None:
    """Every recipient refused: permanent if every answer was 5xx."""
    outbound.refused = _refusals(refused)
    permanent = all(500 <= code < 600 for code, _ in refused.values())
    _retry_or_fail(outbound, "The relay refused every recipient.", permanent=permanent)


def _refusals(refused: dict) -> dict[str, str]:
    return {address: f"{code} {_text(message)}" for address, (code, message) in refused.items()}


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _retry_or_fail(outbound: OutboundMessage, error: str, *, permanent: bool) -> None:
    outbound.attempts += 1
    outbound.last_error = error[:2000]
    if permanent or outbound.attempts > len(RELAY_RETRY_SCHEDULE):
        outbound.status = OutboundStatus.FAILED
        logger.warning("relay: %s failed for good: %s", outbound, error)
    else:
        wait = RELAY_RETRY_SCHEDULE[outbound.attempts - 1]
        outbound.next_attempt_at = timezone.now() + timedelta(minutes=wait)
        logger.info("relay: %s: %s; retry in %d min", outbound, error, wait)
    outbound.save(update_fields=["attempts", "last_error", "status", "next_attempt_at", "refused"])


def _sent(outbound: OutboundMessage, refused: dict) -> None:
    outbound.attempts += 1
    outbound.status, outbound.sent_at = OutboundStatus.SENT, timezone.now()
    outbound.refused = _refusals(refused)
    outbound.last_error = "Some recipients were refused." if refused else ""
    outbound.save(update_fields=["attempts", "status", "sent_at", "refused", "last_error"])


def outbound_due() -> list[int]:
    """Queued messages whose next attempt is due (beat's sweep, and retries)."""
    return list(
        OutboundMessage.objects.filter(
            status=OutboundStatus.QUEUED, next_attempt_at__lte=timezone.now()
        ).values_list("pk", flat=True)[:500]
    )


def outbound_retry_now(*, outbound: OutboundMessage) -> None:
    """Admin: try a queued or failed message again at once."""
    OutboundMessage.objects.filter(pk=outbound.pk).update(
        status=OutboundStatus.QUEUED, next_attempt_at=timezone.now()
    )
    transaction.on_commit(lambda: _schedule(outbound.pk))
