"""Mail from a case: an agent's reply, reply-all or forward, and the team's automatic
acknowledgement of a new case.

Everything goes out through `mailsync.services.send_message` (Graph for Microsoft 365
mailboxes, the outbound queue and SMTP relay for local ones) from the mailbox the customer
wrote to. The subject carries the case number and the threading headers name the customer's
message, so the answer comes back to the case; the sent copy joins the case through
`case_message_received(direction="outbound")` in the same transaction, before intake could see
it, so it is recorded once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from django.db import transaction
from django.template import Context, Template, TemplateSyntaxError
from django.utils import timezone
from django.utils.html import linebreaks

from cases import intake_rules
from cases.choices import AUTOMATIC_OUTCOMES, IntakeOutcome, MessageDirection
from cases.errors import CaseError
from cases.models import AutoAcknowledgement, AutoAckSent, Case, CaseMessage
from cases.services.intake import case_message_received, is_own_address
from cases.services.macros import signature_html
from crm.errors import ServiceError
from crm.models import Team, User
from mailsync import services as mail
from mailsync.models import Mailbox, Message
from mailsync.services import OutgoingFile

logger = logging.getLogger(__name__)

REPLY_MODES = ("reply", "reply_all")
ACK_PER_RECIPIENT_WINDOW = timedelta(hours=1)


class ReplyRefused(CaseError):
    code = "reply_refused"


# --- agents' replies ---------------------------------------------------------------------------


def case_reply(
    *,
    actor: User,
    case: Case,
    body_html: str,
    mode: str = "reply",
    message: Message | None = None,
    to: Sequence[str] = (),
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    attachments: Sequence[OutgoingFile] = (),
    signature: bool = True,
) -> CaseMessage:
    """Reply (or reply all) to the case's customer, by default to their latest message."""
    if mode not in REPLY_MODES:
        raise ReplyRefused(
            f"“{mode}” is not a way to reply ({', '.join(REPLY_MODES)}).", field="mode"
        )
    original = message or latest_inbound(case)
    if original is None:
        return _new_message(actor, case, body_html, to, cc, bcc, attachments, signature)
    return _send(
        actor, case, original, mode, _with_signature(body_html, actor, signature),
        to=to, cc=cc, bcc=bcc, attachments=attachments,
    )  # fmt: skip


def case_forward(
    *,
    actor: User,
    case: Case,
    body_html: str,
    to: Sequence[str],
    message: Message | None = None,
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    attachments: Sequence[OutgoingFile] = (),
    signature: bool = True,
) -> CaseMessage:
    """Forward a message of the case (default: the latest from the customer) to others."""
    if not to:
        raise ReplyRefused("A forward needs at least one recipient.", field="to")
    original = message or latest_inbound(case) or _latest(case)
    if original is None:
        raise ReplyRefused("This case has no message to forward.", field="message")
    return _send(
        actor, case, original, "forward", _with_signature(body_html, actor, signature),
        to=to, cc=cc, bcc=bcc, attachments=attachments,
    )  # fmt: skip


def latest_inbound(case: Case) -> Message | None:
    """The customer's latest real message on the case (what a reply answers by default)."""
    link = (
        CaseMessage.objects.filter(case=case, direction=MessageDirection.INBOUND)
        .exclude(outcome__in=(IntakeOutcome.BOUNCE, IntakeOutcome.AUTO_REPLY))
        .select_related("message__mailbox")
        .order_by("-created_at")
        .first()
    )
    return link.message if link else None


def _latest(case: Case) -> Message | None:
    link = CaseMessage.objects.filter(case=case).select_related("message").order_by("-pk").first()
    return link.message if link else None


def _send(
    actor: User | None,
    case: Case,
    original: Message,
    mode: str,
    body_html: str,
    *,
    to: Sequence[str],
    cc: Sequence[str],
    bcc: Sequence[str],
    attachments: Sequence[OutgoingFile],
    outcome: str = IntakeOutcome.AGENT_REPLY,
    subject: str = "",
) -> CaseMessage:
    if not CaseMessage.objects.filter(case=case, message=original).exists():
        raise ReplyRefused("That message is not part of this case.", field="message")
    prefix = "Fw: " if mode == "forward" else "Re: "
    subject = subject or subject_with_case_number(_prefixed(prefix, original.subject), case)
    with transaction.atomic():
        sent = _sent_or_refused(
            mailbox=original.mailbox, mode=mode, original=original, body_html=body_html,
            subject=subject, to=to, cc=cc, bcc=bcc, attachments=attachments, actor=actor,
            auto_submitted=outcome in AUTOMATIC_OUTCOMES,
        )  # fmt: skip
        return case_message_received(
            case=case, message=sent, direction=MessageDirection.OUTBOUND, outcome=outcome
        )


def _new_message(actor, case, body_html, to, cc, bcc, attachments, signature) -> CaseMessage:
    """A case opened by hand has no message to answer: write to its customer from the
    team's mailbox."""
    mailbox = _team_mailbox(case.team)
    to = list(to) or _customer_address(case)
    with transaction.atomic():
        sent = _sent_or_refused(
            mailbox=mailbox, mode="new", original=None,
            body_html=_with_signature(body_html, actor, signature),
            subject=subject_with_case_number(case.title, case), to=to, cc=cc, bcc=bcc,
            attachments=attachments, actor=actor,
        )  # fmt: skip
        return case_message_received(
            case=case, message=sent, direction=MessageDirection.OUTBOUND,
            outcome=IntakeOutcome.AGENT_REPLY,
        )  # fmt: skip


