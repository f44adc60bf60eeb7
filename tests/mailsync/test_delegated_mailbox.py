"""An agent connects their own Microsoft 365 mailbox: the authorization code flow through the
CRM's login and callback pages and the simulated identity platform, encrypted refresh tokens,
delegated sync, and the health of the connection (reconnect needed, stale mailbox alerts)."""

from __future__ import annotations

import json
import urllib.parse
from datetime import timedelta

import pytest
import requests
from cryptography.fernet import Fernet
from django.db import connection
from django.test import Client
from django.utils import timezone

from mailsync import services
from mailsync.models import DelegatedGrant, Mailbox, Message
from mailsync.services import delegated
from mailsync.tasks import check_mailbox_health
from tests.cases.factories import make_agent
from tests.crm.factories import UserFactory
from tests.mailsync.conftest import graph_message

# The CRM's callback is a GET (response_mode=query); MSAL recommends form_post on every flow.
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended"),
]

AGENT_MAILBOX = "anna.agent@contoso.example"
CALLBACK = "http://testserver/api/v1/oauth/microsoft/callback"
LOGIN = "/api/v1/oauth/microsoft/login"


@pytest.fixture
def identity(graph):
    graph.identity.register_app(
        tenant="contoso", client_id="crm-app", secret="s3cret-value", redirect_uris=[CALLBACK]
    )
    graph.identity.add_user(AGENT_MAILBOX, tenant="contoso", display_name="Anna Agent")
    graph.identity.sign_in(AGENT_MAILBOX)
    return graph.identity


@pytest.fixture
def at_microsoft(graph_http):
    """The agent's browser on Microsoft's side."""
    return graph_http


@pytest.fixture(autouse=True)
def fresh_tokens():
    delegated.forget_tokens()
    yield
    delegated.forget_tokens()


def microsoft_answer(web: Client, at_microsoft: requests.Session, **params: str) -> str:
    """Start at the CRM's login page and follow Microsoft's redirect back; returns the
    callback URL (path and query) the browser is sent to."""
    response = web.get(LOGIN, {"next": "/profile/", **params})
    assert response.status_code == 302
    authorize = response["Location"]
    assert authorize.startswith(f"{web_graph_base(authorize)}/contoso/oauth2/v2.0/authorize?")
    answer = at_microsoft.get(authorize, allow_redirects=False)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    return location.removeprefix("http://testserver")


