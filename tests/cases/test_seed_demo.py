"""`seed_demo` fills an empty database with believable demo data once, through the services.

Seeding takes seconds, so the tests that only read the demo data share one seed per class: the
fixture keeps it in a transaction that each test nests into and that is rolled back at the end.
"""

from __future__ import annotations

import io
import re
from datetime import date, time, timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.db.models import Count
from django.test import Client
from django.utils import timezone

from cases.choices import CASE_TRANSITIONS, CaseStatus, TimelineKind
from cases.demo import data
from cases.demo.sla import german_public_holidays
from cases.models import (
    BusinessCalendar,
    BusinessHours,
    Case,
    CaseLink,
    CaseNote,
    Customer,
    Holiday,
    Organization,
    SlaPolicy,
    SlaTarget,
    Task,
    TimelineEvent,
)
from crm import changes
from crm.models import Team, TeamMembership, User
from crm.snapshots import forget_all as forget_snapshots
from tests.cases.factories import CaseFactory, TeamFactory

pytestmark = pytest.mark.django_db

LOGIN = "Log in at http://127.0.0.1:8000/ as admin@example.com"


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


@pytest.fixture(scope="class")
def demo(django_db_setup, django_db_blocker):
    """The output of one `seed_demo` run on an empty database, rolled back after the class."""
    forget_snapshots()
    with django_db_blocker.unblock(), transaction.atomic():
        yield seed()
        transaction.set_rollback(True)
    forget_snapshots()  # the policy it made is gone with the rollback


SLA_MODELS = (BusinessCalendar, BusinessHours, Holiday, SlaPolicy, SlaTarget)


def counts() -> dict[str, int]:
    models = (User, Team, TeamMembership, Organization, Customer, Case, Task, TimelineEvent)
    models += (CaseNote, CaseLink, *SLA_MODELS)
    return {model.__name__: model.objects.count() for model in models}


H = 60
# (first response, next response, resolution) in business minutes; a business day is the
# calendar's 10 hours.
EXPECTED_TARGETS = {
    "urgent": (1 * H, 2 * H, 8 * H),
    "high": (4 * H, 8 * H, 20 * H),
    "normal": (8 * H, 10 * H, 50 * H),
    "low": (20 * H, 30 * H, 100 * H),
}


def assert_default_sla_configuration() -> None:
    calendar = BusinessCalendar.objects.get(is_default=True)
    assert (calendar.name, calendar.timezone) == ("Business hours", "Europe/Berlin")
    assert sorted(calendar.hours.values_list("weekday", "start", "end")) == [
        (day, time(8), time(18)) for day in range(5)
    ]
    this_year = timezone.localdate().year
    holidays = dict(calendar.holidays.values_list("date", "name"))
    assert len(holidays) == 18
    assert {day.year for day in holidays} == {this_year, this_year + 1}
    assert holidays[date(this_year, 10, 3)] == "Tag der Deutschen Einheit"
    policy = SlaPolicy.objects.get(is_default=True)
    assert policy.name == "Standard"
    assert policy.active
    assert policy.calendar is None  # the default calendar
    assert [policy.priorities, policy.types, policy.channels, policy.tiers, policy.vip] == [
        [], [], [], [], ""
    ]  # fmt: skip
    assert not policy.teams.exists()
    assert not policy.tags.exists()
    found = {(t.priority, t.metric): t.minutes for t in policy.targets.all() if t.business_time}
    metrics = ("first_response", "next_response", "resolution")
    assert found == {
        (priority, metric): minutes
        for priority, row in EXPECTED_TARGETS.items()
        for metric, minutes in zip(metrics, row, strict=True)
    }


def status_path_problems(case: Case) -> list[str]:
    """Where the case's status events leave the allowed transitions or skip a status."""
    problems, current = [], CaseStatus.NEW
    events = case.timeline.filter(kind=TimelineKind.STATUS_CHANGED).order_by("created_at", "pk")
    for event in events:
        old, new = event.data["old"], event.data["new"]
        if old != current or new not in CASE_TRANSITIONS[old]:
            problems.append(f"{case.number}: at {current}, then {old} → {new}")
        current = new
    if current != case.status:
        problems.append(f"{case.number}: the timeline ends at {current}, the case is {case.status}")
    return problems


