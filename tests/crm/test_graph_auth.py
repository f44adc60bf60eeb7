"""App-only tokens: MSAL runs for real against the simulated identity platform over HTTPS."""

import pytest

from crm.graph import auth


def test_a_token_is_fetched_once_and_cached(graph_simulator):
    provider = auth.token_provider()

    first, second = provider.token(), provider.token()

    assert first == second
    assert graph_simulator.identity.token_valid(first)
    assert graph_simulator.identity.token_requests == 1
    assert auth.token_provider() is provider


def test_invalidating_after_a_401_fetches_a_new_token(graph_simulator):
    provider = auth.token_provider()
    old = provider.token()
    graph_simulator.identity.expire_all_tokens()

    provider.invalidate()
    new = provider.token()

    assert new != old
    assert graph_simulator.identity.token_valid(new)
    assert graph_simulator.identity.token_requests == 2


def test_a_wrong_secret_is_a_typed_error_with_azure_ads_reason(graph_simulator):
    provider = auth.token_provider(client_secret="wrong")

    with pytest.raises(auth.GraphAuthError, match="AADSTS7000215: Invalid client secret"):
        provider.token()


def test_an_unknown_app_is_refused(graph_simulator):
    with pytest.raises(auth.GraphAuthError, match="AADSTS700016"):
        auth.token_provider(client_id="someone-else").token()


def test_environment_ca_variables_do_not_override_our_trust(graph_simulator, monkeypatch, tmp_path):
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(empty))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(empty))

    assert auth.token_provider().token()


def test_without_the_extra_ca_the_simulator_is_not_trusted(graph_simulator, settings):
    settings.MS_CA_BUNDLE = ""

    with pytest.raises(auth.GraphAuthError, match="could not be reached"):
        auth.token_provider().token()


def test_the_combined_bundle_keeps_the_system_cas(graph_simulator, graph_pki):
    bundle = auth.trusted_ca_bundle()

    text = open(bundle).read()
    assert graph_pki.ca_cert.read_text().strip() in text
    assert text.count("BEGIN CERTIFICATE") > 10


def test_missing_configuration_says_what_to_set(settings):
    settings.MS_TENANT_ID = ""

    with pytest.raises(auth.GraphAuthError, match="set MS_TENANT_ID, MS_CLIENT_ID"):
        auth.token_provider()


def test_the_scope_follows_the_graph_host(settings):
    settings.GRAPH_API_URL = "https://graph.microsoft.us/v1.0"

    assert auth.graph_scope() == "https://graph.microsoft.us/.default"
