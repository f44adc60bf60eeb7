"""The read-only mail API: the reference spec's fields, keyset pages with opaque tokens, and
agents seeing their own and their teams' mailboxes only."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from mailsync import services
from tests.cases.factories import TeamFactory, make_agent
from tests.mailsync.conftest import graph_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def synced(mailbox, remote):
    for n in range(7):
        remote.add_message("inbox", **graph_message(n))
    reply = remote.add_message("sentitems", **graph_message(50, subject="RE: Invoice 1"))
    remote.add_attachment(
        reply, name="credit-note.pdf", content=b"%PDF", content_type="application/pdf"
    )
    result = services.mailbox_sync(mailbox=mailbox)
    assert not result.failed
    return mailbox


@pytest.fixture
def api(agent):
    client = APIClient()
    client.force_authenticate(agent)
    return client


def test_messages_list_newest_first_with_the_specified_fields(api, synced):
    response = api.get("/api/v1/mail/messages", {"mailbox": synced.address, "folder": "inbox"})

    assert response.status_code == 200
    body = response.json()
    assert len(body["messages"]) == 7
    assert body["nextPageToken"] is None
    first = body["messages"][0]
    assert {"id", "subject", "from", "to", "date", "hasAttachments", "preview"} <= set(first)
    assert first["from"] == "anna.berg@nordwind.example"
    assert first["to"] == ["support@contoso.example"]
    dates = [m["date"] for m in body["messages"]]
    assert dates == sorted(dates, reverse=True)


def test_pages_follow_tokens_without_gaps_or_repeats(api, synced):
    seen, token = [], None
    while True:
        params = {"mailbox": str(synced.pk), "pageSize": 3}
        if token:
            params["pageToken"] = token
        body = api.get("/api/v1/mail/messages", params).json()
        seen += [m["id"] for m in body["messages"]]
        token = body["nextPageToken"]
        if not token:
            break

    assert len(seen) == len(set(seen)) == 8


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"pageToken": "not-a-token"}, "pageToken"),
        ({"pageSize": 0}, "pageSize"),
        ({"pageSize": 1000}, "pageSize"),
        ({"mailbox": "nobody@contoso.example"}, "mailbox"),
        ({"folder": "inbox"}, "folder"),
        ({"mailbox": "support@contoso.example", "folder": "nonesuch"}, "folder"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_parameter(api, synced, params, field):
    response = api.get("/api/v1/mail/messages", params)

    assert response.status_code == 400
    assert field in response.json()


def test_message_detail_has_bodies_recipients_and_attachments(api, synced):
    message = synced.messages.get(folder__well_known="sentitems")

    body = api.get(f"/api/v1/mail/message/{message.pk}").json()

    assert body["subject"] == "RE: Invoice 1"
    assert body["cc"] == ["jon@nordwind.example"]
    assert body["bcc"] == []
    assert body["body"].startswith("<p>Hello")
    assert body["bodyType"] == "html"
    assert body["inReplyTo"] == "<earlier@contoso.example>"
    assert body["attachments"] == [
        {"id": body["attachments"][0]["id"], "name": "credit-note.pdf", "size": 4,
         "contentType": "application/pdf", "isInline": False, "contentId": ""}
    ]  # fmt: skip


def test_agents_outside_the_team_see_nothing_of_its_mailbox(synced):
    stranger = make_agent(team=TeamFactory(name="Sales"))
    client = APIClient()
    client.force_authenticate(stranger)
    message = synced.messages.first()

    assert client.get("/api/v1/mail/messages").json()["messages"] == []
    assert client.get(f"/api/v1/mail/message/{message.pk}").status_code == 404
    assert client.get("/api/v1/mail/messages", {"mailbox": synced.address}).status_code == 400


def test_an_agents_own_mailbox_is_theirs_alone(graph, agent):
    graph.add_mailbox("me@contoso.example").add_message("inbox", **graph_message(1))
    own = services.mailbox_connect(address="me@contoso.example", owner=agent)
    services.mailbox_sync(mailbox=own)
    colleague = make_agent(team=agent.teams.first())
    client = APIClient()

    client.force_authenticate(agent)
    assert len(client.get("/api/v1/mail/messages").json()["messages"]) == 1
    client.force_authenticate(colleague)
    assert client.get("/api/v1/mail/messages").json()["messages"] == []


def test_unauthenticated_requests_are_refused(synced):
    assert APIClient().get("/api/v1/mail/messages").status_code in (401, 403)


def test_list_queries_do_not_grow_with_the_page(api, synced, remote):
    api.get("/api/v1/mail/messages")  # the user's teams are memoised on first use
    with CaptureQueriesContext(connection) as few:
        api.get("/api/v1/mail/messages", {"pageSize": 2})
    with CaptureQueriesContext(connection) as many:
        api.get("/api/v1/mail/messages", {"pageSize": 200})

    assert len(many.captured_queries) == len(few.captured_queries)


def test_attachment_bytes_are_fetched_on_first_download_then_served_from_storage(
    api, synced, graph
):
    message = synced.messages.get(folder__well_known="sentitems")
    attachment = message.attachments.get()
    url = f"/api/v1/mail/message/{message.pk}/attachments/{attachment.pk}"

    first = api.get(url)
    before = graph.graph_requests
    second = api.get(url)

    assert first.status_code == second.status_code == 200
    assert b"".join(first.streaming_content) == b"%PDF"
    assert b"".join(second.streaming_content) == b"%PDF"
    assert first["Content-Disposition"] == 'attachment; filename="credit-note.pdf"'
    assert graph.graph_requests == before  # the second came from storage


def test_an_attachment_graph_cannot_deliver_is_a_502_not_a_500(api, synced, graph, settings):
    message = synced.messages.get(folder__well_known="sentitems")
    attachment = message.attachments.get()
    settings.GRAPH_MAX_RETRIES = 0
    graph.script_faults(("503", None))

    response = api.get(f"/api/v1/mail/message/{message.pk}/attachments/{attachment.pk}")

    assert response.status_code == 502
    assert "Microsoft 365" in response.json()["detail"]
