"""The pages and documents the foundation serves: sign-in, admin, API docs, metrics."""

import pytest
from django.test import override_settings

from tests.crm.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_home_sends_anonymous_visitors_to_sign_in(client):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_agent_signs_in_with_email_and_password(client):
    agent = UserFactory(email="Dana@Example.com")
    assert agent.email == "dana@example.com"

    response = client.post(
        "/accounts/login/", {"login": "dana@example.com", "password": DEFAULT_PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == "/"
    home = client.get("/", follow=True)
    assert home.redirect_chain == [("/cases/", 302)]
    assert agent.email in home.content.decode()


def test_wrong_password_is_refused_with_a_message(client):
    UserFactory(email="dana@example.com")

    response = client.post("/accounts/login/", {"login": "dana@example.com", "password": "nope"})

    assert response.status_code == 200
    assert "not correct" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_public_signup_is_closed(client):
    response = client.get("/accounts/signup/")

    assert "Sign Up Closed" in response.content.decode()
    sign_in = client.get("/accounts/login/").content.decode()
    assert "sign up" not in sign_in.lower()
    assert 'href="/accounts/password/reset/"' in sign_in


def test_an_agent_can_set_up_totp(client):
    agent = UserFactory()
    client.post("/accounts/login/", {"login": agent.email, "password": DEFAULT_PASSWORD})

    response = client.get("/accounts/2fa/")

    assert response.status_code == 200
    assert "Authenticator App" in response.content.decode()
    assert "/accounts/2fa/totp/activate/" in response.content.decode()


def test_pages_carry_security_headers(client):
    response = client.get("/accounts/login/")

    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_admin_is_titled_for_the_product(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    response = client.get("/admin/")

    assert response.status_code == 200
    assert "Support CRM administration" in response.content.decode()


def test_openapi_schema_documents_the_api_and_its_token_scheme(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/teams" in schema["paths"]
    assert schema["components"]["securitySchemes"]["apiToken"]["in"] == "header"


def test_swagger_ui_is_served_from_this_server_not_a_cdn(client):
    response = client.get("/api/docs/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn" not in page.lower()
    assert client.get("/api/docs/?script=").status_code == 200


def test_metrics_count_requests_by_view(client):
    probe = client.get("/healthz")
    assert probe["Server-Timing"].startswith("app;dur=")

    response = client.get("/metrics")

    text = response.content.decode()
    assert response.status_code == 200
    assert 'crm_http_responses_total{status="2xx",view="healthz"}' in text
    assert "crm_http_request_duration_seconds_bucket" in text


def test_activesync_path_is_reserved_with_a_clear_answer(client):
    response = client.post(
        "/Microsoft-Server-ActiveSync?Cmd=Sync", content_type="application/vnd.ms-sync.wbxml"
    )

    assert response.status_code == 501
    assert "not available" in response.content.decode()


@override_settings(DEBUG=False)
def test_unknown_page_is_a_404_not_a_500(client):
    assert client.get("/no/such/page").status_code == 404