def web_graph_base(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def connect(web: Client, at_microsoft: requests.Session):
    """The whole sign-in: returns the callback's response."""
    return web.get(microsoft_answer(web, at_microsoft))


def shown_messages(response) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


def test_an_agent_connects_their_mailbox_and_it_syncs_with_their_sign_in(
    web, agent, identity, graph, at_microsoft, django_capture_on_commit_callbacks
):
    graph.mailboxes[AGENT_MAILBOX].add_message("inbox", **graph_message(1))

    with django_capture_on_commit_callbacks() as callbacks:
        response = connect(web, at_microsoft)

    assert response.status_code == 302
    assert response["Location"] == "/profile/"
    assert shown_messages(response) == [f"{AGENT_MAILBOX} is connected; its mail is syncing now."]
    mailbox = Mailbox.objects.get(address=AGENT_MAILBOX)
    assert (mailbox.owner, mailbox.team, mailbox.kind) == (agent, None, "m365")
    assert mailbox.display_name == "Anna Agent"
    grant = mailbox.grant
    assert grant.username == AGENT_MAILBOX
    assert not grant.reconnect_needed
    assert grant.connected_by == agent
    assert grant.last_token_at is not None
    # The PKCE verifier went to the token endpoint and the code was redeemed once.
    authorize_request = identity.authorize_requests[-1]
    assert authorize_request["code_challenge_method"] == "S256"
    assert identity.grant_counts["authorization_code"] == 1
    assert len(callbacks) == 1  # the first sync is queued

    services.mailbox_sync(mailbox=mailbox)

    message = Message.objects.get(mailbox=mailbox)
    assert message.subject == "Invoice 1 is wrong"
    assert Mailbox.objects.get(pk=mailbox.pk).last_clean_sync_at is not None


def test_the_refresh_token_is_stored_encrypted(web, agent, identity, at_microsoft, settings):
    connect(web, at_microsoft)
    grant = DelegatedGrant.objects.get(mailbox__address=AGENT_MAILBOX)
    with connection.cursor() as cursor:
        cursor.execute("SELECT token_cache FROM mailsync_delegatedgrant WHERE id = %s", [grant.pk])
        stored = cursor.fetchone()[0]

    refresh_tokens = json.loads(grant.token_cache)["RefreshToken"]
    secret = next(iter(refresh_tokens.values()))["secret"]
    assert secret.startswith("sim.rt.")
    assert "sim.rt." not in stored
    assert "RefreshToken" not in stored
    key = settings.FIELD_ENCRYPTION_KEY.split(",")[0]
    assert Fernet(key).decrypt(stored.encode()).decode() == grant.token_cache


def test_an_expired_access_token_is_renewed_with_the_rotated_refresh_token(
    web, agent, identity, graph, at_microsoft
):
    connect(web, at_microsoft)
    mailbox = Mailbox.objects.get(address=AGENT_MAILBOX)
    services.mailbox_sync(mailbox=mailbox)
    first_cache = DelegatedGrant.objects.get(mailbox=mailbox).token_cache
    graph.mailboxes[AGENT_MAILBOX].add_message("inbox", **graph_message(2))
    identity.expire_all_tokens()  # Graph answers 401 until the token is renewed

    services.mailbox_sync(mailbox=mailbox)

    assert identity.grant_counts["refresh_token"] == 1
    grant = DelegatedGrant.objects.get(mailbox=mailbox)
    assert grant.token_cache != first_cache  # Entra ID rotated the refresh token; we kept it
    assert grant.refreshed_at > grant.connected_at
    assert not grant.last_error
    assert Message.objects.filter(mailbox=mailbox, subject="Invoice 2 is wrong").exists()


def test_a_revoked_sign_in_asks_the_owner_to_reconnect_and_stops_the_rounds(
    web, agent, identity, at_microsoft, mailoutbox, django_capture_on_commit_callbacks
):
    connect(web, at_microsoft)
    mailbox = Mailbox.objects.get(address=AGENT_MAILBOX)
    identity.revoke_refresh_tokens(AGENT_MAILBOX)
    identity.expire_all_tokens()

    with django_capture_on_commit_callbacks(execute=True):
        services.mailbox_sync(mailbox=mailbox)

    grant = DelegatedGrant.objects.get(mailbox=mailbox)
    assert grant.reconnect_needed
    assert "AADSTS50173" in grant.last_error
    mailbox.refresh_from_db()
    assert "must be connected again by its owner" in mailbox.last_error
    assert mailbox not in services.mailboxes_to_sync()
    assert [m.to for m in mailoutbox] == [[agent.email]]
    assert f"Connect your mailbox {AGENT_MAILBOX} again" in mailoutbox[0].subject
    # Nothing more is asked of Microsoft until the agent signs in again.
    requests_before = identity.token_requests
    services.mailbox_sync(mailbox=mailbox)
    assert identity.token_requests == requests_before
    assert len(mailoutbox) == 1

    profile = web.get("/profile/").content.decode()
    assert "Reconnect needed" in profile
    assert "AADSTS50173" in profile
    assert f"login_hint={urllib.parse.quote(AGENT_MAILBOX)}" in profile

    response = connect(web, at_microsoft)

    assert shown_messages(response) == [f"{AGENT_MAILBOX} is connected; its mail is syncing now."]
    grant.refresh_from_db()
    assert not grant.reconnect_needed
    assert grant.last_error == ""
    assert mailbox in services.mailboxes_to_sync()
    assert Mailbox.objects.filter(address=AGENT_MAILBOX).count() == 1


def test_admins_see_the_access_of_each_mailbox(web, agent, identity, at_microsoft, remote, mailbox):
    connect(web, at_microsoft)
    identity.revoke_refresh_tokens(AGENT_MAILBOX)
    own = Mailbox.objects.get(address=AGENT_MAILBOX)
    services.grant_check(mailbox=own)
    admin = Client()
    admin.force_login(UserFactory(is_staff=True, is_superuser=True))

    page = admin.get("/admin/mailsync/mailbox/").content.decode()
    detail = admin.get(f"/admin/mailsync/mailbox/{own.pk}/change/").content.decode()

    assert "app (shared)" in page
    assert "reconnect needed" in page
    assert "AADSTS50173" in detail
    assert "Delegated access" in detail


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ({"state": "forged"}, "does not belong to the sign-in started here"),
        ({"code": "made-up"}, "Microsoft refused the sign-in"),
    ],
)
def test_a_forged_answer_connects_nothing(web, agent, identity, at_microsoft, tamper, expected):
    location = urllib.parse.urlsplit(microsoft_answer(web, at_microsoft))
    query = {**dict(urllib.parse.parse_qsl(location.query)), **tamper}

    response = web.get(location.path, query)

    assert response.status_code == 302
    assert response["Location"] == "/profile/"
    [text] = shown_messages(response)
    assert text.startswith("The mailbox was not connected.")
    assert expected in text
    assert not Mailbox.objects.filter(address=AGENT_MAILBOX).exists()


def test_denied_consent_and_replayed_answers_connect_nothing(web, agent, identity, at_microsoft):
    identity.deny_consent = True
    response = connect(web, at_microsoft)
    [text] = shown_messages(response)
    assert "access_denied" in text or "AADSTS65004" in text

    identity.deny_consent = False
    answer = microsoft_answer(web, at_microsoft)
    web.get(answer)
    replay = web.get(answer)  # the flow left the session with the first use

    assert "does not belong to a sign-in started in this browser" in shown_messages(replay)[-1]
    assert Mailbox.objects.filter(address=AGENT_MAILBOX).count() == 1


