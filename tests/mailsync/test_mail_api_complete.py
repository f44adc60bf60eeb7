"""The complete mail API over HTTP on PostgreSQL and Redis: list filters and full-text search,
attachment downloads, sending through the Graph simulator, and the hot-page cache keyed by
change numbers (never stale, never shared across visibility), with its metrics."""

from __future__ import annotations

import base64
import re
from email.message import EmailMessage

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from cases import services as case_services
from cases.models import Case
from crm.models import TeamMembership, User
from mailsync import selectors, services
from mailsync.models import Attachment, Message
from tests.cases.factories import CaseFactory, TeamFactory, make_agent
from tests.mailsync.conftest import ADDRESS, graph_message

pytestmark = pytest.mark.django_db

LIST = "/api/v1/mail/messages"


def sender(address: str, name: str) -> dict:
    return {"emailAddress": {"name": name, "address": address}}


def recipients(*addresses: str) -> list[dict]:
    return [sender(address, "") for address in addresses]


def html(text: str) -> dict:
    return {"contentType": "html", "content": f"<p>{text}</p>"}


# Inbox messages by key; dates are UTC, the agent's time zone is UTC unless a test says so.
INBOX = {
    "invoice": graph_message(
        1, subject="Invoice 1 is wrong", receivedDateTime="2026-11-01T09:00:00Z",
        body=html("The invoice lists two licences instead of one."),
    ),
    "printer": graph_message(
        2, subject="Printer on fire", receivedDateTime="2026-11-05T10:00:00Z", isRead=True,
        flag={"flagStatus": "flagged"}, importance="high",
        body=html("Our printer smokes. Also, the licence key is missing."),
        **{"from": sender("bob@partner.example", "Bob Jones")},
    ),
    "renewal": graph_message(
        3, subject="Licence renewal", receivedDateTime="2026-11-10T23:30:00Z",
        body=html("Please renew our licence for another year."),
        ccRecipients=recipients("sales@contoso.example"),
        **{"from": sender("carla@nordwind.example", "Carla Diaz")},
    ),
    "greetings": graph_message(
        4, subject="Grüße aus München", receivedDateTime="2026-11-20T08:00:00Z", isRead=True,
        body=html("Der Prüfbericht ist angehängt. Straße und Hausnummer fehlen."),
        **{"from": sender("jürgen@münchen.example", "Jürgen Groß")},
    ),
}  # fmt: skip
INBOX_SUBJECTS = {m["subject"] for m in INBOX.values()}


def subjects(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {m["subject"] for m in response.json()["messages"]}


@pytest.fixture
def synced(mailbox, remote):
    ids = {key: remote.add_message("inbox", **message) for key, message in INBOX.items()}
    remote.add_attachment(
        ids["renewal"], name="contract.pdf", content=b"%PDF-1.7", content_type="application/pdf"
    )
    assert not services.mailbox_sync(mailbox=mailbox).failed
    return mailbox


@pytest.fixture
def api(agent):
    client = APIClient()
    client.force_authenticate(agent)
    return client


def inbox(api, **params):
    return api.get(LIST, {"mailbox": ADDRESS, "folder": "inbox", **params})


# --- filters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("unread", {"Invoice 1 is wrong", "Licence renewal"}),
        ("read", {"Printer on fire", "Grüße aus München"}),
        ("flagged", {"Printer on fire"}),
        ("hasAttachments", {"Licence renewal"}),
        ("HASATTACHMENTS", {"Licence renewal"}),
        ("from:Carla@Nordwind.example", {"Licence renewal"}),
        ("from:@nordwind.example", {"Invoice 1 is wrong", "Licence renewal"}),
        ("from:jürgen@münchen.example", {"Grüße aus München"}),
        ("from:nobody@nordwind.example", set()),
        ("to:sales@contoso.example", {"Licence renewal"}),
        ("to:@contoso.example", INBOX_SUBJECTS),
        ("since:2026-11-05", {"Printer on fire", "Licence renewal", "Grüße aus München"}),
        ("until:2026-11-05", {"Invoice 1 is wrong", "Printer on fire"}),
        ("since:2026-11-05T10:00:01Z", {"Licence renewal", "Grüße aus München"}),
        ("until:2026-11-05T10:00:00+00:00", {"Invoice 1 is wrong"}),
        ("importance:high", {"Printer on fire"}),
        ("", INBOX_SUBJECTS),
        (" , ,", INBOX_SUBJECTS),
    ],
)
def test_each_filter_selects_what_it_names(api, synced, expression, expected):
    assert subjects(inbox(api, filter=expression)) == expected


