"""Who sees what: one selector per model decides, for every entry point."""

import pytest

from cases import selectors
from tests.cases.factories import CaseFactory, CustomerFactory, TaskFactory, TeamFactory, make_agent

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    team_a, team_b = TeamFactory(name="A"), TeamFactory(name="B")
    agent_a = make_agent(team=team_a)
    agent_b = make_agent(team=team_b)
    lead_a = make_agent(team=team_a, role="lead")
    admin = make_agent(role="admin")
    case_a, case_b = CaseFactory(team=team_a), CaseFactory(team=team_b)
    return {
        "agent_a": agent_a,
        "agent_b": agent_b,
        "lead_a": lead_a,
        "admin": admin,
        "case_a": case_a,
        "case_b": case_b,
        "task_a": TaskFactory(case=case_a),
        "task_b": TaskFactory(case=case_b),
        "own_task": TaskFactory(actor=agent_a),
    }


def test_agents_see_their_teams_cases_and_tasks_only(world):
    agent = world["agent_a"]

    assert list(selectors.case_list(user=agent)) == [world["case_a"]]
    assert set(selectors.task_list(user=agent)) == {world["task_a"], world["own_task"]}
    assert not selectors.timeline_for(user=agent, case=world["case_b"]).exists()
    assert selectors.case_get_by_number(user=agent, number=world["case_b"].number) is None


def test_an_agent_also_sees_a_case_of_another_team_assigned_to_them(world):
    from cases import services
    from crm import services as crm_services

    crm_services.team_membership_set(team=world["case_b"].team, user=world["agent_a"])
    services.case_assign(actor=None, case=world["case_b"], assignee=world["agent_a"])
    crm_services.team_membership_remove(team=world["case_b"].team, user=world["agent_a"])
    fresh = type(world["agent_a"]).objects.get(pk=world["agent_a"].pk)

    assert set(selectors.case_list(user=fresh)) == {world["case_a"], world["case_b"]}


def test_leads_manage_only_the_teams_they_lead(world):
    lead = world["lead_a"]

    assert list(selectors.case_manageable(user=lead)) == [world["case_a"]]
    assert list(selectors.case_manageable(user=world["agent_a"])) == []


def test_admins_see_everything(world):
    admin = world["admin"]

    assert set(selectors.case_list(user=admin)) == {world["case_a"], world["case_b"]}
    assert selectors.task_list(user=admin).count() == 3


def test_customers_are_visible_to_every_agent_but_not_to_anonymous(world):
    from django.contrib.auth.models import AnonymousUser

    customer = CustomerFactory()

    assert list(selectors.customer_list(user=world["agent_b"])) == [customer]
    assert not selectors.customer_list(user=AnonymousUser()).exists()
    assert not selectors.case_list(user=AnonymousUser()).exists()
