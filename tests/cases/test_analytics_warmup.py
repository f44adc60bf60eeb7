"""The worker's warm-up (`cases.tasks.analytics_warm`) computes the cached figures of the
dashboard and the first report for agents who signed in recently, so their next page view
reads them from the cache instead of waiting for the aggregates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cases.schedules import default_schedules
from cases.tasks import analytics_warm
from crm.choices import Role
from crm.models import User
from tests.cases.factories import CaseFactory, TeamFactory, make_agent

pytestmark = pytest.mark.django_db(transaction=True)


def queries_of(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as context:
        response = client.get(url)
    assert response.status_code == 200
    return len(context)


@pytest.fixture
def team():
    team = TeamFactory(name="Support")
    for _ in range(3):
        CaseFactory(team=team)
    return team


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)  # sets last_login, as signing in does
    return client


def test_after_the_warm_up_a_leads_dashboard_and_report_come_from_the_cache(team):
    lead = make_agent(team=team, role=Role.LEAD)
    client = signed_in(lead)
    cold = {url: queries_of(client, url) for url in ("/dashboard/", "/reports/")}
    cache.clear()

    analytics_warm()

    for url, queries in cold.items():
        assert queries_of(client, url) < queries, f"{url} computed its figures again"


def test_agents_who_have_not_signed_in_lately_are_left_alone(team):
    agent = make_agent(team=team)
    client = signed_in(agent)
    cold = queries_of(client, "/dashboard/")
    User.objects.filter(pk=agent.pk).update(last_login=timezone.now() - timedelta(days=3))
    cache.clear()

    analytics_warm()

    assert queries_of(client, "/dashboard/") == cold


def test_the_warm_up_is_scheduled():
    names = {spec.task: spec.every_seconds for spec in default_schedules()}
    assert names["cases.tasks.analytics_warm"] == 300