def test_filters_combine_and_all_must_hold(api, synced):
    assert subjects(inbox(api, filter="unread,from:@nordwind.example,since:2026-11-02")) == {
        "Licence renewal"
    }
    assert subjects(inbox(api, filter="unread,flagged")) == set()


def test_days_are_days_in_the_agents_time_zone(synced, team):
    # 2026-11-10T23:30Z is already 11 November in Berlin (UTC+1).
    berliner = make_agent(team=team, timezone="Europe/Berlin")
    client = APIClient()
    client.force_authenticate(berliner)

    assert "Licence renewal" in subjects(inbox(client, filter="since:2026-11-11"))
    assert "Licence renewal" not in subjects(inbox(client, filter="until:2026-11-10"))


@pytest.mark.parametrize(
    "expression",
    [
        "nonsense",
        "from:",
        "from:not-an-address",
        "to:@",
        "since:yesterday",
        "since:2026-13-45",
        "until:0001-01-01T00:00:00+14:00",
        "unread:yes",
        "importance:urgent",
        "case:CASE-999999",
        "from:anna@nordwind.example\x01",
        ",".join(["unread"] * 21),
    ],
)
def test_an_unusable_filter_is_a_400_naming_the_parameter(api, synced, expression):
    response = inbox(api, filter=expression)

    assert response.status_code == 400
    assert list(response.json()) == ["filter"]
    assert response.json()["filter"][0]


def test_the_case_filter_lists_the_messages_intake_joined_to_a_case(api, synced, team):
    for subject in ("Invoice 1 is wrong", "Printer on fire"):
        case_services.message_intake(message_id=synced.messages.get(subject=subject).pk)
    invoice = Message.objects.get(subject="Invoice 1 is wrong")
    case = Case.objects.get(messages__message=invoice)

    by_number = inbox(api, filter=f"case:{case.number.lower()}")
    by_id = inbox(api, filter=f"case:{case.pk},unread")

    assert subjects(by_number) == subjects(by_id) == {"Invoice 1 is wrong"}
    elsewhere = CaseFactory(title="Sales only", team=TeamFactory(name="Sales"))
    refused = inbox(api, filter=f"case:{elsewhere.number}")
    assert refused.status_code == 400
    assert "filter" in refused.json()


# --- search ------------------------------------------------------------------------------------


def test_search_ranks_subject_matches_above_body_matches(api, synced):
    found = inbox(api, q="licence").json()["messages"]

    assert [m["subject"] for m in found] == [
        "Licence renewal",  # subject and body
        "Printer on fire",  # body only, newer than the next one
        "Invoice 1 is wrong",  # body only ("licences": stemmed)
    ]


def test_search_finds_senders_by_name_address_and_domain(api, synced):
    assert subjects(inbox(api, q="Carla")) == {"Licence renewal"}
    assert subjects(inbox(api, q="jones")) == {"Printer on fire"}
    assert subjects(inbox(api, q="bob@partner.example")) == {"Printer on fire"}
    assert subjects(inbox(api, q="partner")) == {"Printer on fire"}
    assert subjects(inbox(api, q="Prüfbericht")) == {"Grüße aus München"}


def test_search_syntax_phrases_or_and_exclusions(api, synced):
    assert subjects(inbox(api, q='"renew our licence"')) == {"Licence renewal"}
    assert subjects(inbox(api, q="printer or renewal")) == {"Printer on fire", "Licence renewal"}
    assert subjects(inbox(api, q="licence -printer")) == {"Licence renewal", "Invoice 1 is wrong"}


def test_a_misspelled_search_falls_back_to_similar_subjects(api, synced):
    assert subjects(inbox(api, q="License renewl")) == {"Licence renewal"}
    assert subjects(inbox(api, q='"License renewl"')) == set()  # exact asked, exact answered