def test_a_mailbox_that_belongs_to_others_is_not_taken_over(
    web, agent, identity, at_microsoft, team, graph
):
    services.mailbox_connect(address=AGENT_MAILBOX, team=team)

    response = connect(web, at_microsoft)

    assert "already connected for the team Support" in shown_messages(response)[0]
    assert Mailbox.objects.get(address=AGENT_MAILBOX).owner is None
    assert not DelegatedGrant.objects.exists()


def test_login_needs_a_signed_in_agent_and_a_safe_return_address(web, identity):
    anonymous = Client().get(LOGIN)
    assert anonymous.status_code == 302
    assert "/accounts/login/" in anonymous["Location"]

    web.get(LOGIN, {"next": "https://evil.example/"})
    assert web.session["mailsync.microsoft_sign_in"]["next"] == "/"


def test_the_owner_removes_their_mailbox_from_the_profile(web, agent, identity, at_microsoft):
    connect(web, at_microsoft)
    mailbox = Mailbox.objects.get(address=AGENT_MAILBOX)
    other = Client()
    other.force_login(make_agent())

    assert other.post(f"/profile/mailboxes/{mailbox.pk}/remove").status_code == 404
    response = web.post(f"/profile/mailboxes/{mailbox.pk}/remove")

    assert response.status_code == 302
    assert not Mailbox.objects.filter(pk=mailbox.pk).exists()
    assert not DelegatedGrant.objects.exists()


def test_an_unused_sign_in_is_refreshed_daily_and_a_revoked_one_found(
    web, agent, identity, at_microsoft, eager_celery
):
    connect(web, at_microsoft)
    DelegatedGrant.objects.update(refreshed_at=timezone.now() - timedelta(hours=25))

    check_mailbox_health.delay()

    assert identity.grant_counts["refresh_token"] == 1
    grant = DelegatedGrant.objects.get()
    assert timezone.now() - grant.refreshed_at < timedelta(minutes=1)

    check_mailbox_health.delay()  # refreshed recently: not again
    assert identity.grant_counts["refresh_token"] == 1

    identity.revoke_refresh_tokens(AGENT_MAILBOX)
    DelegatedGrant.objects.update(refreshed_at=timezone.now() - timedelta(hours=25))
    check_mailbox_health.delay()
    assert DelegatedGrant.objects.get().reconnect_needed


def test_a_stale_mailbox_is_reported_to_admins_once_until_it_syncs_again(
    remote, mailbox, settings, mailoutbox
):
    admin = UserFactory(is_staff=True, is_superuser=True, email="ops@crm.example")
    settings.MAILBOX_SYNC_ALERT_MINUTES = 60
    Mailbox.objects.filter(pk=mailbox.pk).update(
        created_at=timezone.now() - timedelta(hours=3),
        last_clean_sync_at=timezone.now() - timedelta(hours=2),
        last_error="Microsoft Graph 503 ServiceUnavailable: try later",
    )
    fresh = services.mailbox_connect(address="fresh@contoso.example", team=mailbox.team)

    check_mailbox_health()
    check_mailbox_health()

    assert len(mailoutbox) == 1
    email = mailoutbox[0]
    assert email.to == [admin.email]
    assert email.subject.endswith(f"Mailbox {mailbox.address} has stopped syncing")
    assert "503 ServiceUnavailable" in email.body
    assert fresh.address not in email.body
    client = Client()
    client.force_login(admin)
    assert (
        f"Not synced for over 60 minutes: {mailbox.address}"
        in client.get("/admin/").content.decode()
    )

    services.mailbox_sync(mailbox=mailbox)  # a clean round
    mailbox.refresh_from_db()
    assert mailbox.stale_alert_sent_at is None
    assert mailbox.last_clean_sync_at is not None
    Mailbox.objects.filter(pk=mailbox.pk).update(
        last_clean_sync_at=timezone.now() - timedelta(hours=2)
    )
    check_mailbox_health()
    assert len(mailoutbox) == 2


def test_a_rotated_encryption_key_still_opens_old_tokens_and_a_lost_key_asks_to_reconnect(
    web, agent, identity, at_microsoft, settings
):
    connect(web, at_microsoft)
    original = DelegatedGrant.objects.get().token_cache
    old_key = settings.FIELD_ENCRYPTION_KEY
    settings.FIELD_ENCRYPTION_KEY = f"{Fernet.generate_key().decode()},{old_key}"
    assert DelegatedGrant.objects.get().token_cache == original

    settings.FIELD_ENCRYPTION_KEY = Fernet.generate_key().decode()  # the old key is gone
    grant = services.grant_check(mailbox=Mailbox.objects.get(address=AGENT_MAILBOX))
    assert grant.reconnect_needed
    assert grant.token_cache == ""
    assert "cannot be decrypted with FIELD_ENCRYPTION_KEY" in grant.last_error

    settings.FIELD_ENCRYPTION_KEY = old_key  # nothing was overwritten meanwhile
    assert DelegatedGrant.objects.get().token_cache == original
