"""Fixtures shared by the whole suite.

The suite runs against PostgreSQL and Redis (pyproject's pytest `env`). Network access other
than loopback is blocked, so a test that would reach the Internet fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import socket

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.crm.factories import UserFactory

LOOPBACK = ("127.0.0.1", "::1", "localhost")
_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and host not in LOOPBACK:
        raise OSError(f"tests may only connect to loopback, not {host}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _fresh_snapshots():
    """Configuration kept per process (crm.snapshots: SLA policies, triage rules) is rebuilt
    from each test's own rows: an earlier test's rows were rolled back under it."""
    from crm.snapshots import forget_all

    forget_all()
    yield
    forget_all()


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache (this run's own Redis database): cached analytics
    (cases.analytics_cache) and rate-limit windows of an earlier test must not leak into it."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True, scope="session")
def _block_network() -> None:
    socket.socket.connect = _loopback_only  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture
def eager_celery():
    """Tasks run at once in the calling thread (what a worker would do, without one)."""
    from crm.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def agent(db):
    return UserFactory()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def web(agent) -> Client:
    """A browser-like client signed in as the agent (the web UI's session)."""
    client = Client()
    client.force_login(agent)
    return client


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


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, project_root):
    """uvicorn serving the project on the test database, as in production (PostgreSQL, Redis).

    pytest-django's live_server is WSGI and has no WebSockets, hence a real ASGI subprocess.
    Tests that use it need `transaction=True` so the server sees their rows.
    """
    with _uvicorn(project_root) as base:
        yield base


@pytest.fixture(scope="session")
def https_asgi_server(django_db_setup, project_root, graph_pki):
    """The same over HTTPS with the test PKI's certificate for 127.0.0.1: what Graph's
    (simulated) change notifications call."""
    tls = [f"--ssl-certfile={graph_pki.server_cert}", f"--ssl-keyfile={graph_pki.server_key}"]
    with _uvicorn(project_root, tls=tls, ca_file=str(graph_pki.ca_cert)) as base:
        yield base


@contextlib.contextmanager
def _uvicorn(project_root: str, *, tls: list[str] = (), ca_file: str = ""):
    import ssl
    import subprocess
    import time
    import urllib.request

    from django.db import connection

    port = free_port()
    database = connection.settings_dict
    env = dict(
        os.environ,
        DATABASE_URL=(
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/"
            f"{database['NAME']}"
        ),
    )
    process = subprocess.Popen(
        [
            os.path.join(os.path.dirname(os.sys.executable), "uvicorn"),
            "crm.asgi:application",
            "--host=127.0.0.1",
            f"--port={port}",
            "--log-level=warning",
            # Live pages hold WebSockets open: as in the Procfile, shutdown does not wait for
            # them longer than this.
            "--timeout-graceful-shutdown=5",
            *tls,
        ],
        cwd=project_root,
        env=env,
    )
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2, context=context):  # noqa: S310
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start") from None
            time.sleep(0.2)
    try:
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (never `playwright install`)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls our tests make
    # between browser steps are still plain synchronous calls.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.console_errors = errors
    yield page
    context.close()


@pytest.fixture(scope="session")
def graph_pki(tmp_path_factory):
    from graphsim.tls import create_test_pki

    return create_test_pki(tmp_path_factory.mktemp("graphsim-pki"))


@pytest.fixture
def graph_http(graph_pki):
    """An HTTP session that trusts only the simulator's CA (and ignores REQUESTS_CA_BUNDLE):
    a browser or another client talking to the simulated Microsoft directly."""
    import requests

    session = requests.Session()
    session.trust_env = False
    session.verify = str(graph_pki.ca_cert)
    return session


@pytest.fixture
def graph_simulator(graph_pki, settings):
    """The Microsoft identity platform and Graph, simulated over HTTPS on loopback; the
    project's MS_* settings point at it and trust its CA (as for a national cloud)."""
    from crm.graph import auth
    from graphsim.server import start

    server = start(graph_pki)
    server.identity.register_app(tenant="contoso", client_id="crm-app", secret="s3cret-value")
    settings.MS_AUTHORITY_HOST = server.base_url
    settings.GRAPH_API_URL = f"{server.base_url}/v1.0"
    settings.MS_CA_BUNDLE = str(graph_pki.ca_cert)
    settings.MS_TENANT_ID, settings.MS_CLIENT_ID = "contoso", "crm-app"
    settings.MS_CLIENT_SECRET = "s3cret-value"
    auth.forget_providers()
    yield server
    auth.forget_providers()
    server.shutdown()
    server.server_close()