def test_search_combines_with_filters_and_pages_without_gaps(api, synced):
    assert subjects(inbox(api, q="licence", filter="unread")) == {
        "Licence renewal",
        "Invoice 1 is wrong",
    }
    seen, token = [], None
    for _ in range(10):
        body = inbox(api, q="licence", pageSize=1, **({"pageToken": token} if token else {}))
        seen += [m["subject"] for m in body.json()["messages"]]
        token = body.json()["nextPageToken"]
        if token is None:
            break
    assert token is None
    assert seen == ["Licence renewal", "Printer on fire", "Invoice 1 is wrong"]


def test_a_broad_search_ranks_its_newest_matches(api, synced, monkeypatch):
    monkeypatch.setattr(selectors, "SEARCH_WINDOW", 2)

    assert [m["subject"] for m in inbox(api, q="licence").json()["messages"]] == [
        "Licence renewal",
        "Printer on fire",
    ]  # the oldest match ("Invoice 1 is wrong") is beyond the window
    assert subjects(inbox(api, q="licence", filter="until:2026-11-04")) == {"Invoice 1 is wrong"}


def test_a_search_page_token_does_not_continue_another_kind_of_list(api, synced):
    token = inbox(api, q="licence", pageSize=1).json()["nextPageToken"]

    response = inbox(api, pageToken=token)

    assert response.status_code == 400
    assert "pageToken" in response.json()


@pytest.mark.parametrize(
    "query",
    ['"', '"unterminated', "a & b | !c", "-", "or", "(", "'; DROP TABLE mailsync_message; --",
     "<>:*()!", "🙂", "   ", "", "!!!!", "x" * 500, "München & (Straße | \"Prüfbericht\")"],
)  # fmt: skip
def test_search_is_safe_with_any_text(api, synced, query):
    response = inbox(api, q=query)

    assert response.status_code == 200
    if not query.strip():
        assert len(response.json()["messages"]) == len(INBOX)


def test_a_search_too_long_or_with_nul_is_a_400_naming_q(api, synced):
    assert "q" in inbox(api, q="x" * 501).json()
    assert "q" in inbox(api, q="licence\x00").json()


# --- several mailboxes -------------------------------------------------------------------------


def test_the_list_over_several_mailboxes_is_newest_first_without_gaps(api, synced, graph, team):
    other = graph.add_mailbox("billing@contoso.example")
    for n in range(5):
        other.add_message(
            "inbox", **graph_message(100 + n, receivedDateTime=f"2026-11-0{n + 2}T12:00:00Z")
        )
    billing = services.mailbox_connect(address="billing@contoso.example", team=team)
    services.mailbox_sync(mailbox=billing)
    everything = Message.objects.filter(folder__isnull=False).order_by("-received_at", "-pk")

    seen, token = [], None
    for _ in range(10):
        body = api.get(LIST, {"pageSize": 3, **({"pageToken": token} if token else {})}).json()
        seen += [int(m["id"]) for m in body["messages"]]
        token = body["nextPageToken"]
        if token is None:
            break

    assert token is None
    assert seen == [m.pk for m in everything]


# --- visibility --------------------------------------------------------------------------------


def test_other_teams_see_nothing_through_filters_search_or_the_cache(api, synced):
    assert subjects(api.get(LIST, {"q": "licence"}))  # the team's agent filled the cache
    assert subjects(api.get(LIST, {"filter": "unread"}))
    stranger = APIClient()
    stranger.force_authenticate(make_agent(team=TeamFactory(name="Sales")))

    assert subjects(stranger.get(LIST, {"q": "licence"})) == set()
    assert subjects(stranger.get(LIST, {"filter": "unread"})) == set()
    assert subjects(stranger.get(LIST)) == set()
    assert stranger.get(LIST, {"mailbox": ADDRESS, "q": "licence"}).status_code == 400
    attachment = Attachment.objects.get()
    assert stranger.get(f"/api/v1/mail/attachments/{attachment.pk}").status_code == 404


