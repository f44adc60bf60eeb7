"""The Graph client against the simulator: retries what is transient, honours Retry-After,
refetches tokens on 401, raises typed errors for the rest, and speaks JSON batching."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crm.graph.client import (
    GraphBadResponse,
    GraphClient,
    GraphError,
    GraphNotFound,
    GraphSyncStateExpired,
    GraphThrottled,
    GraphUnavailable,
)

ADDRESS = "support@contoso.example"
FOLDERS = f"users/{ADDRESS}/mailFolders"


@pytest.fixture
def client(graph_simulator, settings):
    settings.GRAPH_RETRY_BASE_SECONDS = 0.01
    graph_simulator.add_mailbox(ADDRESS)
    return GraphClient()


def test_reads_through_429_503_504_and_dropped_connections(client, graph_simulator):
    graph_simulator.script_faults(("429", "0.2"), ("503", None), ("drop", None), ("504", "0"))

    body = client.get(FOLDERS)

    assert "Inbox" in {f["displayName"] for f in body["value"]}
    assert client.stats == {
        "requests": 5,
        "retries": 4,
        "throttled": 1,
        "subrequests": 0,
        "subrequest_retries": 0,
    }


def test_decimal_retry_after_is_honoured(client, graph_simulator, caplog):
    graph_simulator.script_faults(("429", "0.35"))

    with caplog.at_level("INFO", logger="crm.graph.client"):
        client.get(FOLDERS)

    assert "retrying in 0.35 s after HTTP 429" in caplog.text


def test_retries_are_bounded(graph_simulator, settings):
    settings.GRAPH_RETRY_BASE_SECONDS = 0.01
    graph_simulator.add_mailbox(ADDRESS)
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
    mailbox = graph_simulator.mailboxes[ADDRESS]
    mailbox.add_message("inbox", subject="x")
    delta = client.get(f"{FOLDERS}/inbox/messages/delta")["@odata.deltaLink"]
    mailbox.expire_sync_state("inbox")

    with pytest.raises(GraphSyncStateExpired, match="410 syncStateNotFound"):
        client.get(delta)


def test_other_errors_are_typed_with_graphs_code(client):
    with pytest.raises(GraphNotFound) as missing:
        client.get("users/nobody@contoso.example/mailFolders")
    with pytest.raises(GraphError) as bad:
        client.get(f"users/{ADDRESS}/calendar")

    assert missing.value.graph_code == "ErrorInvalidUser"
    assert bad.value.status == 400


# --- Bodies lost on the way ------------------------------------------------------------------


def test_a_truncated_json_body_is_retried_like_a_503(client, graph_simulator):
    graph_simulator.script_faults(("garbage", None), ("garbage", None))

    body = client.get(FOLDERS)

    assert "Inbox" in {f["displayName"] for f in body["value"]}
    assert client.stats["retries"] == 2


def test_a_body_that_never_parses_is_a_typed_error(graph_simulator, settings):
    settings.GRAPH_RETRY_BASE_SECONDS = 0.01
    graph_simulator.add_mailbox(ADDRESS)
    client = GraphClient(max_retries=1)
    graph_simulator.script_faults(("garbage", None), ("garbage", None))

    with pytest.raises(GraphBadResponse, match="did not parse as JSON after 1 retries") as error:
        client.get(FOLDERS)
    assert error.value.status == 200


class CutShortServer(ThreadingHTTPServer):
    """Plain HTTP on loopback that answers the first request to each path with half of its
    body and then hangs up (the connection dropped mid-body), later ones in full."""

    BODY = b'{"value": [{"id": "1", "displayName": "Inbox"}]}'

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), CutShortHandler)
        self.seen: list[tuple[str, str]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1.0"


class CutShortHandler(BaseHTTPRequestHandler):
    server: CutShortServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        return

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        first = (self.command, self.path) not in self.server.seen
        self.server.seen.append((self.command, self.path))
        body = self.server.BODY
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if first else body)
        if first:
            self.close_connection = True

    do_GET = do_POST = _answer


@pytest.fixture
def cut_short_server():
    server = CutShortServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_connection_dropped_mid_body_is_retried_when_safe_to_repeat(
    graph_simulator, settings, cut_short_server
):
    settings.GRAPH_RETRY_BASE_SECONDS = 0.01
    client = GraphClient(base_url=cut_short_server.base_url)

    assert client.get("users/x/mailFolders")["value"][0]["displayName"] == "Inbox"
    with pytest.raises(GraphBadResponse, match="ChunkedEncodingError not retried: POST"):
        client.request_json("POST", "users/x/sendMail", json={})

    assert cut_short_server.seen == [
        ("GET", "/v1.0/users/x/mailFolders"),
        ("GET", "/v1.0/users/x/mailFolders"),
        ("POST", "/v1.0/users/x/sendMail"),
    ]


# --- JSON batching ---------------------------------------------------------------------------


@pytest.fixture
def messages(client, graph_simulator):
    """Immutable ids of 45 inbox messages, subjects "m0" to "m44"."""
    mailbox = graph_simulator.mailboxes[ADDRESS]
    return mailbox.add_messages("inbox", [{"subject": f"m{i}"} for i in range(45)])


def message_url(message_id: str) -> str:
    return f"/users/{ADDRESS}/messages/{message_id}?$select=subject"


def test_a_batch_answers_every_request_in_order_in_posts_of_20(client, graph_simulator, messages):
    requests_before = graph_simulator.graph_requests

    answers = client.batch([{"method": "GET", "url": message_url(m)} for m in messages])

    assert [a["id"] for a in answers] == [str(i) for i in range(45)]
    assert [a["body"]["subject"] for a in answers] == [f"m{i}" for i in range(45)]
    assert {a["status"] for a in answers} == {200}
    assert graph_simulator.graph_requests - requests_before == 3
    assert client.stats["subrequests"] == 45
    assert client.stats["requests"] == 3


def test_only_throttled_subrequests_are_resent_after_the_longest_retry_after(
    client, graph_simulator, messages, caplog
):
    graph_simulator.script_faults(
        ("ok", None), ("429", "0.3"), ("ok", None), ("503", "0.1"), ("ok", None)
    )
    requests = [
        {"id": f"s{i}", "method": "GET", "url": message_url(m)} for i, m in enumerate(messages[:4])
    ]

    with caplog.at_level("INFO", logger="crm.graph.client"):
        answers = client.batch(requests)

    assert [(a["id"], a["status"], a["body"]["subject"]) for a in answers] == [
        ("s0", 200, "m0"),
        ("s1", 200, "m1"),
        ("s2", 200, "m2"),
        ("s3", 200, "m3"),
    ]
    assert "re-sending 2 batch sub-requests in 0.30 s after HTTP 429, 503" in caplog.text
    assert graph_simulator.batch_subrequests == 6
    assert client.stats["subrequest_retries"] == 2
    assert client.stats["throttled"] == 1


def test_subrequests_still_failing_after_the_retries_are_returned_as_they_are(
    graph_simulator, settings, messages
):
    settings.GRAPH_RETRY_BASE_SECONDS = 0.01
    client = GraphClient(max_retries=1)
    graph_simulator.script_faults(("ok", None), ("503", None), ("ok", None), ("503", None))

    [answer] = client.batch([{"method": "GET", "url": message_url(messages[0])}])

    assert answer["status"] == 503
    assert answer["body"]["error"]["code"] == "ServiceUnavailable"
    assert client.stats["subrequest_retries"] == 1


def test_the_batch_post_itself_is_retried_and_refetches_tokens(client, graph_simulator, messages):
    client.get(FOLDERS)
    graph_simulator.identity.expire_all_tokens()
    graph_simulator.script_faults(("503", None), ("garbage", None))

    answers = client.batch([{"method": "GET", "url": message_url(m)} for m in messages[:2]])

    assert [a["body"]["subject"] for a in answers] == ["m0", "m1"]
    assert graph_simulator.identity.token_requests == 2
    assert client.stats["retries"] == 2


def test_get_many_gives_each_urls_body_or_typed_error(client, graph_simulator, messages, settings):
    answers = client.get_many(
        [
            message_url(messages[0]),
            f"users/{ADDRESS}/messages/AAMkGone",
            f"{settings.GRAPH_API_URL}/users/{ADDRESS}/mailFolders/inbox/childFolders",
        ],
        headers={"Prefer": 'IdType="ImmutableId"'},
    )

    assert answers[0]["subject"] == "m0"
    assert isinstance(answers[1], GraphNotFound)
    assert answers[1].graph_code == "ErrorItemNotFound"
    assert answers[2] == {"value": []}


def test_a_batch_refuses_what_it_cannot_send(client, graph_simulator):
    requests_before = graph_simulator.graph_requests

    with pytest.raises(ValueError, match="unique"):
        client.batch([{"id": "1", "url": "/a"}, {"url": "/b"}])
    with pytest.raises(ValueError, match="dependsOn"):
        client.batch([{"url": "/a", "dependsOn": ["2"]}])
    with pytest.raises(ValueError, match="not under"):
        client.batch([{"url": "https://elsewhere.example/v1.0/users"}])
    assert client.batch([]) == []
    assert graph_simulator.graph_requests == requests_before
