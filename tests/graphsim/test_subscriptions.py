"""Change-notification subscriptions as Microsoft Graph runs them: the validation handshake,
lifetimes, renewal and deletion, and the notifications and lifecycle events the simulator
POSTs to a receiver (a small HTTPS server with the test PKI's certificate)."""

import datetime
import json
import ssl
import threading
import urllib.parse
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from graphsim.mail import regular_id
from graphsim.subscriptions import tenant_id, user_id

ADDRESS = "support@contoso.example"
INBOX = f"users/{ADDRESS}/mailFolders('inbox')/messages"
ARCHIVE = f"users/{ADDRESS}/mailFolders('archive')/messages"
STATE = "client-state-0123456789"
NOTIFICATION_KEYS = {
    "subscriptionId", "subscriptionExpirationDateTime", "changeType", "resource",
    "resourceData", "clientState", "tenantId",
}  # fmt: skip
LIFECYCLE_KEYS = {
    "subscriptionId", "subscriptionExpirationDateTime", "tenantId", "clientState",
    "lifecycleEvent",
}  # fmt: skip


@dataclass
class Post:
    path: str
    content_type: str
    body: dict


class ReceiverHandler(BaseHTTPRequestHandler):
    server: "Receiver"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        return

    def do_POST(self):  # noqa: N802 - stdlib hook
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(target.query)
        if "validationToken" in query:
            self._validate(target, query["validationToken"][0], body)
        else:
            self._notification(target.path, body)

    def _answer(self, status, body=b"", content_type="text/plain; charset=utf-8", location=None):
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _validate(self, target, token, body):
        receiver = self.server
        receiver.validations.append(
            {"path": target.path, "query": target.query, "token": token, "body": body,
             "content_type": self.headers.get("Content-Type")}
        )  # fmt: skip
        mode = receiver.validation_modes.get(target.path, "echo")
        if mode == "echo":
            self._answer(200, token.encode())
        elif mode == "wrong":
            self._answer(200, token.encode() + b" ")
        elif mode == "json":
            self._answer(200, token.encode(), content_type="application/json")
        elif mode == "500":
            self._answer(500)
        elif mode == "redirect":
            self._answer(302, location=f"/elsewhere?{target.query}")

    def _notification(self, path, body):
        receiver = self.server
        with receiver.lock:
            receiver.posts.append(Post(path, self.headers.get("Content-Type"), json.loads(body)))
            status = receiver.statuses.pop(0) if receiver.statuses else 202
            release, receiver.release = receiver.release, None
        if release is not None:
            receiver.stalled.set()
            release.wait(10)
        try:
            self._answer(status)
        except OSError:
            pass  # the simulator gave up waiting


class Receiver(ThreadingHTTPServer):
    """The webhook endpoints: answers the handshake as `validation_modes` say per path (echo,
    wrong, json, 500, redirect), records notification POSTs and answers them with the scripted
    `statuses`, then 202. `stall_next_post` holds the next POST until released."""

    daemon_threads = True

    def __init__(self, pki, *, tls=True):
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(pki.server_cert, pki.server_key)
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.lock = threading.Lock()
        self.validation_modes = {}
        self.validations = []
        self.posts = []
        self.statuses = []
        self.release = None
        self.stalled = threading.Event()

    def url(self, path):
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}{path}"

    def items(self, path="/notify"):
        return [item for post in self.posts if post.path == path for item in post.body["value"]]

    def stall_next_post(self):
        self.release = threading.Event()
        return self.release


def serve(receiver):
    threading.Thread(target=receiver.serve_forever, args=(0.05,), daemon=True).start()
    return receiver


@pytest.fixture
def receiver(graph_pki):
    server = serve(Receiver(graph_pki))
    yield server
    if server.release is not None:
        server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def simulator(graph_simulator, graph_pki, mailbox):
    """Notification endpoints must chain to the test CA; retries come fast."""
    graph_simulator.notification_ca_file = str(graph_pki.ca_cert)
    graph_simulator.notification_retry_delays = (0.01, 0.02, 0.04)
    return graph_simulator