def test_an_agent_who_leaves_the_team_stops_seeing_its_cached_pages(synced, agent):
    client = APIClient()
    client.force_authenticate(agent)
    assert len(inbox(client).json()["messages"]) == len(INBOX)

    TeamMembership.objects.filter(user=agent).delete()
    client.force_authenticate(User.objects.get(pk=agent.pk))  # a new request, a fresh user

    assert inbox(client).status_code == 400
    assert subjects(client.get(LIST)) == set()


# --- the hot-page cache ------------------------------------------------------------------------


def cache_lookups(result: str) -> float:
    """The exported counter, read from /metrics as Prometheus would."""
    text = APIClient().get("/metrics").content.decode()
    found = re.search(
        rf'^crm_cache_lookups_total\{{cache="mail_pages",result="{result}"\}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


def counted(api, **params):
    """Request the inbox; return the body and how the cache answered (hit, miss, bypass) as
    the deltas of the exported counters, and whether any message row was read."""
    before = {r: cache_lookups(r) for r in ("hit", "miss", "bypass")}
    with CaptureQueriesContext(connection) as queries:
        response = inbox(api, **params)
    # Read now: the next request (to /metrics) empties the connection's query log.
    read_messages = any('"mailsync_message"' in q["sql"] for q in queries.captured_queries)
    assert response.status_code == 200, response.content
    after = {r: cache_lookups(r) for r in ("hit", "miss", "bypass")}
    outcome = [r for r in after if after[r] - before[r] == 1]
    return response.json(), outcome, read_messages


def test_a_second_identical_request_is_a_hit_that_reads_no_message(api, synced):
    first, first_outcome, first_read = counted(api, filter="unread")
    second, second_outcome, second_read = counted(api, filter="unread")

    assert (first_outcome, first_read) == (["miss"], True)
    assert (second_outcome, second_read) == (["hit"], False)
    assert second == first
    assert counted(api, filter="unread", q="licence")[1] == ["miss"]  # another request


def test_a_message_synced_into_the_folder_makes_the_next_request_fresh(api, synced, remote):
    counted(api)
    remote.add_message("inbox", **graph_message(9, subject="Brand new question"))
    services.mailbox_sync(mailbox=synced)

    body, outcome, _ = counted(api)

    assert outcome == ["miss"]
    assert "Brand new question" in {m["subject"] for m in body["messages"]}


def test_marking_a_message_read_makes_the_next_request_fresh(api, synced):
    body, _, _ = counted(api, filter="unread")
    target = body["messages"][0]["id"]

    assert api.patch(f"/api/v1/mail/message/{target}", {"isRead": True}).status_code == 200
    after, outcome, _ = counted(api, filter="unread")

    assert outcome == ["miss"]
    assert target not in {m["id"] for m in after["messages"]}


def test_a_change_in_another_folder_of_the_mailbox_also_refreshes(api, synced, remote):
    counted(api)
    remote.add_message("sentitems", **graph_message(60, subject="RE: Printer on fire"))
    services.mailbox_sync(mailbox=synced)

    assert counted(api)[1] == ["miss"]


def test_lists_filtered_by_case_bypass_the_cache(api, synced):
    message = synced.messages.get(subject="Invoice 1 is wrong")
    case = case_services.message_intake(message_id=message.pk).case

    body, outcome, _ = counted(api, filter=f"case:{case.number}")
    again, outcome_again, read_again = counted(api, filter=f"case:{case.number}")

    assert outcome == outcome_again == ["bypass"]
    assert read_again
    assert [m["subject"] for m in again["messages"]] == ["Invoice 1 is wrong"]


def test_list_queries_do_not_grow_with_the_page_when_filtered_and_searched(api, synced):
    inbox(api)  # memoise the user's teams
    with CaptureQueriesContext(connection) as few:
        inbox(api, pageSize=1, filter="from:@nordwind.example", q="licence")
    with CaptureQueriesContext(connection) as many:
        inbox(api, pageSize=200, filter="from:@nordwind.example", q="licence")

    assert len(many.captured_queries) == len(few.captured_queries)


# --- message detail and attachments ------------------------------------------------------------


def test_the_message_has_recipients_body_and_attachments(api, synced):
    renewal = synced.messages.get(subject="Licence renewal")

    body = api.get(f"/api/v1/mail/message/{renewal.pk}").json()

    assert body["to"] == [ADDRESS]
    assert body["cc"] == ["sales@contoso.example"]
    assert body["bcc"] == []
    assert "renew our licence" in body["body"]
    assert [(a["name"], a["size"], a["contentType"]) for a in body["attachments"]] == [
        ("contract.pdf", 8, "application/pdf")
    ]


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def graph_attachments(mailbox, remote, media):
    graph_id = remote.add_message("inbox", **graph_message(7, subject="Files"))
    for name, content_type, content in [
        ("Prüfbericht – März.pdf", "application/pdf", b"%PDF-1.4"),
        ("report.csv", "text/csv\r\nX-Injected: yes", b"a,b\n"),
    ]:
        remote.add_attachment(graph_id, name=name, content=content, content_type=content_type)
    services.mailbox_sync(mailbox=mailbox)
    return {a.name: a for a in Attachment.objects.all()}


HOSTILE_NAME = '../../etc/passwd"; x.html'


@pytest.fixture
def hostile_local_attachment(team, media):
    """A file with a hostile name, as it arrives through the SMTP listener."""
    services.mailbox_connect(address="desk@crm.example", team=team, local=True)
    mime = EmailMessage()
    mime["From"], mime["To"], mime["Subject"] = "eve@evil.example", "desk@crm.example", "Files"
    mime.set_content("See attached.")
    mime.add_attachment(
        b"<script>alert(1)</script>", maintype="text", subtype="html", filename=HOSTILE_NAME
    )
    inbound = services.inbound_receive(
        raw=mime.as_bytes(), mail_from="eve@evil.example", rcpt_tos=["desk@crm.example"]
    )
    services.inbound_deliver(inbound_id=inbound.pk)
    return Attachment.objects.get(name=HOSTILE_NAME)


def download(api, attachment):
    response = api.get(f"/api/v1/mail/attachments/{attachment.pk}")
    assert response.status_code == 200, response.content
    return response, b"".join(response.streaming_content)


def test_a_hostile_filename_cannot_escape_its_header_or_be_rendered(api, hostile_local_attachment):
    response, content = download(api, hostile_local_attachment)

    assert content == b"<script>alert(1)</script>"
    assert response["Content-Type"] == "text/html"
    assert response["Content-Disposition"] == (
        "attachment; filename=\"passwd__ x.html\"; filename*=UTF-8''passwd%22%3B%20x.html"
    )
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]


