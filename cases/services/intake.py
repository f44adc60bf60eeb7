"""Email intake: every stored mail message (Graph sync or SMTP alike) finds its case.

`message_intake` runs once per message in the worker (from the `message_ingested` seam of the
mail app). It is idempotent: the message row is locked and a `CaseMessage` row records the
decision, so running it again changes nothing.

Threading, in this order: a case number in the subject, `In-Reply-To`/`References` against
the Message-ID table, the Microsoft 365 conversation id; otherwise a new case for the team that
owns the mailbox. Auto-replies, bounces and mail from our own addresses never open cases; a
bounce is attached to the case whose message bounced. A reply to a resolved case, or to a
closed one within the team's reopen window, reopens it; later, it opens a follow-up case.
Everything that joins a case goes through `case_message_received`, the one place the SLA and
workflow issues hook into.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from cases import intake_rules, selectors
from cases.choices import (
    AUTOMATIC_OUTCOMES,
    CaseStatus,
    IntakeOutcome,
    LinkKind,
    MessageDirection,
    RuleTrigger,
    TimelineKind,
)
from cases.errors import CaseError, DuplicateEmail, ReopenWindowPassed
from cases.models import Case, CaseLink, CaseMessage, CaseMessageId, Customer
from cases.services.cases import case_change_status, case_create, case_url, validate_transition
from cases.services.customers import customer_create
from cases.services.sla import sla_refresh
from cases.services.timeline import timeline_record
from cases.services.triage import triage_suggest
from cases.workflow.engine import workflow_record
from crm.db import equals_ignoring_case
from crm.models import NotificationKind, Team
from crm.notifications import notify
from mailsync.choices import WellKnownFolder
from mailsync.models import Mailbox, Message

logger = logging.getLogger(__name__)

MAX_TITLE = 300
AUTOMATIC_SUMMARY = {
    IntakeOutcome.AUTO_ACK: "Automatic acknowledgement sent",
    IntakeOutcome.AUTOMATED: "Email sent by a workflow rule",
}
# Intake reads neither the HTML body nor the recipient lists (a message may have 500); they
# would only be transferred and decoded.
UNUSED_MESSAGE_FIELDS = ("body_html", "to", "cc", "bcc", "reply_to", "preview", "parse_problems")


def message_intake(*, message_id: int) -> CaseMessage | None:
    """Decide and record where one message belongs; None if it is not for intake (gone,
    a draft, or waiting between folders)."""
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(of=("self",))
            .select_related("mailbox__team", "folder")
            .defer(*UNUSED_MESSAGE_FIELDS)
            .filter(pk=message_id)
            .first()
        )
        if message is None or message.folder_id is None or message.is_draft:
            return None
        done = CaseMessage.objects.filter(message=message).first()
        if done is not None:
            return done
        return _decide(message)


def _decide(message: Message) -> CaseMessage:
    mailbox = message.mailbox
    sender = message.from_address.lower()
    outbound = _is_outbound(message)
    direction = MessageDirection.OUTBOUND if outbound else MessageDirection.INBOUND
    kind = intake_rules.classify(headers=message.headers, subject=message.subject, sender=sender)
    if kind.kind == "bounce" or message.is_bounce:
        return _bounce(message, sender, kind.reason or "delivery status notification")
    case = _thread(message)
    if outbound or mailbox.team_id is None:
        # Our own mail (Sent Items, our addresses) and agents' personal mail join a case they
        # name, and never open one.
        if case is None:
            why = "our own message" if outbound else "a personal mailbox"
            return _record(message, None, direction, IntakeOutcome.NOT_THREADED, sender, why)
        return case_message_received(case=case, message=message, direction=direction)
    if kind.kind == "auto_reply":
        if case is not None:  # kept with its case, without reopening it or moving a clock
            return _record(message, case, direction, IntakeOutcome.AUTO_REPLY, sender, kind.reason)
        return _record(message, None, direction, IntakeOutcome.AUTO_REPLY, sender, kind.reason)
    if not sender:
        return _record(message, case, direction, IntakeOutcome.NO_SENDER, sender, "no From")
    if case is not None:
        return _customer_reply(case, message, sender)
    if _over_rate(sender):
        return _record(message, None, direction, IntakeOutcome.RATE_LIMITED, sender,
                       f"more than {settings.INTAKE_MAX_NEW_CASES_PER_SENDER_HOUR} new cases "
                       "in an hour")  # fmt: skip
    new_case = _open_case(message, team=mailbox.team, sender=sender)
    return case_message_received(
        case=new_case, message=message, direction=direction, outcome=IntakeOutcome.NEW_CASE
    )


def _is_outbound(message: Message) -> bool:
    if message.folder.well_known in (WellKnownFolder.SENT, WellKnownFolder.DRAFTS):
        return True
    return is_own_address(message.from_address)


def is_own_address(address: str) -> bool:
    """A mailbox we sync or host, or a team's address: mail from there is ours."""
    address = address.strip().lower()
    if not address:
        return False
    mailboxes = Mailbox.objects.filter(equals_ignoring_case("address", address)).values("pk")
    teams = Team.objects.filter(equals_ignoring_case("email", address)).values("pk")
    return mailboxes.union(teams).exists()  # one query on intake's hot path