@pytest.fixture
def api(simulator, graph_pki):
    """A session for the contoso tenant's crm-app; `api.url` is `/v1.0/subscriptions`."""
    token = simulator.identity.issue_token(tenant="contoso", client_id="crm-app")
    session = requests.Session()
    session.trust_env = False
    session.verify = str(graph_pki.ca_cert)
    session.headers["Authorization"] = f"Bearer {token}"
    session.url = f"{simulator.base_url}/v1.0/subscriptions"
    return session


def in_minutes(minutes):
    return (datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=minutes)).isoformat()


def subscribe(api, receiver, *, headers=None, **fields):
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": receiver.url("/notify"),
        "lifecycleNotificationUrl": receiver.url("/lifecycle"),
        "resource": INBOX,
        "expirationDateTime": in_minutes(10080),
        "clientState": STATE,
        **fields,
    }
    return api.post(api.url, json={k: v for k, v in body.items() if v is not None},
                    headers=headers)  # fmt: skip


def subscription_id(api, receiver, **fields):
    response = subscribe(api, receiver, **fields)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def delivered(simulator):
    assert simulator.wait_for_notifications(timeout=10)


# Creating: the handshake


def test_create_validates_both_endpoints_and_answers_the_subscription(api, receiver, mailbox):
    expiry = in_minutes(10080)  # the longest lifetime Graph allows for Outlook resources

    response = subscribe(api, receiver, expirationDateTime=expiry)

    assert response.status_code == 201, response.text
    body = response.json()
    assert uuid.UUID(body["id"])
    assert body["resource"] == INBOX
    assert body["changeType"] == "created,updated,deleted"
    assert body["clientState"] == STATE
    assert body["notificationUrl"] == receiver.url("/notify")
    assert body["lifecycleNotificationUrl"] == receiver.url("/lifecycle")
    assert body["applicationId"] == "crm-app"
    assert uuid.UUID(body["creatorId"])
    assert body["latestSupportedTlsVersion"] == "v1_2"
    assert body["expirationDateTime"].endswith("Z")
    assert datetime.datetime.fromisoformat(body["expirationDateTime"]) == (
        datetime.datetime.fromisoformat(expiry)
    )
    assert [v["path"] for v in receiver.validations] == ["/notify", "/lifecycle"]
    for validation in receiver.validations:
        assert validation["token"].startswith("Validation: ")
        assert "validationToken=Validation%3A%20" in validation["query"]
        assert validation["content_type"].startswith("text/plain")
        assert validation["body"] == b""
    assert api.get(f"{api.url}/{body['id']}").json()["id"] == body["id"]
    assert [s["id"] for s in api.get(api.url).json()["value"]] == [body["id"]]


@pytest.mark.parametrize("mode", ["wrong", "json", "500", "redirect"])
@pytest.mark.parametrize("path", ["/notify", "/lifecycle"])
def test_an_endpoint_that_fails_the_handshake_gets_no_subscription(api, receiver, mode, path):
    receiver.validation_modes[path] = mode

    response = subscribe(api, receiver)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "ValidationError"
    assert error["message"].startswith("Subscription validation request failed.")
    assert "/elsewhere" not in [v["path"] for v in receiver.validations]  # no redirects
    assert api.get(api.url).json()["value"] == []


def test_an_endpoint_whose_certificate_is_not_trusted_fails_the_handshake(api, receiver, simulator):
    simulator.notification_ca_file = None  # the system's CAs do not know the test CA

    response = subscribe(api, receiver)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ValidationError"
    assert receiver.validations == []


