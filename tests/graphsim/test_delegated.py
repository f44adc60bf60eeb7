"""Delegated access as MSAL drives it: the authorization code flow with PKCE against the
simulated identity platform, refresh tokens and their revocation, and `/me` on Graph."""

import urllib.parse

import jwt
import msal
import pytest

from graphsim.identity import parse_form_post

# The CRM's callback is a GET (response_mode=query); MSAL recommends form_post on every flow.
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")

TENANT, CLIENT_ID, SECRET = "contoso", "crm-app", "s3cret-value"
REDIRECT_URI = "https://crm.example/api/v1/oauth/microsoft/callback"
AGENT = "anna.agent@contoso.example"


@pytest.fixture
def http(graph_http):
    return graph_http


@pytest.fixture
def identity(graph_simulator):
    graph_simulator.identity.register_app(
        tenant=TENANT, client_id=CLIENT_ID, secret=SECRET, redirect_uris=[REDIRECT_URI]
    )
    graph_simulator.identity.add_user(AGENT, tenant=TENANT, display_name="Anna Agent")
    graph_simulator.identity.sign_in(AGENT)
    return graph_simulator.identity


@pytest.fixture
def app(graph_simulator, http, identity):
    return msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential=SECRET,
        authority=f"{graph_simulator.base_url}/{TENANT}",
        http_client=http,
        instance_discovery=False,
    )


@pytest.fixture
def scopes(graph_simulator):
    return [f"{graph_simulator.base_url}/Mail.ReadWrite", f"{graph_simulator.base_url}/User.Read"]


def sign_in(app, http, scopes, **kwargs):
    """(flow, auth response): start the flow as the CRM's login view would and follow the
    authorize URL as the browser would, up to the redirect back to the CRM."""
    flow = app.initiate_auth_code_flow(scopes, redirect_uri=REDIRECT_URI, **kwargs)
    answer = http.get(flow["auth_uri"], allow_redirects=False)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    return flow, {k: v[0] for k, v in query.items()}


def connect(app, http, scopes):
    flow, response = sign_in(app, http, scopes)
    result = app.acquire_token_by_auth_code_flow(flow, response)
    assert "access_token" in result, result
    return result


def graph_get(graph_simulator, http, token, path):
    headers = {"Authorization": f"Bearer {token}"}
    return http.get(f"{graph_simulator.base_url}/v1.0{path}", headers=headers)


def test_msal_redeems_the_code_for_tokens_of_the_signed_in_user(app, http, scopes, identity):
    user = identity.users[AGENT]

    result = connect(app, http, scopes)

    assert result["token_type"] == "Bearer"
    assert result["refresh_token"]
    claims = result["id_token_claims"]  # MSAL already checked the nonce
    assert claims["preferred_username"] == AGENT
    assert (claims["oid"], claims["tid"], claims["aud"]) == (user.oid, user.tid, CLIENT_ID)
    assert claims["name"] == "Anna Agent"
    [account] = app.get_accounts()
    assert account["home_account_id"] == f"{user.oid}.{user.tid}"
    assert account["username"] == AGENT
    assert set(result["scope"].split()) >= set(scopes)
    assert identity.grant_counts["authorization_code"] == 1


def test_the_authorize_redirect_carries_state_and_session_state(app, http, scopes, identity):
    flow, response = sign_in(app, http, scopes, login_hint=AGENT, prompt="select_account")

    assert response["state"] == flow["state"]
    assert response["code"]
    assert response["session_state"]
    sent = identity.authorize_requests[-1]
    assert sent["code_challenge_method"] == "S256"
    assert (sent["login_hint"], sent["prompt"]) == (AGENT, "select_account")


def test_form_post_answers_with_a_form_for_the_browser_to_post(app, http, scopes):
    flow = app.initiate_auth_code_flow(scopes, redirect_uri=REDIRECT_URI, response_mode="form_post")

    page = http.get(flow["auth_uri"], allow_redirects=False)
    action, fields = parse_form_post(page.text)
    result = app.acquire_token_by_auth_code_flow(flow, fields)

    assert page.status_code == 200
    assert action == REDIRECT_URI
    assert fields["state"] == flow["state"]
    assert "access_token" in result


