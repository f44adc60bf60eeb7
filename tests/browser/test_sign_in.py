"""Sign-in in a real browser against the production configuration (uvicorn, PostgreSQL, Redis)."""

import json

import pytest
from websockets.sync.client import connect as ws_connect

from tests.crm.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_agent_signs_in_and_out_in_chromium(page, asgi_server):
    agent = UserFactory(email="robin@example.com")

    page.goto(f"{asgi_server}/")
    assert "/accounts/login/" in page.url
    page.get_by_label("Email").fill("Robin@Example.com")
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign In").click()

    page.wait_for_url(f"{asgi_server}/cases/**")
    assert page.get_by_role("heading", level=1).inner_text().startswith("Cases")
    assert agent.email in page.content()
    assert page.console_errors == []

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/accounts/**")


def test_wrong_password_shows_an_error_in_the_form(page, asgi_server):
    UserFactory(email="robin@example.com")

    page.goto(f"{asgi_server}/accounts/login/")
    page.get_by_label("Email").fill("robin@example.com")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign In").click()

    assert page.get_by_text("not correct").is_visible()
    assert "/accounts/login/" in page.url


def test_api_docs_render_under_the_content_security_policy(page, asgi_server):
    agent = UserFactory()
    page.goto(f"{asgi_server}/accounts/login/")
    page.get_by_label("Email").fill(agent.email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{asgi_server}/cases/**")

    page.goto(f"{asgi_server}/api/docs/")

    page.get_by_text("/api/v1/teams").first.wait_for(timeout=15000)
    assert page.console_errors == []


def test_websockets_use_the_redis_channel_layer(asgi_server):
    url = asgi_server.replace("http://", "ws://") + "/ws/health"

    with ws_connect(url, origin=asgi_server, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["status"] == "ok"
        ws.send(json.dumps({"through": "redis"}))
        assert json.loads(ws.recv(timeout=10)) == {"echo": {"through": "redis"}}
