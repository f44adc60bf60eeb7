"""Message ids (regular or immutable, as the request prefers) and single-message GETs behave
like Graph's."""

import http.client
import ssl
import urllib.parse

from tests.graphsim.helpers import IMMUTABLE, delta_round

HEADERS = [
    {"name": "Message-ID", "value": "<1@nordwind.example>"},
    {"name": "In-Reply-To", "value": "<0@contoso.example>"},
]


def test_without_the_preference_ids_are_regular_and_change_when_the_message_moves(graph, mailbox):
    session, base = graph
    message = mailbox.add_message("inbox", subject="Move me")
    _, before, _ = delta_round(session, f"{base}/mailFolders/inbox/messages/delta", immutable=False)
    regular = before[0]["id"]

    mailbox.move_message(message, "archive")
    _, after, _ = delta_round(
        session, f"{base}/mailFolders/archive/messages/delta", immutable=False
    )

    assert regular != message
    assert after[0]["id"] not in (regular, message)
    assert session.get(f"{base}/messages/{after[0]['id']}").json()["subject"] == "Move me"
    stale = session.get(f"{base}/messages/{regular}")
    assert stale.status_code == 404
    assert stale.json()["error"]["code"] == "ErrorItemNotFound"


def test_immutable_ids_survive_moves_and_routes_accept_both_kinds(graph, mailbox):
    session, base = graph
    message = mailbox.add_message("inbox", subject="Keep me")
    mailbox.move_message(message, "archive")

    by_immutable = session.get(f"{base}/messages/{message}", headers={"Prefer": IMMUTABLE})
    regular = session.get(f"{base}/messages/{message}").json()["id"]
    by_regular = session.get(f"{base}/messages/{regular}", headers={"Prefer": IMMUTABLE})

    assert by_immutable.json()["id"] == message
    assert by_immutable.headers["Preference-Applied"] == IMMUTABLE
    assert by_regular.json()["id"] == message


def test_the_preference_may_share_a_header_or_come_in_a_second_one(graph, mailbox):
    session, base = graph
    message = mailbox.add_message("inbox", subject="x")
    url = f"{base}/messages/{message}"

    combined = session.get(url, headers={"Prefer": f"odata.maxpagesize=100, {IMMUTABLE}"})
    # requests cannot repeat a header; http.client can.
    target = urllib.parse.urlsplit(url)
    context = ssl.create_default_context(cafile=session.verify)
    connection = http.client.HTTPSConnection(target.hostname, target.port, context=context)
    connection.putrequest("GET", target.path)
    connection.putheader("Authorization", session.headers["Authorization"])
    connection.putheader("Prefer", "odata.maxpagesize=100")
    connection.putheader("Prefer", IMMUTABLE)
    connection.endheaders()
    separate = connection.getresponse()

    assert combined.json()["id"] == message
    assert separate.status == 200
    assert f'"id":"{message}"' in separate.read().decode()
    connection.close()


def test_a_moved_message_leaves_its_old_regular_id_removed_even_when_it_comes_back(graph, mailbox):
    session, base = graph
    message = mailbox.add_message("inbox", subject="Boomerang")
    url = f"{base}/mailFolders/inbox/messages/delta"
    _, first, regular_link = delta_round(session, url, immutable=False)
    _, _, immutable_link = delta_round(session, url)

    mailbox.move_message(message, "archive")
    mailbox.move_message(message, "inbox")
    _, regular_changes, _ = delta_round(session, regular_link, immutable=False)
    _, immutable_changes, _ = delta_round(session, immutable_link)

    assert regular_changes[0] == {"id": first[0]["id"], "@removed": {"reason": "deleted"}}
    assert regular_changes[1]["subject"] == "Boomerang"
    assert regular_changes[1]["id"] != first[0]["id"]
    assert [c["id"] for c in immutable_changes] == [message]
    assert "@removed" not in immutable_changes[0]


def test_parent_folder_id_follows_moves(graph, mailbox):
    session, base = graph
    message = mailbox.add_message("inbox", subject="x")

    mailbox.move_message(message, "archive")
    body = session.get(
        f"{base}/messages/{message}?$select=parentFolderId", headers={"Prefer": IMMUTABLE}
    ).json()

    assert body == {"id": message, "parentFolderId": mailbox.folder("archive").id}


def test_single_message_get_selects_and_returns_headers_only_when_named(graph, mailbox):
    session, base = graph
    message = mailbox.add_message(
        "inbox", subject="Hi", isRead=False, internetMessageHeaders=HEADERS
    )
    prefer = {"Prefer": IMMUTABLE}

    full = session.get(f"{base}/messages/{message}", headers=prefer).json()
    some = session.get(f"{base}/messages/{message}?$select=subject,isRead", headers=prefer).json()
    headers = session.get(
        f"{base}/messages/{message}?$select=internetMessageHeaders", headers=prefer
    ).json()

    assert "internetMessageHeaders" not in full
    assert full["subject"] == "Hi"
    assert some == {"id": message, "subject": "Hi", "isRead": False}
    assert headers == {"id": message, "internetMessageHeaders": HEADERS}


def test_message_in_a_folder_path_must_be_in_that_folder(graph, mailbox):
    session, base = graph
    message = mailbox.add_message("inbox", subject="x")
    prefer = {"Prefer": IMMUTABLE}

    here = session.get(f"{base}/mailFolders/inbox/messages/{message}", headers=prefer)
    elsewhere = session.get(f"{base}/mailFolders/archive/messages/{message}", headers=prefer)

    assert here.json()["subject"] == "x"
    assert elsewhere.status_code == 404


def test_delta_never_returns_internet_message_headers(graph, mailbox):
    session, base = graph
    mailbox.add_message("inbox", subject="x", internetMessageHeaders=HEADERS)
    url = f"{base}/mailFolders/inbox/messages/delta"

    _, everything, _ = delta_round(session, url)
    _, selected, _ = delta_round(session, f"{url}?$select=subject,internetMessageHeaders")

    assert "internetMessageHeaders" not in everything[0]
    assert set(selected[0]) == {"id", "subject"}


def test_a_single_folder_answers_with_select(graph, mailbox):
    session, base = graph

    body = session.get(f"{base}/mailFolders/inbox?$select=id").json()

    assert body == {"id": mailbox.folder("inbox").id}


def test_a_page_shows_current_values_and_the_next_round_reports_the_change(graph, mailbox):
    """The collapsed round is reused across its pages; a change made mid-round is not lost."""
    session, base = graph
    ids = [mailbox.add_message("inbox", subject=f"m{i}", isRead=False) for i in range(4)]
    url = f"{base}/mailFolders/inbox/messages/delta"
    prefer = {"Prefer": f"odata.maxpagesize=2, {IMMUTABLE}"}
    first = session.get(url, headers=prefer).json()

    mailbox.update_message(ids[3], isRead=True)
    mailbox.delete_message(ids[2])
    second = session.get(first["@odata.nextLink"], headers=prefer).json()
    _, changes, _ = delta_round(session, second["@odata.deltaLink"])

    assert [m["id"] for m in first["value"] + second["value"]] == ids
    assert {c["id"]: c for c in changes} == {
        ids[3]: {"id": ids[3], "isRead": True},
        ids[2]: {"id": ids[2], "@removed": {"reason": "deleted"}},
    }
