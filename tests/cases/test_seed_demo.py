"""`seed_demo` fills an empty database with believable demo data once, through the services.

Seeding takes seconds, so the tests that only read the demo data share one seed per class: the
fixture keeps it in a transaction that each test nests into and that is rolled back at the end.
"""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.db.models import Count
from django.test import Client
from django.utils import timezone

from cases.choices import CASE_TRANSITIONS, CaseStatus, TimelineKind
from cases.demo import data
from cases.models import Case, CaseLink, CaseNote, Customer, Organization, Task, TimelineEvent
from crm import changes
from crm.models import Team, TeamMembership, User
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
    with django_db_blocker.unblock(), transaction.atomic():
        yield seed()
        transaction.set_rollback(True)


def counts() -> dict[str, int]:
    models = (User, Team, TeamMembership, Organization, Customer, Case, Task, TimelineEvent)
    return {model.__name__: model.objects.count() for model in (*models, CaseNote, CaseLink)}


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
        assert LOGIN in output


def test_no_demo_data_creates_only_the_admin_and_the_support_team():
    output = seed("--no-demo-data")

    assert LOGIN in output
    assert "Demo data" not in output
    assert list(Team.objects.values_list("name", flat=True)) == ["Support"]
    assert User.objects.get().email == "admin@example.com"
    assert not Case.objects.exists()


def test_a_database_with_real_cases_gets_no_demo_data():
    CaseFactory(team=TeamFactory(name="Sales"))

    output = seed()

    assert "nothing added" in output
    assert Case.objects.count() == 1
    assert not Organization.objects.exists()
