"""Email intake: every message threads into the right case, noise opens none, and running it
again changes nothing."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from cases import intake_rules, services
from cases.choices import CaseStatus, IntakeOutcome
from cases.models import Case, CaseLink, CaseMessage, Customer, TimelineEvent
from mailsync.models import Message
from mailsync.services import mailbox_connect
from tests.cases.factories import OrganizationFactory

pytestmark = pytest.mark.django_db
SUPPORT = "help@crm.example"
_ids = itertools.count(1)


@pytest.fixture
def mailbox(team):
    return mailbox_connect(address=SUPPORT, team=team, local=True)


def deliver(mailbox, *, folder="inbox", subject="Printer on fire", sender="anna@nordwind.example",
            headers=None, in_reply_to="", references="", conversation="", body="Please help",
            received_at=None) -> Message:  # fmt: skip
    """A stored message, as the SMTP listener or the Graph sync leaves it."""
    n = next(_ids)
    return Message.objects.create(
        mailbox=mailbox,
        folder=mailbox.folders.get(well_known=folder),
        subject=subject,
        from_address=sender,
        from_name="Anna Berg",
        to=[{"name": "", "address": SUPPORT}],
        body_text=body,
        internet_message_id=f"<m{n}@nordwind.example>",
        in_reply_to=in_reply_to,
        references=references,
        conversation_id=conversation,
        headers=headers or {},
        received_at=received_at or timezone.now(),
    )


def intake(message) -> CaseMessage:
    return services.message_intake(message_id=message.pk)


def test_a_new_customer_message_opens_a_case_for_the_mailbox_team(mailbox, team):
    organization = OrganizationFactory(name="Nordwind")
    services.organization_set_domains(organization=organization, domains=["nordwind.example"])

    link = intake(deliver(mailbox))

    case = Case.objects.get(pk=link.case_id)
    assert link.outcome == IntakeOutcome.NEW_CASE
    assert (case.team, case.title, case.channel) == (team, "Printer on fire", "email")
    assert case.customer.emails.get().email == "anna@nordwind.example"
    assert case.customer.name == "Anna Berg"
    assert case.organization == organization
    assert case.waiting_since is not None
    kinds = list(case.timeline.values_list("kind", flat=True))
    assert kinds == ["created", "message_received"]


def test_intake_twice_changes_nothing(mailbox):
    message = deliver(mailbox)

    first = intake(message)
    second = intake(message)

    assert first.pk == second.pk
    assert Case.objects.count() == 1
    assert TimelineEvent.objects.filter(kind="message_received").count() == 1


def test_a_reply_threads_by_in_reply_to_then_references(mailbox):
    original = intake(deliver(mailbox))
    reply = deliver(
        mailbox, subject="Re: something else", in_reply_to=original.message.internet_message_id
    )
    later = deliver(mailbox, subject="More", references=f"<unknown@x> {reply.internet_message_id}")

    assert intake(reply).case == original.case
    assert intake(later).case == original.case
    assert Case.objects.count() == 1


def test_the_case_number_in_the_subject_wins(mailbox):
    first = intake(deliver(mailbox)).case
    other = intake(deliver(mailbox, subject="Another matter", sender="bo@example.org")).case

    other_id = other.messages.get().message.internet_message_id
    link = intake(deliver(mailbox, subject=f"Re: [{first.number}] printer", in_reply_to=other_id))

    assert link.case == first


def test_the_conversation_id_threads_what_has_no_headers(mailbox):
    first = intake(deliver(mailbox, conversation="AAQkAD-conv-1")).case

    link = intake(deliver(mailbox, subject="RE: Printer", conversation="AAQkAD-conv-1"))

    assert link.case == first


def test_a_merged_case_number_leads_to_the_case_it_went_into(mailbox, agent):
    source = intake(deliver(mailbox)).case
    target = intake(deliver(mailbox, subject="Same printer", sender="bo@example.org")).case
    services.case_merge(actor=agent, source=source, target=target)

    assert intake(deliver(mailbox, subject=f"RE: [{source.number}]")).case == target


def test_a_customer_reply_reopens_a_resolved_case_and_moves_awaiting_customer_on(mailbox, agent):
    case = intake(deliver(mailbox)).case
    services.case_change_status(actor=agent, case=case, status=CaseStatus.RESOLVED)

    link = intake(deliver(mailbox, subject=f"RE: [{case.number}]"))
    case.refresh_from_db()
    assert (link.outcome, case.status) == (IntakeOutcome.REOPENED, CaseStatus.IN_PROGRESS)

    services.case_change_status(actor=agent, case=case, status=CaseStatus.AWAITING_CUSTOMER)
    intake(deliver(mailbox, subject=f"RE: [{case.number}]"))
    case.refresh_from_db()
    assert case.status == CaseStatus.IN_PROGRESS


def test_after_the_reopen_window_a_reply_opens_a_linked_follow_up(mailbox, agent, team):
    case = intake(deliver(mailbox)).case
    services.case_change_status(actor=agent, case=case, status=CaseStatus.CLOSED)
    Case.objects.filter(pk=case.pk).update(closed_at=timezone.now() - timedelta(days=30))

    link = intake(deliver(mailbox, subject=f"RE: [{case.number}] still broken"))

    follow_up = link.case
    assert link.outcome == IntakeOutcome.FOLLOW_UP
    assert follow_up != case
    assert follow_up.parent == case
    assert CaseLink.objects.filter(from_case=follow_up, to_case=case, kind="follow_up").exists()
    case.refresh_from_db()
    assert case.status == CaseStatus.CLOSED


@pytest.mark.parametrize(
    ("headers", "subject"),
    [
        ({"auto-submitted": "auto-replied"}, "Re: Printer"),
        ({"x-auto-response-suppress": "All"}, "Re: Printer"),
        ({"precedence": "bulk"}, "Newsletter"),
        ({"list-id": "<announce.lists.example>"}, "Announcement"),
        ({}, "Automatic reply: Printer on fire"),
        ({}, "Out of Office: back Monday"),
        ({}, "Abwesenheitsnotiz: Urlaub"),
    ],
)
def test_auto_replies_never_open_cases(mailbox, headers, subject):
    link = intake(deliver(mailbox, headers=headers, subject=subject))

    assert link.outcome == IntakeOutcome.AUTO_REPLY
    assert link.case is None
    assert not Case.objects.exists()


def test_an_auto_reply_in_a_thread_stays_with_the_case_without_reopening_it(mailbox, agent):
    case = intake(deliver(mailbox)).case
    services.case_change_status(actor=agent, case=case, status=CaseStatus.RESOLVED)

    link = intake(deliver(mailbox, subject=f"Automatic reply: [{case.number}]",
                          headers={"auto-submitted": "auto-replied"}))  # fmt: skip

    case.refresh_from_db()
    assert (link.case, link.outcome, case.status) == (case, IntakeOutcome.AUTO_REPLY, "resolved")


def test_a_bounce_is_attached_to_the_case_whose_message_bounced(mailbox):
    case = intake(deliver(mailbox)).case
    sent = deliver(mailbox, folder="sentitems", subject=f"RE: [{case.number}]", sender=SUPPORT)
    assert intake(sent).case == case
    report = f"Reporting-MTA: dns; mx.example\n\nMessage-ID: {sent.internet_message_id}\n"

    dsn = {"content-type": "multipart/report; report-type=delivery-status"}
    link = intake(deliver(mailbox, subject="Undeliverable: RE: Printer",
                          sender="postmaster@x.example", headers=dsn, body=report))  # fmt: skip

    assert (link.outcome, link.case) == (IntakeOutcome.BOUNCE, case)
    assert case.timeline.filter(kind="bounce_received").exists()
    assert Case.objects.count() == 1


def test_mail_from_our_own_addresses_opens_no_case(mailbox, team):
    team.email = "billing@crm.example"
    team.save()

    link = intake(deliver(mailbox, sender="billing@crm.example"))

    assert (link.outcome, link.case) == (IntakeOutcome.NOT_THREADED, None)


def test_our_reply_from_sent_items_is_the_teams_response(mailbox):
    case = intake(deliver(mailbox)).case

    intake(deliver(mailbox, folder="sentitems", sender=SUPPORT, subject=f"RE: [{case.number}]"))

    case.refresh_from_db()
    assert case.first_response_at is not None
    assert case.waiting_since is None
    assert case.timeline.filter(kind="message_sent").exists()


def test_a_flooding_sender_opens_a_bounded_number_of_cases(mailbox, settings):
    settings.INTAKE_MAX_NEW_CASES_PER_SENDER_HOUR = 3

    outcomes = [intake(deliver(mailbox, subject=f"Spam {n}")).outcome for n in range(5)]

    assert outcomes.count(IntakeOutcome.NEW_CASE) == 3
    assert outcomes.count(IntakeOutcome.RATE_LIMITED) == 2
    assert Case.objects.count() == 3


def test_a_personal_mailbox_threads_but_never_opens_cases(team, agent, mailbox):
    own = mailbox_connect(address="dana@crm.example", owner=agent, local=True)
    case = intake(deliver(mailbox)).case

    unrelated = intake(deliver(own, subject="Lunch?"))
    related = intake(deliver(own, subject=f"RE: [{case.number}]"))

    assert unrelated.case is None
    assert unrelated.outcome == IntakeOutcome.NOT_THREADED
    assert related.case == case


def test_an_existing_customer_is_reused_case_insensitively(mailbox):
    customer = services.customer_create(name="Anna", emails=["Anna@Nordwind.example"])

    link = intake(deliver(mailbox, sender="anna@nordwind.example"))

    assert link.case.customer == customer
    assert Customer.objects.count() == 1


def test_messages_of_a_case_and_a_task_from_one_through_the_api(mailbox, api):
    case = intake(deliver(mailbox)).case
    reply = deliver(mailbox, subject=f"RE: [{case.number}]", body="It is smoking now")
    intake(reply)

    listed = api.get(f"/api/v1/cases/{case.pk}/messages").json()["results"]
    made = api.post(f"/api/v1/cases/{case.pk}/messages/{reply.pk}/task")

    assert [m["body_text"] for m in listed] == ["Please help", "It is smoking now"]
    assert listed[0]["from_address"] == "anna@nordwind.example"
    assert made.status_code == 201
    assert made.json()["case"] == case.pk
    assert made.json()["description"] == "It is smoking now"
    assert api.post(f"/api/v1/cases/{case.pk}/messages/999999/task").status_code == 404


def test_the_conversation_of_a_case_you_may_not_see_is_a_404(mailbox):
    from rest_framework.test import APIClient

    from tests.cases.factories import TeamFactory, make_agent

    case = intake(deliver(mailbox)).case
    stranger = APIClient()
    stranger.force_authenticate(make_agent(team=TeamFactory(name="Elsewhere")))

    assert stranger.get(f"/api/v1/cases/{case.pk}/messages").status_code == 404


# --- the rules, fed anything -------------------------------------------------------------------

header_values = st.text(max_size=80)
headers = st.dictionaries(
    st.sampled_from(["auto-submitted", "precedence", "x-auto-response-suppress", "list-id",
                     "content-type", "x-failed-recipients", "x-autoreply", "received"]),
    header_values,
)  # fmt: skip


@given(headers=headers, subject=st.text(max_size=200), sender=st.text(max_size=80))
@hsettings(max_examples=300, deadline=None)
def test_classify_always_answers_one_of_three_kinds(headers, subject, sender):
    kind = intake_rules.classify(headers=headers, subject=subject, sender=sender)

    assert kind.kind in ("customer", "auto_reply", "bounce")
    if not any(v.strip() for v in headers.values()) and not subject.strip():
        assert kind.kind in ("customer", "bounce")


@given(prefix=st.text(max_size=40), number=st.integers(min_value=1, max_value=10**9),
       suffix=st.text(max_size=40))  # fmt: skip
@hsettings(max_examples=200, deadline=None)
def test_a_case_number_anywhere_in_a_subject_is_found(prefix, number, suffix):
    subject = f"{prefix} [CASE-{number:06d}] {suffix}"

    assert f"CASE-{number:06d}" in intake_rules.case_numbers(subject)


@given(st.text(max_size=300), st.text(max_size=300))
@hsettings(max_examples=200, deadline=None)
def test_thread_ids_are_bracketed_unique_and_in_reply_to_first(in_reply_to, references):
    ids = intake_rules.thread_ids(in_reply_to=in_reply_to, references=references)

    assert len(ids) == len(set(ids))
    assert all(i.startswith("<") and i.endswith(">") for i in ids)


# What the mail layers store: they drop NUL and lone surrogates (PostgreSQL takes neither).
storable = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    max_size=120,
)


@given(subject=storable, in_reply_to=storable)
@hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_intake_of_any_message_decides_once_and_never_fails(mailbox, subject, in_reply_to):
    message = deliver(mailbox, subject=subject, in_reply_to=in_reply_to)

    link = intake(message)

    assert intake(message).pk == link.pk
    assert link.outcome in IntakeOutcome.values


def test_intake_messages_command_decides_what_is_pending(mailbox):
    from io import StringIO

    from django.core.management import call_command

    first = deliver(mailbox)
    reply = deliver(mailbox, subject="Re", in_reply_to=first.internet_message_id)
    out = StringIO()

    call_command("intake_messages", "--mailbox", SUPPORT, stdout=out)
    call_command("intake_messages", stdout=out)

    assert "Decided 2 messages" in out.getvalue()
    assert "new_case 1, threaded 1" in out.getvalue()
    assert "Decided 0 messages" in out.getvalue()
    assert (
        CaseMessage.objects.get(message=reply).case == CaseMessage.objects.get(message=first).case
    )


def test_a_bounce_the_listener_recognised_finds_its_case_by_the_reported_message_id(mailbox):
    case = intake(deliver(mailbox)).case
    sent = deliver(mailbox, folder="sentitems", subject=f"RE: [{case.number}]", sender=SUPPORT)
    intake(sent)
    bounce = deliver(mailbox, subject="Delivery failure", sender="")
    Message.objects.filter(pk=bounce.pk).update(
        is_bounce=True, bounce_of_message_id=sent.internet_message_id
    )

    link = intake(bounce)

    assert (link.outcome, link.case) == (IntakeOutcome.BOUNCE, case)


def test_a_sender_no_customer_can_have_still_opens_a_case(mailbox):
    record = intake(deliver(mailbox, sender="jürgen@münchen.example"))

    assert record.outcome == IntakeOutcome.NEW_CASE
    assert record.case.customer is None