def _sent_or_refused(**kwargs) -> Message:
    try:
        return mail.send_message(**kwargs)
    except ServiceError as exc:
        raise ReplyRefused(exc.message, field=exc.field) from exc


def _team_mailbox(team: Team) -> Mailbox:
    mailbox = Mailbox.objects.filter(team=team).order_by("-sync_enabled", "pk").first()
    if mailbox is None:
        raise ReplyRefused(f"The team {team} has no mailbox to send from.", field="mailbox")
    return mailbox


def _customer_address(case: Case) -> list[str]:
    email = case.customer.emails.order_by("-is_primary", "pk").first() if case.customer else None
    if email is None:
        raise ReplyRefused("The case's customer has no address: give a recipient.", field="to")
    return [email.email]


def _prefixed(prefix: str, subject: str) -> str:
    subject = (subject or "").strip()
    for known in ("re:", "aw:", "fw:", "fwd:", "wg:"):
        if subject.lower().startswith(known):
            return subject
    return prefix + subject


def subject_with_case_number(subject: str, case: Case) -> str:
    """The subject with `[CASE-123]` appended unless it names the case already (intake
    threads the customer's answer by it, whatever their mail program does to the headers)."""
    subject = (subject or "").strip()
    if case.number in intake_rules.case_numbers(subject):
        return subject
    return f"{subject} [{case.number}]".strip()


def _with_signature(body_html: str, actor: User | None, wanted: bool) -> str:
    signature = signature_html(actor) if wanted else ""
    if not signature:
        return body_html
    return f'{body_html}<div class="signature"><p>-- <br>{signature}</p></div>'


# --- a workflow rule's email -------------------------------------------------------------------


def case_send_automatic(*, case: Case, subject: str, body_html: str) -> CaseMessage:
    """A workflow rule writes to the customer: an answer to their latest message (or, for a
    case opened by hand, new mail from the team's mailbox), marked Auto-Submitted and
    recorded as the machine's (outcome `automated`: no clock moves, no "agent replied")."""
    original = latest_inbound(case)
    if original is None:
        to = _customer_address(case)
        with transaction.atomic():
            sent = _sent_or_refused(
                mailbox=_team_mailbox(case.team), mode="new", original=None,
                body_html=body_html, subject=subject_with_case_number(subject or case.title, case),
                to=to, cc=(), bcc=(), attachments=(), actor=None, auto_submitted=True,
            )  # fmt: skip
            return case_message_received(
                case=case, message=sent, direction=MessageDirection.OUTBOUND,
                outcome=IntakeOutcome.AUTOMATED,
            )  # fmt: skip
    subject = subject_with_case_number(subject, case) if subject else ""
    return _send(
        None, case, original, "reply", body_html, to=[_answer_address(original)], cc=(),
        bcc=(), attachments=(), outcome=IntakeOutcome.AUTOMATED, subject=subject,
    )  # fmt: skip


def _answer_address(message: Message) -> str:
    """Where an answer to `message` goes: its Reply-To, else its sender."""
    address = message.reply_to[0]["address"] if message.reply_to else message.from_address
    return address.strip().lower()


# --- automatic acknowledgement ------------------------------------------------------------------


def auto_ack_send(*, case_id: int) -> AutoAckSent | None:
    """Acknowledge a new case to the customer who opened it, if the team wants it: never to
    auto-replies, bounces or our own addresses (intake opens no case for those), once per
    case, and at most once an hour per address (a customer opening five cases in a minute
    gets one). Returns what was sent, or None."""
    case = Case.objects.select_related("team", "customer").filter(pk=case_id).first()
    if case is None:
        return None
    config = AutoAcknowledgement.objects.filter(team=case.team_id, enabled=True).first()
    opening = _opening_message(case)
    if config is None or opening is None:
        return None
    recipient = _answer_address(opening)
    if not recipient or is_own_address(recipient) or _acknowledged_lately(recipient):
        return None
    subject, body = render_auto_ack(config, case)
    with transaction.atomic():
        if AutoAckSent.objects.select_for_update().filter(case=case).exists():
            return None
        record = AutoAckSent.objects.create(case=case, recipient=recipient)
        try:
            link = _send(
                None, case, opening, "reply", body, to=[recipient], cc=(), bcc=(),
                attachments=(), outcome=IntakeOutcome.AUTO_ACK, subject=subject,
            )  # fmt: skip
        except ReplyRefused as exc:
            logger.warning("auto-acknowledgement of %s not sent: %s", case.number, exc)
            transaction.set_rollback(True)
            return None
        record.message = link.message
        record.save(update_fields=["message"])
    return record


def _opening_message(case: Case) -> Message | None:
    link = (
        CaseMessage.objects.filter(case=case, outcome=IntakeOutcome.NEW_CASE)
        .select_related("message__mailbox")
        .first()
    )
    return link.message if link else None


def _acknowledged_lately(address: str) -> bool:
    since = timezone.now() - ACK_PER_RECIPIENT_WINDOW
    return AutoAckSent.objects.filter(recipient=address, sent_at__gte=since).exists()


def render_auto_ack(config: AutoAcknowledgement, case: Case) -> tuple[str, str]:
    """(subject, HTML body) from the team's templates; the body's text becomes paragraphs."""
    context = Context({"case": case, "customer": case.customer, "team": case.team})
    subject = Template(config.subject).render(context).strip()
    text = Template(config.body).render(context).strip()
    return subject_with_case_number(subject, case), linebreaks(text, autoescape=True)


def auto_ack_template_problem(text: str) -> str:
    """The syntax error of a template an admin entered, or ''."""
    try:
        Template(text)
    except TemplateSyntaxError as exc:
        return str(exc)
    return ""
