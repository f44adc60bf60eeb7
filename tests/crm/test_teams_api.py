"""The first /api/v1 endpoint and the conventions every later one shares."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.crm.factories import TeamFactory

pytestmark = pytest.mark.django_db


def test_anonymous_requests_are_refused(api_client):
    response = api_client.get("/api/v1/teams")

    assert response.status_code == 401


def test_lists_teams_with_cursor_pagination(agent_client):
    for name in ["Echo", "Alpha", "Delta", "Bravo", "Charlie"]:
        TeamFactory(name=name)

    first = agent_client.get("/api/v1/teams", {"page_size": 2}).json()
    second = agent_client.get(first["next"]).json()

    assert [t["name"] for t in first["results"]] == ["Alpha", "Bravo"]
    assert [t["name"] for t in second["results"]] == ["Charlie", "Delta"]
    assert set(first["results"][0]) == {
        "id",
        "name",
        "email",
        "reopen_window_days",
        "members",
        "created_at",
    }
    assert first["previous"] is None
    assert "count" not in first


def test_page_size_is_capped(agent_client):
    TeamFactory.create_batch(3)

    body = agent_client.get("/api/v1/teams", {"page_size": 100000}).json()

    assert len(body["results"]) == 3


def test_query_count_does_not_grow_with_the_page(agent_client):
    TeamFactory.create_batch(3)
    with CaptureQueriesContext(connection) as few:
        agent_client.get("/api/v1/teams")
    TeamFactory.create_batch(47)
    with CaptureQueriesContext(connection) as many:
        response = agent_client.get("/api/v1/teams")

    assert len(response.json()["results"]) == 50
    assert len(many) == len(few)


def test_filters_by_name_and_orders(agent_client):
    TeamFactory(name="Billing")
    TeamFactory(name="Accounts")

    by_name = agent_client.get("/api/v1/teams", {"name": "Billing"}).json()
    reverse = agent_client.get("/api/v1/teams", {"ordering": "-name"}).json()

    assert [t["name"] for t in by_name["results"]] == ["Billing"]
    assert [t["name"] for t in reverse["results"]] == ["Billing", "Accounts"]


def test_unknown_team_is_404(agent_client):
    assert agent_client.get("/api/v1/teams/999999").status_code == 404


def test_plain_agents_cannot_create_teams(agent_client):
    assert agent_client.post("/api/v1/teams", {"name": "x"}).status_code == 403


def test_bad_cursor_is_a_400_naming_the_parameter(agent_client):
    response = agent_client.get("/api/v1/teams", {"cursor": "not-base64!"})

    assert response.status_code == 400
    assert response.json() == {"cursor": ["Invalid cursor"]}