def test_a_graph_attachment_with_a_traversal_name_downloads(api, mailbox, remote, media):
    graph_id = remote.add_message("inbox", **graph_message(8, subject="Traversal"))
    remote.add_attachment(graph_id, name=HOSTILE_NAME, content=b"x", content_type="text/html")
    services.mailbox_sync(mailbox=mailbox)

    attachment = Attachment.objects.get()
    response = api.get(f"/api/v1/mail/attachments/{attachment.pk}")

    assert response.status_code == 200
    attachment.refresh_from_db()
    assert ".." not in attachment.content.name


def test_a_unicode_filename_is_kept_for_clients_that_read_rfc_5987(api, graph_attachments):
    response, content = download(api, graph_attachments["Prüfbericht – März.pdf"])

    assert content == b"%PDF-1.4"
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == (
        'attachment; filename="Prufbericht  Marz.pdf"; '
        "filename*=UTF-8''Pr%C3%BCfbericht%20%E2%80%93%20M%C3%A4rz.pdf"
    )


def test_a_malformed_content_type_is_replaced_by_one_guessed_from_the_name(api, graph_attachments):
    response, content = download(api, graph_attachments["report.csv"])

    assert content == b"a,b\n"
    assert response["Content-Type"] == "text/csv"
    assert "X-Injected" not in response


# --- sending -----------------------------------------------------------------------------------


