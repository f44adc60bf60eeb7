"""Fixtures shared by the whole suite.

The suite runs against PostgreSQL and Redis (pyproject's pytest `env`). Network access other
than loopback is blocked, so a test that would reach the Internet fails instead of hanging.
"""

from __future__ import annotations

import os
import socket

import pytest
from rest_framework.test import APIClient

from tests.crm.factories import UserFactory

LOOPBACK = ("127.0.0.1", "::1", "localhost")
_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and host not in LOOPBACK:
        raise OSError(f"tests may only connect to loopback, not {host}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def _block_network() -> None:
    socket.socket.connect = _loopback_only  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture
def agent(db):
    return UserFactory()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def agent_client(agent) -> APIClient:
    client = APIClient()
    client.force_login(agent)
    return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def project_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