# --- threading ----------------------------------------------------------------------------


def _thread(message: Message) -> Case | None:
    case = _by_case_number(message.subject) or _by_message_ids(message) or _by_conversation(message)
    return _follow_merges(case) if case is not None else None


def _by_case_number(subject: str) -> Case | None:
    for number in intake_rules.case_numbers(subject):  # normalised: the unique index serves it
        case = Case.objects.filter(number=number).first()
        if case is not None:
            return case
    return None


def _by_message_ids(message: Message) -> Case | None:
    ids = intake_rules.thread_ids(in_reply_to=message.in_reply_to, references=message.references)
    if not ids:
        return None
    rows = CaseMessageId.objects.filter(message_id__in=ids).select_related("case")
    found = {row.message_id: row.case for row in rows.order_by("created_at")}  # newest wins
    # the nearest ancestor wins
    return next((found[message_id] for message_id in ids if message_id in found), None)


def _by_conversation(message: Message) -> Case | None:
    if not message.conversation_id:
        return None
    link = (
        CaseMessage.objects.filter(
            case__isnull=False,
            message__mailbox_id=message.mailbox_id,
            message__conversation_id=message.conversation_id,
        )
        .order_by("-created_at")
        .first()
    )
    return link.case if link else None


def _follow_merges(case: Case) -> Case:
    seen = set()
    while case.merged_into_id is not None and case.pk not in seen:
        seen.add(case.pk)
        case = Case.objects.get(pk=case.merged_into_id)
    return case


# --- customers' messages --------------------------------------------------------------------


def _customer_reply(case: Case, message: Message, sender: str) -> CaseMessage:
    """A customer wrote into an existing case: it reopens, moves on, or starts a follow-up."""
    if case.status in (CaseStatus.RESOLVED, CaseStatus.CLOSED):
        try:
            validate_transition(case=case, status=CaseStatus.IN_PROGRESS)
        except ReopenWindowPassed:
            follow_up = _open_case(message, team=case.team, sender=sender, parent=case)
            CaseLink.objects.get_or_create(
                from_case=follow_up, to_case=case, defaults={"kind": LinkKind.FOLLOW_UP}
            )
            return case_message_received(
                case=follow_up, message=message, direction=MessageDirection.INBOUND,
                outcome=IntakeOutcome.FOLLOW_UP,
            )  # fmt: skip
        case_change_status(actor=None, case=case, status=CaseStatus.IN_PROGRESS)
        record = case_message_received(
            case=case, message=message, direction=MessageDirection.INBOUND,
            outcome=IntakeOutcome.REOPENED,
        )  # fmt: skip
        _notify_assignee_of_reply(case, message, sender)
        return record
    if case.status == CaseStatus.AWAITING_CUSTOMER:  # the customer answered: back to work
        case_change_status(actor=None, case=case, status=CaseStatus.IN_PROGRESS)
    record = case_message_received(case=case, message=message, direction=MessageDirection.INBOUND)
    _notify_assignee_of_reply(case, message, sender)
    return record


def _notify_assignee_of_reply(case: Case, message: Message, sender: str) -> None:
    """Notifications (issue 12): the assignee hears that their customer wrote. No query for an
    unassigned case."""
    if case.assignee_id is None:
        return
    notify(
        recipients=[case.assignee_id],
        kind=NotificationKind.CUSTOMER_REPLY,
        title=f"{case.number}: {message.from_name or sender} replied",
        body=f"{message.subject or '(no subject)'}\n{message.body_text[:300]}",
        url=case_url(case),
    )


def _open_case(message: Message, *, team: Team, sender: str, parent: Case | None = None) -> Case:
    customer = customer_for_address(address=sender, name=message.from_name)
    title = (message.subject or "").strip() or f"(no subject) from {sender}"
    return case_create(
        actor=None,
        title=title[:MAX_TITLE],
        team=team,
        description=message.body_text[:20_000],
        channel="email",
        customer=customer,
        parent=parent,
        triage=triage_suggest(subject=message.subject, body=message.body_text, sender=sender),
    )


def customer_for_address(*, address: str, name: str = "") -> Customer | None:
    """The customer with this address, created (matched to an organization by domain) if new;
    None for an address no customer can have (`jürgen@münchen.example`: the case opens
    without a customer, and the agent can attach one).

    Two intakes may meet a new sender at once: the loser of the unique address finds the
    winner's customer.
    """
    found = selectors.customer_by_email(address)
    if found is not None:
        return found
    try:  # customer_create is atomic: its savepoint undoes the loser's half
        return customer_create(name=name, emails=[address])
    except (IntegrityError, DuplicateEmail):
        return selectors.customer_by_email(address)
    except CaseError as exc:
        logger.info("intake: no customer for %r: %s", address, exc.message)
        return None