def test_http_notification_urls_are_refused_unless_the_switch_allows_them(
    api, graph_pki, simulator, mailbox
):
    plain = serve(Receiver(graph_pki, tls=False))
    try:
        refused = subscribe(api, plain)
        simulator.allow_http_notification_urls = True
        accepted = subscribe(api, plain)
        mailbox.add_message("inbox", subject="Over plain http")
        delivered(simulator)
    finally:
        plain.shutdown()
        plain.server_close()

    assert refused.status_code == 400
    assert "https" in refused.json()["error"]["message"]
    assert accepted.status_code == 201
    assert [i["changeType"] for i in plain.items()] == ["created"]


@pytest.mark.parametrize(
    ("expiry", "code"),
    [
        (10081, "ExtensionError"),
        (-1, "InvalidRequest"),
        ("next tuesday", "InvalidRequest"),
        (None, "InvalidRequest"),
    ],
)
def test_lifetimes_beyond_graphs_limit_or_in_the_past_are_refused(api, receiver, expiry, code):
    when = in_minutes(expiry) if isinstance(expiry, int) else expiry  # minutes from now

    response = subscribe(api, receiver, expirationDateTime=when)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert receiver.validations == []


@pytest.mark.parametrize(
    "resource",
    [
        f"/users/{ADDRESS}/mailfolders('Inbox')/messages",
        f"Users/{ADDRESS.upper()}/MailFolders/inbox/Messages",
        f"users/{user_id(ADDRESS)}/mailFolders('inbox')/messages",
        f"users/{ADDRESS}/messages",
    ],
)
def test_resource_spellings_graph_accepts(api, receiver, mailbox, simulator, resource):
    message = mailbox.add_message("archive", subject="Elsewhere")
    watched = subscription_id(api, receiver, resource=resource)

    mailbox.move_message(message, "inbox")
    delivered(simulator)

    assert api.get(f"{api.url}/{watched}").json()["resource"] == resource
    assert "created" in [i["changeType"] for i in receiver.items()]


def test_a_folder_given_by_id_is_watched(api, receiver, mailbox, simulator):
    inbox_id = mailbox.folder("inbox").id
    subscription_id(api, receiver, resource=f"users/{ADDRESS}/mailFolders/{inbox_id}/messages")

    mailbox.add_message("inbox", subject="By id")
    mailbox.add_message("archive", subject="Not watched")
    delivered(simulator)

    assert len(receiver.items()) == 1


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"resource": "users/nobody@contoso.example/mailFolders('inbox')/messages"}, 404),
        ({"resource": f"users/{ADDRESS}/mailFolders('nosuchfolder')/messages"}, 404),
        ({"resource": f"users/{ADDRESS}/events"}, 400),
        ({"resource": None}, 400),
        ({"changeType": "created,moved"}, 400),
        ({"changeType": ""}, 400),
        ({"clientState": "x" * 129}, 400),
        ({"notificationUrl": "not a url"}, 400),
        ({"lifecycleNotificationUrl": "ftp://127.0.0.1/x"}, 400),
        ({"latestSupportedTlsVersion": "v2_0"}, 400),
        ({"includeResourceData": True}, 400),
    ],
)
def test_requests_graph_refuses(api, receiver, mailbox, fields, status):
    response = subscribe(api, receiver, **fields)

    assert response.status_code == status
    assert set(response.json()["error"]) >= {"code", "message"}
    assert receiver.validations == []


def test_the_longest_client_state_is_accepted(api, receiver, mailbox):
    assert subscribe(api, receiver, clientState="x" * 128).status_code == 201


def test_malformed_bodies_and_missing_tokens(api, receiver, simulator):
    not_json = api.post(api.url, data=b"{not json", headers={"Content-Type": "application/json"})
    not_object = api.post(api.url, json=["changeType"])
    anonymous = requests.post(
        api.url, json={}, verify=api.verify, headers={"Authorization": "Bearer nope"}, timeout=10
    )

    assert not_json.status_code == 400
    assert not_object.status_code == 400
    assert anonymous.status_code == 401


# Managing


