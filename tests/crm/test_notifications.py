"""Notifications: assignments, mentions, customer replies and SLA warnings reach the agent
under the bell always and by email when their profile asks; nobody hears about their own
action, and nobody sees or marks another agent's notifications."""

from __future__ import annotations

import itertools
import logging
import re
from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from cases import services as case_services
from cases.models import (
    BusinessCalendar,
    BusinessHours,
    Case,
    CaseStatusPeriod,
    SlaPolicy,
    SlaTarget,
)
from cases.services.sla import sla_config_changed, sla_refresh, sla_tick
from crm.models import AgentProfile, Notification, NotificationKind
from crm.notifications import notify
from mailsync.models import Message
from mailsync.services import mailbox_connect
from tests.cases.factories import CaseFactory, TeamFactory, make_agent
from tests.conftest import free_port

pytestmark = pytest.mark.django_db
_ids = itertools.count(1)


@pytest.fixture
def team():
    return TeamFactory(name="Billing")


@pytest.fixture
def agent(team):
    return make_agent(team=team, email="ann@support.example")


@pytest.fixture
def colleague(team):
    return make_agent(team=team, email="ben@support.example")


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def web_as(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def kinds_for(user) -> list[str]:
    return list(Notification.objects.filter(recipient=user).values_list("kind", flat=True))


def prefer(user, **switches: bool) -> None:
    AgentProfile.objects.filter(user=user).update(**switches)


# --- assignment --------------------------------------------------------------------------------


def test_assigning_a_case_notifies_the_assignee_in_app_and_by_email(
    agent, colleague, team, mailoutbox, django_capture_on_commit_callbacks
):
    case = CaseFactory(team=team)

    with django_capture_on_commit_callbacks(execute=True):
        response = api_as(agent).patch(
            f"/api/v1/cases/{case.pk}/assign", {"assignee": colleague.pk}, format="json"
        )

    assert response.status_code == 200
    notification = Notification.objects.get(recipient=colleague)
    assert notification.kind == NotificationKind.ASSIGNED
    assert notification.url == f"/cases/{case.number}/"
    assert case.number in notification.title
    assert notification.emailed_at is not None
    assert [m.to for m in mailoutbox] == [[colleague.email]]
    assert f"{case.number} assigned to you" in mailoutbox[0].subject
    assert f"/cases/{case.number}/" in mailoutbox[0].body
    assert kinds_for(agent) == []  # the actor hears nothing of their own action


def test_taking_a_case_yourself_notifies_nobody_and_costs_no_query(
    agent, team, mailoutbox, django_capture_on_commit_callbacks, django_assert_num_queries
):
    case = CaseFactory(team=team)

    with django_capture_on_commit_callbacks(execute=True):
        response = api_as(agent).patch(
            f"/api/v1/cases/{case.pk}/assign", {"assignee": agent.pk}, format="json"
        )

    assert response.status_code == 200
    assert Notification.objects.count() == 0
    assert mailoutbox == []
    with django_assert_num_queries(0):
        assert notify(recipients=[agent], kind="assigned", title="t", actor=agent) == []


def test_email_follows_the_preference_and_the_bell_does_not(
    agent, colleague, team, mailoutbox, django_capture_on_commit_callbacks
):
    prefer(colleague, notify_assigned=False)
    case = CaseFactory(team=team)

    with django_capture_on_commit_callbacks(execute=True):
        case_services.case_assign(actor=agent, case=case, assignee=colleague)

    notification = Notification.objects.get(recipient=colleague)
    assert notification.kind == NotificationKind.ASSIGNED
    assert notification.emailed_at is None
    assert mailoutbox == []


def test_inactive_agents_are_not_notified(agent, colleague, team, mailoutbox):
    colleague.is_active = False
    colleague.save(update_fields=["is_active"])

    assert notify(recipients=[colleague], kind="assigned", title="t", actor=agent) == []
    assert Notification.objects.count() == 0


def test_a_failing_mail_server_is_logged_and_the_assignment_stands(
    agent, colleague, team, django_capture_on_commit_callbacks, caplog
):
    case = CaseFactory(team=team)
    nothing_listens = {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": free_port(), "EMAIL_TIMEOUT": 5}
    smtp = "django.core.mail.backends.smtp.EmailBackend"

    with (
        override_settings(EMAIL_BACKEND=smtp, **nothing_listens),
        caplog.at_level(logging.ERROR, logger="crm.notifications"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = api_as(agent).patch(
            f"/api/v1/cases/{case.pk}/assign", {"assignee": colleague.pk}, format="json"
        )

    assert response.status_code == 200
    case.refresh_from_db()
    assert case.assignee == colleague
    assert Notification.objects.get(recipient=colleague).emailed_at is None
    assert "could not email 1 notification" in caplog.text


# --- mentions ----------------------------------------------------------------------------------


def test_a_note_notifies_the_agents_it_mentions_but_not_its_author(
    agent, colleague, team, mailoutbox, django_capture_on_commit_callbacks
):
    case = CaseFactory(team=team)

    with django_capture_on_commit_callbacks(execute=True):
        response = api_as(agent).post(
            f"/api/v1/cases/{case.pk}/notes",
            {"body": "@ben can you call them? cc @ann@support.example"},
            format="json",
        )

    assert response.status_code == 201
    assert kinds_for(colleague) == [NotificationKind.MENTIONED]
    assert kinds_for(agent) == []
    mention = Notification.objects.get(recipient=colleague)
    assert "can you call them?" in mention.body
    assert [m.to for m in mailoutbox] == [[colleague.email]]
    assert f"mentioned you on {case.number}" in mailoutbox[0].subject


# --- customer replies --------------------------------------------------------------------------


def deliver(mailbox, *, subject: str) -> Message:
    """A stored customer message, as the SMTP listener or the Graph sync leaves it."""
    return Message.objects.create(
        mailbox=mailbox,
        folder=mailbox.folders.get(well_known="inbox"),
        subject=subject,
        from_address="anna@nordwind.example",
        from_name="Anna Berg",
        to=[{"name": "", "address": "help@crm.example"}],
        body_text="Any news on this?",
        internet_message_id=f"<n{next(_ids)}@nordwind.example>",
        received_at=timezone.now(),
    )


def test_a_customer_reply_notifies_the_assignee_of_the_case(
    agent, colleague, team, mailoutbox, django_capture_on_commit_callbacks
):
    mailbox = mailbox_connect(address="help@crm.example", team=team, local=True)
    mine = CaseFactory(team=team, actor=agent, assignee=colleague)
    nobodys = CaseFactory(team=team, actor=agent)
    Notification.objects.all().delete()
    mailoutbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        case_services.message_intake(message_id=deliver(mailbox, subject=f"Re: {mine.number}").pk)
        case_services.message_intake(message_id=deliver(mailbox, subject=nobodys.number).pk)

    reply = Notification.objects.get()
    assert (reply.recipient, reply.kind) == (colleague, NotificationKind.CUSTOMER_REPLY)
    assert reply.title == f"{mine.number}: Anna Berg replied"
    assert "Any news on this?" in reply.body
    assert [m.to for m in mailoutbox] == [[colleague.email]]


# --- SLA ---------------------------------------------------------------------------------------

MONDAY_10 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 in Berlin, business hours


@pytest.fixture
def one_hour_first_response():
    calendar = BusinessCalendar.objects.create(
        name="Berlin", timezone="Europe/Berlin", is_default=True
    )
    for weekday in range(5):
        BusinessHours.objects.create(
            calendar=calendar, weekday=weekday, start=time(9), end=time(17)
        )
    policy = SlaPolicy.objects.create(name="Standard", order=100, is_default=True)
    for metric, minutes in (("first_response", 60), ("next_response", 120), ("resolution", 480)):
        SlaTarget.objects.create(policy=policy, priority="normal", metric=metric, minutes=minutes)
    sla_config_changed()


def opened_monday_10(case: Case) -> Case:
    Case.objects.filter(pk=case.pk).update(created_at=MONDAY_10)
    CaseStatusPeriod.objects.filter(case=case).update(started_at=MONDAY_10)
    case.refresh_from_db()
    sla_refresh(case=case, now=MONDAY_10)
    return case


def test_sla_warnings_notify_the_assignee_and_email_per_preference(
    one_hour_first_response, agent, colleague, team, mailoutbox,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    case = opened_monday_10(CaseFactory(team=team, actor=agent, assignee=colleague))
    Notification.objects.all().delete()
    mailoutbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        sla_tick(now=MONDAY_10 + timedelta(minutes=50))

    at_risk = Notification.objects.get(recipient=colleague)
    assert at_risk.kind == NotificationKind.SLA_AT_RISK
    assert at_risk.title == f"{case.number}: SLA first response at risk"
    assert [m.to for m in mailoutbox] == [[colleague.email]]
    assert f"{case.number}: SLA first response at risk" in mailoutbox[0].subject

    prefer(colleague, notify_sla_risk=False)
    with django_capture_on_commit_callbacks(execute=True):
        sla_tick(now=MONDAY_10 + timedelta(hours=2))

    assert kinds_for(colleague) == [NotificationKind.SLA_BREACHED, NotificationKind.SLA_AT_RISK]
    assert len(mailoutbox) == 1  # the breach is under the bell only


# --- the API -----------------------------------------------------------------------------------


def make_notifications(user, n: int, *, kind: str = "assigned") -> list[Notification]:
    return notify(recipients=[user] * n, kind=kind, title="Something", url="/cases/")


def test_the_api_lists_only_ones_own_notifications_newest_first(agent, colleague):
    mine = make_notifications(agent, 3)
    make_notifications(colleague, 2)
    api = api_as(agent)

    first = api.get("/api/v1/notifications", {"page_size": 2}).json()
    second = api.get(first["next"]).json()

    listed = [row["id"] for row in first["results"] + second["results"]]
    assert listed == sorted((n.pk for n in mine), reverse=True)
    assert second["next"] is None
    assert first["results"][0]["unread"] is True
    assert set(first["results"][0]) == {
        "id", "kind", "title", "body", "url", "created_at", "read_at", "unread"
    }  # fmt: skip


def test_unread_filter_count_and_marking_read(agent, colleague):
    first, second, third = make_notifications(agent, 3)
    theirs = make_notifications(colleague, 1)[0]
    api = api_as(agent)

    marked = api.post("/api/v1/notifications/read", {"ids": [first.pk, theirs.pk]}, format="json")

    assert marked.json() == {"marked": 1}  # another's id is ignored, not revealed
    theirs.refresh_from_db()
    assert theirs.read_at is None
    assert api.get("/api/v1/notifications/unread-count").json() == {"count": 2}
    unread = api.get("/api/v1/notifications", {"unread": "true"}).json()["results"]
    assert [row["id"] for row in unread] == [third.pk, second.pk]
    assert api.post("/api/v1/notifications/read", {"all": True}, format="json").json() == {
        "marked": 2
    }
    assert api.get("/api/v1/notifications/unread-count").json() == {"count": 0}
    assert api_as(colleague).get("/api/v1/notifications/unread-count").json() == {"count": 1}


@pytest.mark.parametrize(
    "body", [{}, {"ids": [1], "all": True}, {"ids": "1"}, {"ids": [0]}, {"all": "maybe"}]
)
def test_a_mark_read_request_that_says_neither_or_both_is_a_400(agent, body):
    response = api_as(agent).post("/api/v1/notifications/read", body, format="json")

    assert response.status_code == 400


def test_a_bad_unread_filter_is_a_400_and_strangers_get_401(agent):
    assert api_as(agent).get("/api/v1/notifications", {"unread": "perhaps"}).status_code == 400
    assert APIClient().get("/api/v1/notifications").status_code == 401
    assert APIClient().post("/api/v1/notifications/read", {"all": True}).status_code == 401


def test_the_list_costs_the_same_queries_for_few_and_many(agent):
    api = api_as(agent)
    make_notifications(agent, 2)
    with CaptureQueriesContext(connection) as few:
        api.get("/api/v1/notifications")
    make_notifications(agent, 40)
    with CaptureQueriesContext(connection) as many:
        api.get("/api/v1/notifications")

    assert len(many.captured_queries) == len(few.captured_queries)


def test_the_schema_documents_the_notification_endpoints(agent):
    schema = web_as(agent).get("/api/schema/", {"format": "json"}).json()

    paths = schema["paths"]
    assert {"/api/v1/notifications", "/api/v1/notifications/unread-count"} <= set(paths)
    assert "post" in paths["/api/v1/notifications/read"]


# --- the bell and the page ---------------------------------------------------------------------


def bell_count(html: str) -> int:
    found = re.search(r"<span class=\"count\" data-unread-count>(\d+)</span>", html)
    assert found, "the bell is missing"
    return int(found.group(1))


def test_the_bell_shows_the_unread_count_and_the_page_lists_them(agent, colleague, team):
    case = CaseFactory(team=team)
    case_services.case_assign(actor=colleague, case=case, assignee=agent)
    make_notifications(colleague, 1)
    web = web_as(agent)

    queue = web.get("/cases/").content.decode()
    page = web.get("/notifications/")

    assert bell_count(queue) == 1
    assert 'href="/notifications/"' in queue
    assert "Notifications, </span>" in queue  # the link's accessible name says what it is
    html = page.content.decode()
    assert page.status_code == 200
    assert f'<a href="/cases/{case.number}/">{case.number} assigned to you' in html
    assert html.count('<li class="unread">') == 1
    assert 'aria-current="page"' in html


def test_mark_all_read_is_a_post_with_the_csrf_token(agent):
    make_notifications(agent, 2)
    strict = web_as(agent, enforce_csrf_checks=True)

    assert strict.get("/notifications/read").status_code == 405
    assert strict.post("/notifications/read").status_code == 403  # no token
    page = strict.get("/notifications/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = strict.post("/notifications/read", {"csrfmiddlewaretoken": token})

    assert response.status_code == 302
    assert response["Location"] == "/notifications/"
    after = strict.get("/notifications/").content.decode()
    assert bell_count(after) == 0
    assert "Mark all read" not in after


def test_the_page_needs_a_signed_in_agent(client):
    response = client.get("/notifications/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_an_agent_who_cannot_see_the_case_is_not_told_of_a_mention(db):
    from cases import services as case_services
    from tests.cases.factories import CaseFactory, TeamFactory, make_agent

    team, elsewhere = TeamFactory(name="Billing"), TeamFactory(name="Sales")
    author = make_agent(team=team)
    outsider = make_agent(team=elsewhere, email="olga@crm.example")
    case = CaseFactory(team=team, title="Refund for Nordwind")

    case_services.case_add_note(actor=author, case=case, body="@olga please look")

    assert not Notification.objects.filter(recipient=outsider).exists()
