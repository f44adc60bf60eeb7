"""Task and customer services."""

import pytest

from cases import selectors, services
from cases.errors import CaseError, DuplicateEmail, InvalidAssignee, InvalidTransition
from cases.models import Task
from tests.cases.factories import (
    CaseFactory,
    CustomerFactory,
    OrganizationFactory,
    TaskFactory,
    TeamFactory,
    make_agent,
)

pytestmark = pytest.mark.django_db


def test_a_task_on_a_case_goes_to_a_member_of_the_cases_team_and_shows_in_its_timeline():
    team, other = TeamFactory(), TeamFactory()
    agent, outsider = make_agent(team=team), make_agent(team=other)
    case = CaseFactory(team=team)

    task = services.task_create(
        actor=agent, case=case, subject="Call back", assignee=agent, checklist=["Dial", "Log"]
    )

    assert case.timeline.last().summary == f"Task added: Call back (for {agent})"
    assert [item.text for item in task.checklist.all()] == ["Dial", "Log"]
    with pytest.raises(InvalidAssignee, match="not a member of team"):
        services.task_create(actor=agent, case=case, subject="x", assignee=outsider)


def test_task_lifecycle_follows_its_transitions():
    task = TaskFactory()

    services.task_change_status(actor=None, task=task, status="in_progress")
    services.task_change_status(actor=None, task=task, status="resolved")
    assert task.completed_at is not None
    services.task_change_status(actor=None, task=task, status="in_progress")
    assert task.completed_at is None
    with pytest.raises(InvalidTransition, match="cannot become new"):
        services.task_change_status(actor=None, task=task, status="new")


def test_task_update_records_old_and_new_values():
    case = CaseFactory()
    task = TaskFactory(case=case, subject="Ship part")

    services.task_update(actor=None, task=task, priority="urgent", category="logistics")

    assert case.timeline.last().summary == (
        "Task “Ship part”: priority normal → urgent; category — → logistics"
    )


def test_deleting_a_task_removes_it_and_notes_it_on_the_case():
    case = CaseFactory()
    task = TaskFactory(case=case, subject="Obsolete")

    services.task_delete(actor=None, task=task)

    assert not Task.objects.exists()
    assert case.timeline.last().summary == "Task deleted: Obsolete"


def test_customer_addresses_are_unique_whatever_their_case():
    CustomerFactory(name="Ada", emails=["Ada@Example.com"])

    with pytest.raises(DuplicateEmail, match="ada@example.com already belongs to Ada"):
        CustomerFactory(name="Other Ada", emails=["ADA@example.COM"])


def test_a_sender_address_resolves_to_exactly_one_customer():
    ada = CustomerFactory(name="Ada", emails=["ada@example.com", "a.l@home.example"])

    assert selectors.customer_by_email(" A.L@Home.Example ") == ada
    assert selectors.customer_by_email("nobody@example.com") is None


def test_new_customers_join_the_organization_owning_their_domain():
    acme = OrganizationFactory(name="Acme", domains=["Acme.example", "@acme-corp.example"])

    customer = CustomerFactory(name="Bea", emails=["bea@acme-corp.example"])

    assert customer.organization == acme
    assert sorted(acme.domains.values_list("domain", flat=True)) == [
        "acme-corp.example",
        "acme.example",
    ]


@pytest.mark.parametrize("domain", ["not a domain", "example", "-bad.example", "a@b.example"])
def test_bad_domains_are_refused(domain):
    with pytest.raises(CaseError, match="is not an email domain"):
        OrganizationFactory(domains=[domain])


def test_a_domain_belongs_to_one_organization():
    OrganizationFactory(name="Acme", domains=["acme.example"])

    with pytest.raises(CaseError, match="acme.example already belongs to Acme"):
        OrganizationFactory(name="Copycat", domains=["acme.example"])


def test_bad_addresses_are_refused():
    with pytest.raises(CaseError, match="is not a valid email address"):
        CustomerFactory(emails=["not-an-address"])