def test_patch_renews_within_the_same_limits(api, receiver, mailbox):
    watched = subscription_id(api, receiver, expirationDateTime=in_minutes(60))
    url = f"{api.url}/{watched}"
    later = in_minutes(4000)

    renewed = api.patch(url, json={"expirationDateTime": later})
    too_far = api.patch(url, json={"expirationDateTime": in_minutes(10081)})
    other_field = api.patch(url, json={"notificationUrl": receiver.url("/other")})
    unknown = api.patch(f"{api.url}/{uuid.uuid4()}", json={"expirationDateTime": later})

    assert renewed.status_code == 200
    assert datetime.datetime.fromisoformat(renewed.json()["expirationDateTime"]) == (
        datetime.datetime.fromisoformat(later)
    )
    assert too_far.status_code == 400
    assert too_far.json()["error"]["code"] == "ExtensionError"
    assert other_field.status_code == 400
    assert unknown.status_code == 404
    assert api.get(url).json()["expirationDateTime"] == renewed.json()["expirationDateTime"]


def test_delete_removes_it_and_nothing_more_is_sent(api, receiver, mailbox, simulator):
    watched = subscription_id(api, receiver)
    url = f"{api.url}/{watched}"

    deleted = api.delete(url)
    mailbox.add_message("inbox", subject="After the delete")
    delivered(simulator)

    assert deleted.status_code == 204
    assert api.get(url).status_code == 404
    assert api.get(url).json()["error"]["code"] == "ResourceNotFound"
    assert api.delete(url).status_code == 404
    assert receiver.posts == []


def test_reauthorize_clears_a_pending_reauthorization(api, receiver, mailbox, simulator):
    watched = subscription_id(api, receiver)
    simulator.send_lifecycle_event(watched, "reauthorizationRequired")
    delivered(simulator)
    pending = simulator.subscriptions.get(watched).reauthorization_required

    answer = api.post(f"{api.url}/{watched}/reauthorize")

    assert pending
    assert answer.status_code == 204
    assert not simulator.subscriptions.get(watched).reauthorization_required
    assert api.post(f"{api.url}/{uuid.uuid4()}/reauthorize").status_code == 404


def test_renewing_also_reauthorizes(api, receiver, mailbox, simulator):
    watched = subscription_id(api, receiver)
    simulator.send_lifecycle_event(watched, "reauthorizationRequired")

    api.patch(f"{api.url}/{watched}", json={"expirationDateTime": in_minutes(600)})
    delivered(simulator)

    assert not simulator.subscriptions.get(watched).reauthorization_required


def test_an_expired_subscription_disappears_and_sends_nothing(api, receiver, mailbox, simulator):
    watched = subscription_id(api, receiver)

    simulator.expire_subscription(watched)
    mailbox.add_message("inbox", subject="Too late")
    delivered(simulator)

    assert api.get(f"{api.url}/{watched}").status_code == 404
    assert api.get(api.url).json()["value"] == []
    assert receiver.posts == []


# Notifications


def test_changes_are_notified_with_their_change_types(api, receiver, mailbox, simulator):
    inbox = subscription_id(api, receiver)
    archive = subscription_id(api, receiver, resource=ARCHIVE, changeType="created",
                              clientState="archive-state")  # fmt: skip
    simulator.pause_notifications()

    first = mailbox.add_message("inbox", subject="New")
    mailbox.update_message(first, isRead=True)
    mailbox.move_message(first, "archive")
    mailbox.update_message(first, isRead=False)  # archive asked for `created` only
    second = mailbox.add_message("inbox", subject="Short-lived")
    mailbox.delete_message(second)
    simulator.resume_notifications()
    delivered(simulator)

    assert len(receiver.posts) == 1  # one batch, both subscriptions (same URL), as Graph may
    assert receiver.posts[0].content_type.startswith("application/json")
    seen = [(i["subscriptionId"], i["changeType"], i["resourceData"]["id"])
            for i in receiver.items()]  # fmt: skip
    assert seen == [
        (inbox, "created", regular_id(first, 0)),
        (inbox, "updated", regular_id(first, 0)),
        (inbox, "deleted", regular_id(first, 0)),
        (archive, "created", regular_id(first, 1)),
        (inbox, "created", regular_id(second, 0)),
        (inbox, "deleted", regular_id(second, 0)),
    ]
    states = {i["subscriptionId"]: i["clientState"] for i in receiver.items()}
    assert states == {inbox: STATE, archive: "archive-state"}
    assert simulator.notifications_sent == 6
    assert simulator.notification_posts == 1


