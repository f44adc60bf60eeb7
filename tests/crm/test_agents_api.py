"""/api/v1/agents and team writes: who may change what."""

import pytest
from rest_framework.test import APIClient

from tests.cases.factories import TeamFactory, make_agent

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def team():
    return TeamFactory(name="Billing")


def test_agents_list_shows_roles_and_teams(team):
    agent = make_agent(team=team, email="ann@support.example")

    body = client_for(agent).get("/api/v1/agents").json()["results"]

    assert body[0]["email"] == "ann@support.example"
    assert body[0]["teams"] == [{"id": team.pk, "name": "Billing", "is_lead": False}]
    assert body[0]["role"] == "agent"
    assert "password" not in body[0]


def test_an_agent_edits_their_own_profile_but_not_their_role(team):
    agent = make_agent(team=team)
    api = client_for(agent)

    own = api.patch(
        f"/api/v1/agents/{agent.pk}",
        {"timezone": "Europe/Berlin", "availability": "away"},
        format="json",
    )
    role = api.patch(f"/api/v1/agents/{agent.pk}", {"role": "admin"}, format="json")
    bad_zone = api.patch(f"/api/v1/agents/{agent.pk}", {"timezone": "Mars/Olympus"}, format="json")

    assert own.status_code == 200
    assert own.json()["timezone"] == "Europe/Berlin"
    assert role.status_code == 403
    assert bad_zone.status_code == 400
    assert "timezone" in bad_zone.json()


def test_a_lead_pauses_members_of_their_team_only(team):
    lead = make_agent(team=team, role="lead")
    member = make_agent(team=team)
    stranger = make_agent(team=TeamFactory())
    api = client_for(lead)

    paused = api.patch(
        f"/api/v1/agents/{member.pk}", {"paused": True, "capacity": 5}, format="json"
    )
    refused = api.patch(f"/api/v1/agents/{stranger.pk}", {"paused": True}, format="json")

    assert paused.json()["paused"] is True
    assert paused.json()["capacity"] == 5
    assert refused.status_code == 403


def test_admins_create_agents_who_can_sign_in(team, client):
    admin = make_agent(role="admin")

    created = client_for(admin).post(
        "/api/v1/agents",
        {
            "email": "new@support.example",
            "password": "long enough pass",
            "team": team.pk,
            "role": "lead",
        },
        format="json",
    )

    assert created.status_code == 201, created.json()
    assert created.json()["teams"] == [{"id": team.pk, "name": "Billing", "is_lead": True}]
    assert client.login(email="new@support.example", password="long enough pass")
    assert (
        client_for(make_agent(team=team))
        .post("/api/v1/agents", {"email": "x@y.example"}, format="json")
        .status_code
        == 403
    )


def test_leads_edit_their_own_team_and_admins_create_teams(team):
    lead = make_agent(team=team, role="lead")
    other = TeamFactory(name="Tech")

    own = client_for(lead).patch(
        f"/api/v1/teams/{team.pk}", {"reopen_window_days": 30}, format="json"
    )
    foreign = client_for(lead).patch(
        f"/api/v1/teams/{other.pk}", {"name": "Hijacked"}, format="json"
    )
    created = client_for(make_agent(role="admin")).post(
        "/api/v1/teams", {"name": "Night"}, format="json"
    )

    assert own.json()["reopen_window_days"] == 30
    assert foreign.status_code == 403
    assert created.status_code == 201