def test_sending_a_new_message_with_a_file_through_microsoft_365(api, synced, graph):
    response = api.post(
        "/api/v1/mail/send",
        {
            "mailbox": ADDRESS,
            "to": ["ada@customer.example"],
            "cc": ["lead@contoso.example"],
            "subject": "Your contract",
            "body": "Hello Ada,\n\nattached <as promised>.",
            "bodyType": "text",
            "attachments": [
                {"name": "contract.pdf", "contentType": "application/pdf",
                 "contentBytes": base64.b64encode(b"%PDF-1.7 signed").decode()}
            ],
        },
        format="json",
    )  # fmt: skip

    assert response.status_code == 201, response.content
    out = graph.sent_messages[-1]
    assert out["subject"] == "Your contract"
    assert [r["emailAddress"]["address"] for r in out["toRecipients"]] == ["ada@customer.example"]
    assert "&lt;as promised&gt;" in out["body"]["content"]
    assert [a["name"] for a in out["attachments"]] == ["contract.pdf"]
    body = response.json()
    assert (body["folder"], body["subject"], body["cc"]) == (
        "sentitems", "Your contract", ["lead@contoso.example"]
    )  # fmt: skip
    assert subjects(api.get(LIST, {"mailbox": ADDRESS, "folder": "sentitems"})) == {"Your contract"}


def test_a_reply_threads_on_the_message_it_answers(api, synced, graph):
    original = synced.messages.get(subject="Printer on fire")

    response = api.post(
        "/api/v1/mail/send",
        {"mailbox": ADDRESS, "mode": "reply", "original": original.pk, "body": "<p>Fixed.</p>"},
        format="json",
    )

    assert response.status_code == 201, response.content
    out = graph.sent_messages[-1]
    assert out["subject"].startswith("RE: Printer on fire")
    assert [r["emailAddress"]["address"] for r in out["toRecipients"]] == ["bob@partner.example"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"mailbox": "nobody@contoso.example", "to": ["a@b.example"]}, "mailbox"),
        ({"mailbox": ADDRESS}, "to"),
        ({"mailbox": ADDRESS, "to": ["not an address"]}, "to"),
        ({"mailbox": ADDRESS, "mode": "shout", "to": ["a@b.example"]}, "mode"),
        ({"mailbox": ADDRESS, "mode": "reply"}, "original"),
        ({"mailbox": ADDRESS, "mode": "reply", "original": 999999999}, "original"),
        ({"mailbox": ADDRESS, "to": ["a@b.example"],
          "attachments": [{"name": "x", "contentBytes": "%%%"}]}, "attachments"),
        ({"mailbox": ADDRESS, "to": ["a@b.example"],
          "attachments": [{"name": "x", "contentType": "no type", "contentBytes": ""}]},
         "attachments"),
    ],
)  # fmt: skip
def test_an_unusable_message_is_a_400_naming_the_field(api, synced, graph, payload, field):
    sent_before = len(graph.sent_messages)

    response = api.post("/api/v1/mail/send", payload, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert len(graph.sent_messages) == sent_before


def test_an_agent_cannot_send_from_another_teams_mailbox(synced, graph):
    stranger = APIClient()
    stranger.force_authenticate(make_agent(team=TeamFactory(name="Sales")))

    response = stranger.post(
        "/api/v1/mail/send", {"mailbox": ADDRESS, "to": ["a@b.example"]}, format="json"
    )

    assert response.status_code == 400
    assert "mailbox" in response.json()
    assert graph.sent_messages == []


def test_microsoft_365_failing_to_take_a_message_is_a_502(api, synced, graph, settings):
    settings.GRAPH_MAX_RETRIES = 0
    graph.script_faults(("503", None))

    response = api.post(
        "/api/v1/mail/send",
        {"mailbox": ADDRESS, "to": ["a@b.example"], "subject": "Hi", "body": "x"},
        format="json",
    )

    assert response.status_code == 502
    assert "Microsoft 365" in response.json()["detail"]


def test_the_openapi_schema_documents_the_filter_and_search_parameters(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()

    paths = schema["paths"]
    parameters = {p["name"]: p for p in paths["/api/v1/mail/messages"]["get"]["parameters"]}
    assert "from:@example.com" in parameters["filter"]["description"]
    assert "websearch" in parameters["q"]["description"]
    assert "post" in paths["/api/v1/mail/send"]
    assert any(path.startswith("/api/v1/mail/attachments/") for path in paths)