def test_the_id_token_is_signed_with_the_published_key(
    graph_simulator, app, http, scopes, identity
):
    result = connect(app, http, scopes)
    discovery = http.get(
        f"{graph_simulator.base_url}/{TENANT}/v2.0/.well-known/openid-configuration"
    ).json()
    [key] = http.get(discovery["jwks_uri"]).json()["keys"]

    claims = jwt.decode(
        result["id_token"],
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience=CLIENT_ID,
        issuer=discovery["issuer"],
    )

    assert claims["oid"] == identity.users[AGENT].oid


def test_a_delegated_token_reads_the_users_own_mailbox_through_me(
    graph_simulator, app, http, scopes
):
    graph_simulator.mailboxes[AGENT].add_message("inbox", subject="For Anna")
    token = connect(app, http, scopes)["access_token"]

    mine = graph_get(graph_simulator, http, token, "/me/mailFolders/inbox/messages/delta")
    by_address = graph_get(graph_simulator, http, token, f"/users/{AGENT}/messages/x")
    me = graph_get(graph_simulator, http, token, "/me")

    assert [m["subject"] for m in mine.json()["value"]] == ["For Anna"]
    assert by_address.json()["error"]["code"] == "ErrorItemNotFound"  # allowed, no such item
    assert me.json()["mail"] == AGENT


def test_a_delegated_token_is_refused_on_another_mailbox(graph_simulator, app, http, scopes):
    graph_simulator.add_mailbox("support@contoso.example")
    token = connect(app, http, scopes)["access_token"]

    other = graph_get(
        graph_simulator, http, token, "/users/support@contoso.example/mailFolders/inbox"
    )

    assert other.status_code == 403
    assert other.json()["error"]["code"] == "ErrorAccessDenied"


def test_app_tokens_keep_every_mailbox_but_have_no_me(graph_simulator, http, identity):
    token = identity.issue_token(tenant=TENANT, client_id=CLIENT_ID)

    theirs = graph_get(graph_simulator, http, token, f"/users/{AGENT}/mailFolders/inbox")
    me = graph_get(graph_simulator, http, token, "/me/messages")

    assert theirs.status_code == 200
    assert me.status_code == 400


def test_a_changed_verifier_is_refused_as_a_pkce_mismatch(app, http, scopes):
    flow, response = sign_in(app, http, scopes)
    flow["code_verifier"] = "x" * 43

    result = app.acquire_token_by_auth_code_flow(flow, response)

    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [50148]


def test_a_code_is_redeemed_once(app, http, scopes):
    flow, response = sign_in(app, http, scopes)
    first = app.acquire_token_by_auth_code_flow(dict(flow), response)

    second = app.acquire_token_by_auth_code_flow(dict(flow), response)

    assert "access_token" in first
    assert second["error"] == "invalid_grant"
    assert second["error_description"].startswith("AADSTS54005:")


def test_an_expired_code_is_refused(app, http, scopes, identity):
    flow, response = sign_in(app, http, scopes)
    identity.expire_authorization_codes()

    result = app.acquire_token_by_auth_code_flow(flow, response)

    assert result["error_codes"] == [70008]


def test_the_code_is_bound_to_its_redirect_uri(app, http, scopes, identity):
    other = "https://crm.example/other/callback"
    identity.register_app(
        tenant=TENANT, client_id=CLIENT_ID, secret=SECRET, redirect_uris=[REDIRECT_URI, other]
    )
    flow, response = sign_in(app, http, scopes)
    flow["redirect_uri"] = other

    result = app.acquire_token_by_auth_code_flow(flow, response)

    assert result["error"] == "invalid_grant"
    assert "'redirect_uri'" in result["error_description"]


def test_an_unregistered_redirect_uri_gets_an_error_page_not_a_redirect(app, http, scopes):
    flow = app.initiate_auth_code_flow(scopes, redirect_uri="https://evil.example/cb")

    answer = http.get(flow["auth_uri"], allow_redirects=False)

    assert answer.status_code == 400
    assert "Location" not in answer.headers
    assert "AADSTS50011" in answer.text