def _over_rate(sender: str) -> bool:
    """A flood (a broken script, a loop we did not recognise) opens a bounded number of cases."""
    since = timezone.now() - timedelta(hours=1)
    opened = CaseMessage.objects.filter(
        sender=sender,
        outcome__in=(IntakeOutcome.NEW_CASE, IntakeOutcome.RATE_LIMITED),
        created_at__gte=since,
    ).count()
    return opened >= settings.INTAKE_MAX_NEW_CASES_PER_SENDER_HOUR


# --- bounces -----------------------------------------------------------------------------------


def _bounce(message: Message, sender: str, reason: str) -> CaseMessage:
    """A bounce belongs to the case whose outgoing message bounced, if we can tell which."""
    ids = intake_rules.bounced_message_ids(
        in_reply_to=message.in_reply_to, references=message.references, body=message.body_text
    )
    if message.bounce_of_message_id:  # the SMTP listener read it from the report's parts
        ids.insert(0, message.bounce_of_message_id)
    link = CaseMessageId.objects.filter(message_id__in=ids).select_related("case").first()
    case = _follow_merges(link.case) if link else None
    record = _record(message, case, MessageDirection.INBOUND, IntakeOutcome.BOUNCE, sender, reason)
    if case is not None:
        timeline_record(
            case=case, kind=TimelineKind.BOUNCE_RECEIVED, actor=None,
            summary=f"Bounce: {message.subject or 'delivery failed'}", message=message.pk,
        )  # fmt: skip
    return record


# --- the one place a message joins a case ------------------------------------------------------


def case_message_received(
    *,
    case: Case,
    message: Message,
    direction: str,
    outcome: str = IntakeOutcome.THREADED,
) -> CaseMessage:
    """A message joined `case`: record it, index its Message-ID, write the timeline and move
    the response clocks (an inbound message starts the next-response clock if it is not
    running; an outbound one is the team's response).

    An automatic acknowledgement (outcome `auto_ack`) is recorded but moves no clock.

    The SLA and workflow issues hook in here. Precondition: inside the caller's transaction.
    """
    at = _message_time(message)
    record = _record(message, case, direction, outcome, message.from_address.lower(), "")
    if message.internet_message_id:
        CaseMessageId.objects.bulk_create(
            [CaseMessageId(message_id=message.internet_message_id, case=case)],
            ignore_conflicts=True,
        )
    moment = Value(at)
    if direction == MessageDirection.INBOUND:
        clocks = {
            "last_inbound_at": Coalesce(Greatest("last_inbound_at", moment), moment),
            "waiting_since": Coalesce("waiting_since", moment),
        }
        kind, summary = TimelineKind.MESSAGE_RECEIVED, f"Email from {message.from_address}"
    elif outcome in AUTOMATIC_OUTCOMES:  # the machine wrote, not the team
        clocks = {}
        kind, summary = TimelineKind.MESSAGE_SENT, AUTOMATIC_SUMMARY[outcome]
    else:
        clocks = {
            "last_outbound_at": Coalesce(Greatest("last_outbound_at", moment), moment),
            "first_response_at": Coalesce("first_response_at", moment),
            "waiting_since": None,
        }
        kind, summary = TimelineKind.MESSAGE_SENT, f"Email sent from {message.mailbox.address}"
    # One UPDATE computes the clocks from the row as it is (it takes the row's lock), so
    # concurrent intakes of one case cannot lose each other's times.
    Case.objects.filter(pk=case.pk).update(**clocks, updated_at=timezone.now())
    if clocks and outcome not in (IntakeOutcome.NEW_CASE, IntakeOutcome.FOLLOW_UP):
        sla_refresh(case=case)  # a new case's targets were set when it was created
    timeline_record(
        case=case, kind=kind, actor=None,
        summary=f"{summary}: {message.subject or '(no subject)'}",
        message=message.pk, direction=direction, outcome=outcome,
    )  # fmt: skip
    if outcome not in AUTOMATIC_OUTCOMES:
        trigger = (
            RuleTrigger.CUSTOMER_MESSAGE
            if direction == MessageDirection.INBOUND
            else RuleTrigger.AGENT_REPLIED
        )
        workflow_record(case=case, trigger=trigger, message_id=message.pk)
    return record


def _message_time(message: Message) -> datetime:
    return message.received_at or message.sent_at or timezone.now()


def _record(
    message: Message, case: Case | None, direction: str, outcome: str, sender: str, reason: str
) -> CaseMessage:
    return CaseMessage.objects.create(
        message=message, case=case, direction=direction, outcome=outcome,
        sender=sender[:320], reason=reason[:300],
    )  # fmt: skip
