"""Schemathesis walks every documented operation with generated input: no input may cause a
5xx. Bounded (a few examples per operation) to stay inside the suite's time budget."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from crm import services
from tests.cases.factories import CaseFactory, CustomerFactory, TaskFactory, TeamFactory, make_agent


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """As Django's test client does: keep the test's connection (and its transaction) open
    across the WSGI requests instead of closing it at the end of each."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(db) -> str:
    team = TeamFactory()
    agent = make_agent(team=team, role="lead")
    case = CaseFactory(team=team, customer=CustomerFactory())
    TaskFactory(case=case, assignee=agent)
    return services.api_token_create(user=agent, name="fuzz")[1]


schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
# Valid and invalid input, a bounded number of examples per operation. The coverage phase
# (every boundary of every parameter) took ~95 s here; it belongs to a longer, separate run.
schema.config.phases.update(phases=["examples", "fuzzing"])
schema.config.generation.update(modes=list(GenerationMode), deterministic=True)


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_generated_request_causes_a_server_error(case, token):
    response = case.call(headers={"Authorization": f"Token {token}"})

    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )
