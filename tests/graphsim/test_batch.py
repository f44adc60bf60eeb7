"""`POST $batch` behaves like Graph's JSON batching: sub-requests share routing, auth, ids
and faults with direct requests, and a batch is one request against the mailbox's limit."""

import base64
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.graphsim.helpers import IMMUTABLE

HEADERS = [{"name": "Message-ID", "value": "<1@nordwind.example>"}]


@pytest.fixture
def batch(graph, graph_simulator):
    session, _ = graph

    def post(requests_, **kwargs):
        return session.post(
            f"{graph_simulator.base_url}/v1.0/$batch", json={"requests": requests_}, **kwargs
        )

    return post


def get(id_, url, **extra):
    return {"id": id_, "method": "GET", "url": url, **extra}


USER = "/users/support@contoso.example"


def test_sub_requests_are_answered_by_id(batch, mailbox):
    message = mailbox.add_message("inbox", subject="x", internetMessageHeaders=HEADERS)
    mailbox.add_attachment(message, name="a.pdf", content=b"%PDF-1", content_type="application/pdf")
    prefer = {"Prefer": IMMUTABLE}

    response = batch(
        [
            get("h", f"{USER}/messages/{message}?$select=internetMessageHeaders", headers=prefer),
            get("a", f"users/support@contoso.example/messages/{message}/attachments?$select=name"),
        ]
    )

    answers = {r["id"]: r for r in response.json()["responses"]}
    assert response.status_code == 200
    assert answers["h"]["status"] == 200
    assert answers["h"]["body"] == {"id": message, "internetMessageHeaders": HEADERS}
    assert answers["h"]["headers"]["Content-Type"].startswith("application/json")
    assert [a["name"] for a in answers["a"]["body"]["value"]] == ["a.pdf"]


def test_binary_bodies_come_base64_encoded(batch, mailbox):
    message = mailbox.add_message("inbox", subject="x")
    attachment = mailbox.add_attachment(
        message, name="a.pdf", content=b"%PDF-1", content_type="application/pdf"
    )

    response = batch([get("1", f"{USER}/messages/{message}/attachments/{attachment}/$value")])

    answer = response.json()["responses"][0]
    assert answer["headers"]["Content-Type"] == "application/pdf"
    assert base64.b64decode(answer["body"]) == b"%PDF-1"


def test_immutable_ids_come_from_the_sub_request_or_the_outer_request(batch, mailbox):
    message = mailbox.add_message("inbox", subject="x")
    url = f"{USER}/messages/{message}?$select=subject"

    plain = batch([get("1", url)]).json()["responses"][0]["body"]["id"]
    own = batch([get("1", url, headers={"Prefer": IMMUTABLE})]).json()["responses"][0]
    outer = batch([get("1", url)], headers={"Prefer": IMMUTABLE}).json()["responses"][0]

    assert plain != message
    assert own["body"]["id"] == message
    assert outer["body"]["id"] == message


def test_a_stale_regular_id_is_404_in_its_sub_response(batch, mailbox):
    message = mailbox.add_message("inbox", subject="x")
    regular = batch([get("1", f"{USER}/messages/{message}")]).json()["responses"][0]["body"]["id"]
    mailbox.move_message(message, "archive")

    answer = batch([get("1", f"{USER}/messages/{regular}")]).json()["responses"][0]

    assert answer["status"] == 404
    assert answer["body"]["error"]["code"] == "ErrorItemNotFound"


def test_more_than_twenty_requests_are_refused_whole(batch, mailbox):
    response = batch([get(str(i), f"{USER}/mailFolders") for i in range(21)])

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
    assert "20" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{}", b'{"requests": [{"id": "1", "method": "GET"}]}',
     b'{"requests": [{"id": "1", "method": "GET", "url": "/me"}, '
     b'{"id": "1", "method": "GET", "url": "/me"}]}'],
)  # fmt: skip
def test_malformed_batches_answer_400(graph, graph_simulator, body):
    session, _ = graph

    response = session.post(f"{graph_simulator.base_url}/v1.0/$batch", data=body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_only_get_sub_requests_run_and_urls_must_be_relative(batch, graph_simulator, mailbox):
    response = batch(
        [
            {"id": "1", "method": "PATCH", "url": f"{USER}/messages/x", "body": {}},
            get("2", f"{graph_simulator.base_url}/v1.0{USER}/mailFolders"),
        ]
    )

    statuses = [r["status"] for r in response.json()["responses"]]
    assert statuses == [405, 400]


def test_the_outer_authorization_applies_to_every_sub_request(graph, graph_simulator, mailbox):
    session, _ = graph
    graph_simulator.identity.expire_all_tokens()

    response = session.post(
        f"{graph_simulator.base_url}/v1.0/$batch",
        json={"requests": [get("1", f"{USER}/mailFolders")]},
    )

    assert response.status_code == 401


def test_each_sub_request_may_draw_its_own_fault(batch, graph_simulator, mailbox):
    graph_simulator.script_faults(("ok", None), ("429", "2"), ("ok", None), ("503", None))

    response = batch([get(str(i), f"{USER}/mailFolders") for i in range(4)])

    answers = response.json()["responses"]
    assert response.status_code == 200
    assert [a["status"] for a in answers] == [429, 200, 503, 200]
    assert answers[0]["headers"]["Retry-After"] == "2"
    assert answers[0]["body"]["error"]["code"] == "TooManyRequests"


def test_the_outer_request_takes_a_fault_before_anything_runs(batch, graph_simulator, mailbox):
    graph_simulator.script_faults(("429", "0.1"))

    response = batch([get("1", f"{USER}/mailFolders")])

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "0.1"
    assert graph_simulator.batch_subrequests == 0


def test_a_dropped_connection_is_left_for_the_next_outer_request(
    batch, graph, graph_simulator, mailbox
):
    session, base = graph
    graph_simulator.script_faults(("ok", None), ("drop", None))

    response = batch([get("1", f"{USER}/mailFolders"), get("2", f"{USER}/mailFolders")])

    assert [a["status"] for a in response.json()["responses"]] == [200, 200]
    with pytest.raises(requests.ConnectionError):
        session.get(f"{base}/mailFolders")


def test_random_sub_request_faults_are_statuses_only(batch, graph_simulator, mailbox):
    graph_simulator.script_faults(("ok", None))
    graph_simulator.set_fault_rate(1.0, seed=3)

    response = batch([get(str(i), f"{USER}/mailFolders") for i in range(20)])

    assert response.status_code == 200
    assert {a["status"] for a in response.json()["responses"]} == {429, 503, 504}


def test_a_batch_holds_one_slot_of_its_first_mailbox(batch, graph_simulator, mailbox):
    graph_simulator.response_delay = 0.5
    three = [get(str(i), f"{USER}/mailFolders") for i in range(3)]

    with ThreadPoolExecutor(max_workers=5) as pool:
        statuses = sorted(pool.map(lambda _: batch(three).status_code, range(5)))

    assert statuses == [200, 200, 200, 200, 429]
    assert graph_simulator.concurrency_refusals == 1


@pytest.mark.parametrize("route", ["message", "attachments", "attachment_bytes", "folder"])
def test_the_concurrency_limit_covers_every_mailbox_route(graph, graph_simulator, mailbox, route):
    session, base = graph
    message = mailbox.add_message("inbox", subject="x")
    attachment = mailbox.add_attachment(message, name="a", content=b"a", content_type="text/plain")
    url = {
        "message": f"{base}/messages/{message}",
        "attachments": f"{base}/messages/{message}/attachments",
        "attachment_bytes": f"{base}/messages/{message}/attachments/{attachment}/$value",
        "folder": f"{base}/mailFolders/inbox",
    }[route]
    graph_simulator.response_delay = 0.5

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(pool.map(lambda _: session.get(url).status_code, range(6)))

    assert statuses == [200, 200, 200, 200, 429, 429]