class TestFirstRun:
    def test_says_what_it_made_and_how_to_log_in(self, demo):
        assert "Admin user created; demo team: Support." in demo
        assert re.search(r"Demo data: 150 cases, 200 tasks, 60 customers in \d+\.\d s", demo)
        assert LOGIN in demo

    def test_creates_the_stated_numbers_of_objects(self, demo):
        assert set(Team.objects.values_list("name", flat=True)) == {
            "Support",
            "Billing",
            "Technical",
        }
        assert User.objects.filter(email__endswith="@support.example").count() == len(data.AGENTS)
        leads = TeamMembership.objects.filter(is_lead=True).values_list("team__name", flat=True)
        assert sorted(leads) == ["Billing", "Support", "Technical"]
        assert Organization.objects.count() == 12
        assert Customer.objects.count() == 60
        assert Case.objects.count() == 150
        assert Task.objects.count() == 200
        assert Task.objects.filter(case=None).count() == 30
        assert Case.objects.exclude(merged_into=None).count() == 2
        assert Case.objects.exclude(parent=None).count() == 1
        assert CaseLink.objects.exists()
        assert CaseNote.objects.exclude(mentions=None).exists()

    def test_creates_a_default_business_calendar_and_a_catch_all_sla_policy(self, demo):
        assert "SLA: created default business calendar “Business hours”" in demo
        assert "18 public holidays" in demo
        assert "catch-all SLA policy “Standard”" in demo
        assert_default_sla_configuration()

    def test_every_case_has_a_number_and_a_timeline(self, demo):
        cases = Case.objects.annotate(events=Count("timeline"))

        assert all(re.fullmatch(r"CASE-\d{6}", case.number) for case in cases)
        assert min(case.events for case in cases) >= 1

    def test_statuses_are_a_realistic_mix_reached_along_allowed_transitions(self, demo):
        cases = list(Case.objects.all())
        statuses = {case.status for case in cases}
        assert statuses <= set(CaseStatus.values)
        assert {"new", "in_progress", "awaiting_customer", "resolved", "closed"} <= statuses
        merged = [case for case in cases if case.merged_into_id is not None]
        assert all(case.status == CaseStatus.CLOSED and case.closed_at for case in merged)

        problems = [p for case in cases if case not in merged for p in status_path_problems(case)]

        assert problems == []

    def test_history_is_spread_over_the_last_sixty_days(self, demo):
        now = timezone.now()
        created = sorted(Case.objects.values_list("created_at", flat=True))

        assert now - timedelta(days=61) < created[0] < now - timedelta(days=45)
        assert created[-1] < now
        assert not TimelineEvent.objects.filter(created_at__gt=now).exists()
        events = TimelineEvent.objects.select_related("case")
        assert all(event.created_at >= event.case.created_at for event in events)

    def test_tasks_on_a_case_go_to_members_of_its_team(self, demo):
        for task in Task.objects.exclude(case=None).select_related("case"):
            assert (
                task.assignee_id is None
                or TeamMembership.objects.filter(
                    team_id=task.case.team_id, user_id=task.assignee_id
                ).exists()
            ), f"{task} on {task.case.number}"

    def test_every_customer_has_a_change_number_in_the_customer_book(self, demo):
        book = changes.customer_book()
        numbers = list(Customer.objects.values_list("change_container_id", "change_seq"))

        assert all(container == book.pk and seq for container, seq in numbers)
        assert len({seq for _, seq in numbers}) == len(numbers)

    def test_every_agent_signs_in_with_the_printed_password(self, demo):
        password = re.search(r"with password (\S+)", demo).group(1)

        for email in ["admin@example.com", *(agent.email for agent in data.AGENTS)]:
            response = Client().post("/accounts/login/", {"login": email, "password": password})
            assert response.status_code == 302, email
            assert response["Location"] == "/"

    def test_a_second_run_changes_nothing_and_says_so(self, demo):
        before = counts()

        output = seed()

        assert counts() == before
        assert "Demo data exists already" in output
        assert "Admin user exists; demo team: Support." in output
        assert "SLA defaults exist already; nothing changed." in output
        assert LOGIN in output


def test_no_demo_data_creates_only_the_admin_the_support_team_and_the_sla_defaults():
    output = seed("--no-demo-data")

    assert LOGIN in output
    assert "Demo data" not in output
    assert list(Team.objects.values_list("name", flat=True)) == ["Support"]
    assert User.objects.get().email == "admin@example.com"
    assert not Case.objects.exists()
    assert_default_sla_configuration()


def test_a_new_case_gets_deadlines_out_of_the_box():
    seed("--no-demo-data")

    case = CaseFactory(team=Team.objects.get(), priority="urgent")

    assert case.sla_policy == SlaPolicy.objects.get(name="Standard")
    assert case.sla_first_response_due is not None
    assert case.sla_resolution_due > case.sla_first_response_due


def test_open_cases_from_before_the_seed_get_deadlines(
    eager_celery, django_capture_on_commit_callbacks
):
    case = CaseFactory(team=TeamFactory(name="Sales"))
    assert case.sla_policy is None

    with django_capture_on_commit_callbacks(execute=True):
        seed()

    case.refresh_from_db()
    assert case.sla_policy == SlaPolicy.objects.get(name="Standard")
    assert case.sla_resolution_due is not None


def test_an_admins_own_default_calendar_and_policy_are_kept():
    mine = BusinessCalendar.objects.create(name="New York", timezone="America/New_York",
                                           is_default=True)  # fmt: skip
    policy = SlaPolicy.objects.create(name="Ours", is_default=True)
    SlaTarget.objects.create(policy=policy, priority="urgent", metric="resolution", minutes=30)

    output = seed("--no-demo-data")

    assert "SLA defaults exist already" in output
    assert list(BusinessCalendar.objects.all()) == [mine]
    assert not Holiday.objects.exists()
    assert list(SlaPolicy.objects.all()) == [policy]
    assert SlaTarget.objects.count() == 1


def test_a_later_run_adds_the_holidays_of_a_year_that_has_none():
    seed("--no-demo-data")
    next_year = timezone.localdate().year + 1
    Holiday.objects.filter(date__year=next_year).delete()
    Holiday.objects.create(
        calendar=BusinessCalendar.objects.get(), date=date(next_year - 1, 12, 31), name="Silvester"
    )

    output = seed("--no-demo-data")

    assert "SLA: created 9 public holidays." in output
    assert Holiday.objects.filter(date__year=next_year).count() == 9
    assert Holiday.objects.filter(name="Silvester").exists()


@pytest.mark.parametrize(
    ("year", "good_friday", "whit_monday"),
    [(2025, date(2025, 4, 18), date(2025, 6, 9)), (2026, date(2026, 4, 3), date(2026, 5, 25))],
)
def test_german_holidays_follow_easter(year, good_friday, whit_monday):
    holidays = dict(german_public_holidays(year))

    assert holidays[good_friday] == "Karfreitag"
    assert holidays[whit_monday] == "Pfingstmontag"
    assert len(holidays) == 9


def test_a_database_with_real_cases_gets_no_demo_data():
    CaseFactory(team=TeamFactory(name="Sales"))

    output = seed()

    assert "nothing added" in output
    assert Case.objects.count() == 1
    assert not Organization.objects.exists()
