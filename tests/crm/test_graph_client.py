"""The Graph client against the simulator: retries what is transient, honours Retry-After,
refetches tokens on 401, and raises typed errors for the rest."""

import pytest

from crm.graph.client import (
    GraphClient,
    GraphError,
    GraphNotFound,
    GraphSyncStateExpired,
    GraphThrottled,
    GraphUnavailable,
)


@pytest.fixture
def client(graph_simulator, settings):
    settings.GRAPH_RETRY_BASE_SECONDS = 0.01
    graph_simulator.add_mailbox("support@contoso.example")
    return GraphClient()


FOLDERS = "users/support@contoso.example/mailFolders"


def test_reads_through_429_503_504_and_dropped_connections(client, graph_simulator):
    graph_simulator.script_faults(("429", "0.2"), ("503", None), ("drop", None), ("504", "0"))

    body = client.get(FOLDERS)

    assert "Inbox" in {f["displayName"] for f in body["value"]}
    assert client.stats == {"requests": 5, "retries": 4, "throttled": 1}


def test_decimal_retry_after_is_honoured(client, graph_simulator, caplog):
    graph_simulator.script_faults(("429", "0.35"))

    with caplog.at_level("INFO", logger="crm.graph.client"):
        client.get(FOLDERS)

    assert "retrying in 0.35 s after HTTP 429" in caplog.text


def test_retries_are_bounded(graph_simulator, settings):
    settings.GRAPH_RETRY_BASE_SECONDS = 0.01
    graph_simulator.add_mailbox("support@contoso.example")
    client = GraphClient(max_retries=2)
    graph_simulator.script_faults(*[("429", "0")] * 3)

    with pytest.raises(GraphThrottled, match="HTTP 429 after 2 retries"):
        client.get(FOLDERS)
    graph_simulator.script_faults(*[("drop", None)] * 3)
    with pytest.raises(GraphUnavailable, match="ConnectionError after 2 retries"):
        client.get(FOLDERS)


def test_an_expired_token_is_refetched_once(client, graph_simulator):
    client.get(FOLDERS)
    graph_simulator.identity.expire_all_tokens()

    client.get(FOLDERS)

    assert graph_simulator.identity.token_requests == 2


def test_expired_delta_state_is_its_own_error(client, graph_simulator):
    mailbox = graph_simulator.mailboxes["support@contoso.example"]
    mailbox.add_message("inbox", subject="x")
    delta = client.get(f"{FOLDERS}/inbox/messages/delta")["@odata.deltaLink"]
    mailbox.expire_sync_state("inbox")

    with pytest.raises(GraphSyncStateExpired, match="410 syncStateNotFound"):
        client.get(delta)


def test_other_errors_are_typed_with_graphs_code(client):
    with pytest.raises(GraphNotFound) as missing:
        client.get("users/nobody@contoso.example/mailFolders")
    with pytest.raises(GraphError) as bad:
        client.get("users/support@contoso.example/calendar")

    assert missing.value.graph_code == "ErrorInvalidUser"
    assert bad.value.status == 400