def test_denied_consent_comes_back_as_access_denied(app, http, scopes, identity):
    identity.deny_consent = True
    flow, response = sign_in(app, http, scopes)

    result = app.acquire_token_by_auth_code_flow(flow, response)

    assert response["state"] == flow["state"]
    assert "code" not in response
    assert result["error"] == "access_denied"
    assert result["error_description"].startswith("AADSTS65004:")


def test_nobody_signed_in(app, http, scopes, identity):
    identity.sign_out()

    _, interactive = sign_in(app, http, scopes)
    _, silent = sign_in(app, http, scopes, prompt="none")

    assert interactive["error"] == "access_denied"
    assert silent["error"] == "login_required"


def test_refresh_rotates_the_token_and_the_previous_one_works_once_more(
    graph_simulator, app, http, scopes
):
    first = connect(app, http, scopes)["refresh_token"]
    second = app.acquire_token_by_refresh_token(first, scopes)
    again = app.acquire_token_by_refresh_token(first, scopes)  # the answer was lost: retry

    third = app.acquire_token_by_refresh_token(second["refresh_token"], scopes)
    oldest = app.acquire_token_by_refresh_token(first, scopes)

    assert second["refresh_token"] not in (first, None)
    assert "access_token" in again
    assert "access_token" in third
    assert oldest["error"] == "invalid_grant"
    token = third["access_token"]
    assert graph_get(graph_simulator, http, token, "/me/mailFolders/inbox").status_code == 200


def test_msal_refreshes_silently_from_its_cache(graph_simulator, app, http, scopes, identity):
    connect(app, http, scopes)
    [account] = app.get_accounts()
    graph_simulator.identity.expire_all_tokens()

    result = app.acquire_token_silent(scopes, account=account, force_refresh=True)

    assert identity.grant_counts["refresh_token"] == 1
    assert graph_get(graph_simulator, http, result["access_token"], "/me").status_code == 200


def test_revoked_refresh_tokens_fail_with_invalid_grant(app, http, scopes, identity):
    result = connect(app, http, scopes)

    assert identity.revoke_refresh_tokens(AGENT) == 1
    refused = app.acquire_token_by_refresh_token(result["refresh_token"], scopes)

    assert refused["error"] == "invalid_grant"
    assert refused["error_codes"] == [50173]
    assert "revoked" in refused["error_description"]
    # A fresh sign-in works again.
    assert "refresh_token" in connect(app, http, scopes)


def test_refresh_cannot_widen_the_consented_scopes(graph_simulator, app, http, scopes):
    result = connect(app, http, scopes)

    wider = app.acquire_token_by_refresh_token(
        result["refresh_token"], [f"{graph_simulator.base_url}/Calendars.ReadWrite"]
    )

    assert wider["error_codes"] == [65001]


def test_a_wrong_secret_is_refused_before_the_code_is_looked_at(
    graph_simulator, http, scopes, identity, app
):
    flow, response = sign_in(app, http, scopes)
    impostor = msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential="wrong",
        authority=f"{graph_simulator.base_url}/{TENANT}",
        http_client=http,
        instance_discovery=False,
    )

    result = impostor.acquire_token_by_auth_code_flow(flow, response)

    assert result["error"] == "invalid_client"


def test_me_works_inside_a_batch_and_the_403_too(graph_simulator, app, http, scopes):
    graph_simulator.add_mailbox("support@contoso.example")
    token = connect(app, http, scopes)["access_token"]
    body = {
        "requests": [
            {"id": "1", "method": "GET", "url": "/me/mailFolders/inbox"},
            {"id": "2", "method": "GET", "url": "/users/support@contoso.example/mailFolders"},
        ]
    }

    answer = http.post(
        f"{graph_simulator.base_url}/v1.0/$batch",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    ).json()

    statuses = {r["id"]: r["status"] for r in answer["responses"]}
    assert statuses == {"1": 200, "2": 403}