def test_a_notification_looks_like_graphs(api, receiver, mailbox, simulator):
    watched = subscription_id(api, receiver)
    message = mailbox.add_message("inbox", subject="Shape")
    delivered(simulator)

    [item] = receiver.items()
    public_id = regular_id(message, 0)
    resource = f"Users/{user_id(ADDRESS)}/Messages/{public_id}"
    assert set(item) == NOTIFICATION_KEYS
    assert item["subscriptionId"] == watched
    assert item["tenantId"] == tenant_id("contoso")
    assert item["resource"] == resource
    assert item["resourceData"]["@odata.type"] == "#Microsoft.Graph.Message"
    assert item["resourceData"]["@odata.id"] == resource
    assert item["resourceData"]["@odata.etag"].startswith('W/"')
    assert item["subscriptionExpirationDateTime"].endswith("Z")
    # The resource can be read back as it is named (Graph's paths are case-insensitive).
    fetched = api.get(f"{simulator.base_url}/v1.0/{resource}")
    assert fetched.json()["subject"] == "Shape"


def test_subscriptions_created_with_immutable_ids_get_immutable_ids(
    api, receiver, mailbox, simulator
):
    subscription_id(api, receiver, headers={"Prefer": 'IdType="ImmutableId"'})

    message = mailbox.add_message("inbox", subject="Immutable")
    mailbox.move_message(message, "archive")
    delivered(simulator)

    assert [i["resourceData"]["id"] for i in receiver.items()] == [message, message]


def test_changes_are_batched_at_most_a_hundred_per_post(api, receiver, mailbox, simulator):
    subscription_id(api, receiver)
    simulator.pause_notifications()

    mailbox.add_messages("inbox", [{"subject": f"Bulk {n}"} for n in range(250)])
    simulator.resume_notifications()
    delivered(simulator)

    assert [len(p.body["value"]) for p in receiver.posts] == [100, 100, 50]
    assert simulator.notifications_sent == 250


def test_a_failing_receiver_is_retried_with_backoff(api, receiver, mailbox, simulator):
    subscription_id(api, receiver)
    receiver.statuses = [500, 503]

    mailbox.add_message("inbox", subject="Third time lucky")
    delivered(simulator)

    assert len(receiver.posts) == 3
    assert simulator.notification_posts == 3
    assert simulator.notification_failures == 2
    assert simulator.notifications_sent == 1
    assert simulator.notifications_dropped == 0


def test_after_the_last_retry_the_batch_is_dropped_and_counted(api, receiver, mailbox, simulator):
    subscription_id(api, receiver)
    receiver.statuses = [500] * 4  # the first POST and three retries

    mailbox.add_message("inbox", subject="Lost")
    mailbox.add_message("inbox", subject="Found")
    delivered(simulator)

    assert simulator.notification_failures == 4
    assert simulator.notifications_dropped >= 1
    assert simulator.notifications_sent + simulator.notifications_dropped == 2


def test_a_receiver_that_does_not_answer_in_time_is_retried(api, receiver, mailbox, simulator):
    subscription_id(api, receiver)
    simulator.notification_timeout = 0.5
    release = receiver.stall_next_post()

    mailbox.add_message("inbox", subject="Slow receiver")
    delivered(simulator)
    release.set()

    assert receiver.stalled.is_set()
    assert len(receiver.posts) == simulator.notification_posts >= 2
    assert simulator.notification_failures == simulator.notification_posts - 1
    assert simulator.notifications_sent == 1


