"""Fixtures for the simulator's own tests: a shared mailbox and an authorized HTTPS session."""

import pytest
import requests


@pytest.fixture
def mailbox(graph_simulator):
    return graph_simulator.add_mailbox("support@contoso.example")


@pytest.fixture
def graph(graph_simulator, graph_pki):
    """(session, base url of the mailbox); the session trusts only the simulator's CA."""
    token = graph_simulator.identity.issue_token()
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides verify
    session.verify = str(graph_pki.ca_cert)
    session.headers["Authorization"] = f"Bearer {token}"
    base = f"{graph_simulator.base_url}/v1.0/users/support@contoso.example"
    return session, base
