"""Fixtures of the cases tests: an agent in a team, and an API client signed in as them (the
web client is tests/conftest.py's `web`)."""

import pytest
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
