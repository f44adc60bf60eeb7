"""Fixtures of the cases tests: an agent in a team, and clients (API, web) signed in as them."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.cases.factories import TeamFactory, make_agent


@pytest.fixture
def team():
    return TeamFactory(name="Billing")


@pytest.fixture
def agent(team):
    return make_agent(team=team)


@pytest.fixture
def api(agent) -> APIClient:
    client = APIClient()
    client.force_authenticate(agent)
    return client


@pytest.fixture
def web(agent) -> Client:
    """A browser-like client signed in as the agent (the web UI's session)."""
    client = Client()
    client.force_login(agent)
    return client
