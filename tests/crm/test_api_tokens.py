"""API keys: created in admin or by command, shown once, stored hashed, revocable."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from crm import services
from crm.models import ApiToken
from tests.crm.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_a_token_authenticates_api_requests_and_records_its_use(api_client, agent):
    token, key = services.api_token_create(user=agent, name="integration")

    response = api_client.get("/api/v1/teams", HTTP_AUTHORIZATION=f"Token {key}")

    assert response.status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert key not in {token.digest, token.prefix}
    assert token.prefix == key[:8]


def test_bearer_scheme_is_accepted_too(api_client, agent):
    _, key = services.api_token_create(user=agent, name="integration")

    response = api_client.get("/api/v1/teams", HTTP_AUTHORIZATION=f"Bearer {key}")

    assert response.status_code == 200


@pytest.mark.parametrize(
    "header",
    ["Token not-a-real-key", "Token", "Token two parts", "Bearer \xff"],
)
def test_bad_credentials_get_401_with_a_challenge(api_client, header):
    response = api_client.get("/api/v1/teams", HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Token realm="api"'
    assert "detail" in response.json()


def test_revoked_and_expired_tokens_are_refused(api_client, agent):
    revoked, revoked_key = services.api_token_create(user=agent, name="old")
    services.api_token_revoke(token=revoked)
    _, expired_key = services.api_token_create(
        user=agent, name="temp", expires_at=timezone.now() - timedelta(minutes=1)
    )

    for key in (revoked_key, expired_key):
        response = api_client.get("/api/v1/teams", HTTP_AUTHORIZATION=f"Token {key}")
        assert response.status_code == 401


def test_token_of_a_deactivated_user_is_refused(api_client):
    user = UserFactory(is_active=False)
    _, key = services.api_token_create(user=user, name="x")

    response = api_client.get("/api/v1/teams", HTTP_AUTHORIZATION=f"Token {key}")

    assert response.status_code == 401


def test_admin_shows_a_new_key_once_and_it_works(client, api_client):
    admin = UserFactory(is_staff=True, is_superuser=True)
    owner = UserFactory()
    client.force_login(admin)

    response = client.post(
        "/admin/crm/apitoken/add/",
        {"user": owner.pk, "name": "airtable-export", "expires_at_0": "", "expires_at_1": ""},
        follow=True,
    )

    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"] if "API key" in str(m)]
    assert len(shown) == 1
    key = shown[0].split(": ", 1)[1].split()[0]
    token = ApiToken.objects.get(name="airtable-export")
    assert token.user == owner
    assert api_client.get("/api/v1/teams", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    detail = client.get(f"/admin/crm/apitoken/{token.pk}/change/")
    assert key not in detail.content.decode()


def test_command_prints_a_working_key(api_client, capsys):
    user = UserFactory()

    call_command("api_token", user.email.upper(), "--name", "ci")

    key = capsys.readouterr().out.strip()
    assert api_client.get("/api/v1/teams", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