def test_a_stalled_receiver_never_blocks_the_mailbox(api, receiver, mailbox, simulator, graph):
    subscription_id(api, receiver)
    simulator.notification_timeout = 30  # no retry while the test holds the receiver
    release = receiver.stall_next_post()
    mailbox.add_message("inbox", subject="Stalls the notifier")
    assert receiver.stalled.wait(10)

    writer = threading.Thread(target=mailbox.add_message, args=("inbox",), daemon=True)
    writer.start()
    writer.join(5)
    session, base = graph
    reader = session.get(f"{base}/mailFolders/inbox/messages/delta", timeout=5)
    release.set()
    delivered(simulator)

    assert not writer.is_alive()
    assert reader.status_code == 200
    assert len(receiver.items()) == 2


def test_duplicates_deliver_every_batch_twice(api, receiver, mailbox, simulator):
    subscription_id(api, receiver)
    simulator.duplicate_notifications = True

    mailbox.add_message("inbox", subject="Twice")
    delivered(simulator)

    assert len(receiver.posts) == 2
    assert receiver.posts[0].body == receiver.posts[1].body
    assert simulator.notifications_sent == 2


def test_a_burst_posts_many_notifications_in_batches(api, receiver, mailbox, simulator):
    watched = subscription_id(api, receiver)
    messages = [mailbox.add_message("inbox", subject=f"Burst {n}") for n in range(3)]
    delivered(simulator)
    receiver.posts.clear()

    simulator.notify_burst(watched, 250)
    delivered(simulator)

    assert [len(p.body["value"]) for p in receiver.posts] == [100, 100, 50]
    items = receiver.items()
    assert {i["subscriptionId"] for i in items} == {watched}
    assert {i["clientState"] for i in items} == {STATE}
    assert {i["resourceData"]["id"] for i in items} == {regular_id(m, 0) for m in messages}


def test_a_shuffled_duplicated_parallel_burst_arrives_whole(api, receiver, mailbox, simulator):
    watched = subscription_id(api, receiver)
    simulator.notification_concurrency = 4
    simulator.duplicate_notifications = True
    simulator.shuffle_notifications = True

    simulator.notify_burst(watched, 40, change_type="updated", batch_size=1)
    delivered(simulator)

    assert len(receiver.posts) == 80
    assert simulator.notifications_sent == 80
    assert {i["changeType"] for i in receiver.items()} == {"updated"}


# Lifecycle events


@pytest.mark.parametrize("event", ["reauthorizationRequired", "subscriptionRemoved", "missed"])
def test_lifecycle_events_go_to_the_lifecycle_url(api, receiver, mailbox, simulator, event):
    watched = subscription_id(api, receiver)

    simulator.send_lifecycle_event(watched, event)
    delivered(simulator)

    [item] = receiver.items("/lifecycle")
    assert set(item) == LIFECYCLE_KEYS
    assert item["lifecycleEvent"] == event
    assert item["subscriptionId"] == watched
    assert item["clientState"] == STATE
    assert item["tenantId"] == tenant_id("contoso")
    assert receiver.items("/notify") == []
    assert simulator.lifecycle_events_sent == 1


def test_subscription_removed_also_deletes_it(api, receiver, mailbox, simulator):
    watched = subscription_id(api, receiver)

    simulator.send_lifecycle_event(watched, "subscriptionRemoved")
    mailbox.add_message("inbox", subject="Nobody listens")
    delivered(simulator)

    assert api.get(f"{api.url}/{watched}").status_code == 404
    assert receiver.items("/notify") == []


def test_lifecycle_events_need_a_lifecycle_url_and_a_known_event(api, receiver, mailbox, simulator):
    without = subscription_id(api, receiver, lifecycleNotificationUrl=None)
    with_url = subscription_id(api, receiver)

    with pytest.raises(ValueError, match="lifecycleNotificationUrl"):
        simulator.send_lifecycle_event(without, "missed")
    with pytest.raises(ValueError, match="unknown lifecycle event"):
        simulator.send_lifecycle_event(with_url, "expired")
