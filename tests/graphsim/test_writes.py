"""The simulator's write operations behave like Graph's: updates, moves, deletes, drafts,
replies, sending and attachments, seen by delta rounds, with refusals and counters for tests."""

import base64

import pytest
import requests

from tests.graphsim.helpers import IMMUTABLE, delta_round

CUSTOMER = {"emailAddress": {"name": "Jana Novak", "address": "jana@nordwind.example"}}
COLLEAGUE = {"emailAddress": {"name": "Ola", "address": "ola@nordwind.example"}}
SUPPORT = {"emailAddress": {"name": "Support", "address": "support@contoso.example"}}
MB = 1024 * 1024
PREFER_IMMUTABLE = {"Prefer": IMMUTABLE}


def received(mailbox, **overrides):
    properties = {
        "subject": "Printer on fire",
        "body": {"contentType": "text", "content": "It is on fire."},
        "from": CUSTOMER,
        "sender": CUSTOMER,
        "toRecipients": [SUPPORT],
        "ccRecipients": [COLLEAGUE],
        "replyTo": [],
        "internetMessageId": "<1@nordwind.example>",
        "conversationId": "AAQkConversation1",
        "conversationIndex": base64.b64encode(b"x" * 22).decode(),
        "internetMessageHeaders": [
            {"name": "Message-ID", "value": "<1@nordwind.example>"},
            {"name": "References", "value": "<0@nordwind.example>"},
        ],
        "isRead": False,
        "isDraft": False,
        "flag": {"flagStatus": "notFlagged"},
        "categories": [],
        "importance": "normal",
    }
    return mailbox.add_message("inbox", **{**properties, **overrides})


def test_patch_updates_flags_and_delta_reports_only_the_changed_properties(graph, mailbox):
    session, base = graph
    message = received(mailbox)
    url = f"{base}/mailFolders/inbox/messages/delta"
    _, _, link = delta_round(session, url)

    answer = session.patch(
        f"{base}/messages/{message}",
        json={"isRead": True, "flag": {"flagStatus": "flagged"}, "categories": ["VIP"]},
        headers=PREFER_IMMUTABLE,
    )
    _, items, _ = delta_round(session, link)

    assert answer.status_code == 200
    assert answer.json()["id"] == message
    assert answer.json()["isRead"] is True
    assert answer.json()["flag"] == {"flagStatus": "flagged"}
    assert len(items) == 1
    assert items[0]["isRead"] is True
    assert items[0]["categories"] == ["VIP"]
    assert "subject" not in items[0]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"receivedDateTime": "2020-01-01T00:00:00Z"}, "ErrorInvalidPropertySet"),
        ({"subject": "New"}, "ErrorInvalidPropertyUpdateSentMessage"),
        ({"nonsense": 1}, "RequestBodyRead"),
        ({"flag": {"flagStatus": "maybe"}}, "RequestBodyRead"),
    ],
)
def test_patch_refuses_what_graph_refuses(graph, mailbox, change, code):
    session, base = graph
    message = received(mailbox)

    answer = session.patch(f"{base}/messages/{message}", json=change)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == code
    assert mailbox.messages[message]["subject"] == "Printer on fire"


def test_writes_on_an_unknown_message_are_404(graph, mailbox):
    session, base = graph
    message = received(mailbox)
    mailbox.delete_message(message)

    answers = [
        session.patch(f"{base}/messages/{message}", json={"isRead": True}),
        session.post(f"{base}/messages/{message}/move", json={"destinationId": "archive"}),
        session.delete(f"{base}/messages/{message}"),
        session.post(f"{base}/messages/{message}/createReply", json={}),
    ]

    assert [a.status_code for a in answers] == [404] * 4
    assert {a.json()["error"]["code"] for a in answers} == {"ErrorItemNotFound"}


def test_move_answers_201_with_a_new_regular_id_and_the_same_immutable_one(graph, mailbox):
    session, base = graph
    message = received(mailbox)
    regular = session.get(f"{base}/messages/{message}").json()["id"]
    _, _, inbox_link = delta_round(session, f"{base}/mailFolders/inbox/messages/delta")

    moved = session.post(f"{base}/messages/{regular}/move", json={"destinationId": "archive"})
    same = session.get(f"{base}/messages/{moved.json()['id']}", headers=PREFER_IMMUTABLE)
    _, inbox_items, _ = delta_round(session, inbox_link)

    assert moved.status_code == 201
    assert moved.json()["id"] != regular
    assert moved.json()["parentFolderId"] == mailbox.folder("archive").id
    assert same.json()["id"] == message
    assert inbox_items == [{"id": message, "@removed": {"reason": "deleted"}}]
    assert session.get(f"{base}/messages/{regular}").status_code == 404


def test_move_to_an_unknown_folder_is_404_and_to_a_malformed_id_400(graph, mailbox):
    session, base = graph
    message = received(mailbox)

    unknown = session.post(f"{base}/messages/{message}/move", json={"destinationId": "AAMkNope"})
    malformed = session.post(f"{base}/messages/{message}/move", json={"destinationId": "nope"})

    assert unknown.status_code == 404
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "ErrorInvalidIdMalformed"
    assert mailbox.location[message] == mailbox.folder("inbox").id


def test_delete_moves_to_deleted_items_and_from_there_removes_it(graph, mailbox):
    session, base = graph
    message = received(mailbox)

    first = session.delete(f"{base}/messages/{message}")
    in_deleted_items = mailbox.location[message] == mailbox.folder("deleteditems").id
    second = session.delete(f"{base}/messages/{message}")

    assert (first.status_code, second.status_code) == (204, 204)
    assert in_deleted_items
    assert message not in mailbox.messages


def test_permanent_delete_removes_the_message_wherever_it_is(graph, mailbox):
    session, base = graph
    message = received(mailbox)

    answer = session.post(f"{base}/messages/{message}/permanentDelete")

    assert answer.status_code == 204
    assert message not in mailbox.messages


def test_a_new_draft_is_in_drafts_with_its_own_ids(graph, mailbox):
    session, base = graph

    answer = session.post(
        f"{base}/messages",
        json={"subject": "Hello", "toRecipients": [CUSTOMER], "body": {"content": "Hi"}},
        headers=PREFER_IMMUTABLE,
    )

    draft = answer.json()
    assert answer.status_code == 201
    assert draft["isDraft"] is True
    assert draft["internetMessageId"].startswith("<")
    assert draft["conversationId"]
    assert draft["parentFolderId"] == mailbox.folder("drafts").id
    assert mailbox.messages[draft["id"]]["subject"] == "Hello"


def test_create_reply_threads_with_the_original(graph, mailbox):
    session, base = graph
    message = received(mailbox)

    answer = session.post(
        f"{base}/messages/{message}/createReply",
        json={"comment": "We are on it."},
        headers=PREFER_IMMUTABLE,
    )
    draft = answer.json()
    headers = session.get(
        f"{base}/messages/{draft['id']}", params={"$select": "internetMessageHeaders"}
    ).json()["internetMessageHeaders"]
    by_name = {h["name"]: h["value"] for h in headers}

    assert answer.status_code == 201
    assert draft["subject"] == "RE: Printer on fire"
    assert draft["toRecipients"] == [CUSTOMER]
    assert draft["ccRecipients"] == []
    assert draft["conversationId"] == "AAQkConversation1"
    assert draft["internetMessageId"] != "<1@nordwind.example>"
    assert "We are on it." in draft["body"]["content"]
    assert by_name["In-Reply-To"] == "<1@nordwind.example>"
    assert by_name["References"] == "<0@nordwind.example> <1@nordwind.example>"


def test_reply_all_leaves_out_the_mailbox_and_forward_has_no_recipients(graph, mailbox):
    session, base = graph
    message = received(mailbox, subject="RE: Printer on fire")

    reply_all = session.post(f"{base}/messages/{message}/createReplyAll").json()
    forward = session.post(f"{base}/messages/{message}/createForward", json={}).json()

    assert reply_all["subject"] == "RE: Printer on fire"
    assert reply_all["toRecipients"] == [CUSTOMER]
    assert reply_all["ccRecipients"] == [COLLEAGUE]
    assert forward["subject"] == "FW: RE: Printer on fire"
    assert forward["toRecipients"] == []


def test_comment_and_message_body_together_are_refused(graph, mailbox):
    session, base = graph
    message = received(mailbox)

    answer = session.post(
        f"{base}/messages/{message}/createReply",
        json={"comment": "a", "message": {"body": {"contentType": "text", "content": "b"}}},
    )

    assert answer.status_code == 400


def test_send_moves_the_draft_to_sent_items_keeping_its_ids(graph, graph_simulator, mailbox):
    session, base = graph
    message = received(mailbox)
    draft = session.post(f"{base}/messages/{message}/createReply", headers=PREFER_IMMUTABLE).json()
    session.patch(
        f"{base}/messages/{draft['id']}",
        json={"body": {"contentType": "html", "content": "<p>Fixed.</p>"}},
    )
    _, _, sent_link = delta_round(session, f"{base}/mailFolders/sentitems/messages/delta")

    answer = session.post(f"{base}/messages/{draft['id']}/send")
    sent = session.get(f"{base}/messages/{draft['id']}", headers=PREFER_IMMUTABLE).json()
    _, sent_items, _ = delta_round(session, sent_link)
    again = session.post(f"{base}/messages/{draft['id']}/send")

    assert answer.status_code == 202
    assert sent["isDraft"] is False
    assert sent["parentFolderId"] == mailbox.folder("sentitems").id
    assert sent["internetMessageId"] == draft["internetMessageId"]
    assert sent["sentDateTime"]
    assert [i["internetMessageId"] for i in sent_items] == [draft["internetMessageId"]]
    assert again.status_code == 400
    assert session.post(f"{base}/messages/{message}/send").status_code == 400
    outgoing = graph_simulator.sent_messages
    assert outgoing[-1]["body"]["content"] == "<p>Fixed.</p>"
    headers = {h["name"]: h["value"] for h in outgoing[-1]["internetMessageHeaders"]}
    assert headers["In-Reply-To"] == "<1@nordwind.example>"


def test_send_mail_stores_a_copy_unless_told_not_to(graph, graph_simulator, mailbox):
    session, base = graph
    message = {"subject": "Hi", "toRecipients": [CUSTOMER], "body": {"content": "Hello"}}

    saved = session.post(f"{base}/sendMail", json={"message": message})
    unsaved = session.post(f"{base}/sendMail", json={"message": message, "saveToSentItems": False})
    nobody = session.post(f"{base}/sendMail", json={"message": {"subject": "x"}})

    sent_items = mailbox.folder("sentitems").id
    copies = [m for m, f in mailbox.location.items() if f == sent_items]
    assert (saved.status_code, unsaved.status_code) == (202, 202)
    assert nobody.status_code == 400
    assert len(copies) == 1
    assert len(graph_simulator.sent_messages) == 2
    assert graph_simulator.write_counts["sendMail"] == 2


def test_small_attachments_post_inline_and_large_ones_are_413(graph, mailbox):
    session, base = graph
    draft = session.post(f"{base}/messages", json={"subject": "With file"}).json()
    small = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "note.txt",
        "contentType": "text/plain",
        "contentBytes": base64.b64encode(b"hello").decode(),
    }
    large = {**small, "contentBytes": base64.b64encode(b"x" * (3 * MB + 1)).decode()}

    added = session.post(f"{base}/messages/{draft['id']}/attachments", json=small)
    refused = session.post(f"{base}/messages/{draft['id']}/attachments", json=large)
    content = session.get(f"{base}/messages/{draft['id']}/attachments/{added.json()['id']}/$value")

    assert added.status_code == 201
    assert added.json()["size"] == 5
    assert refused.status_code == 413
    assert content.content == b"hello"
    assert session.get(f"{base}/messages/{draft['id']}").json()["hasAttachments"] is True


def test_an_upload_session_takes_chunks_in_order_without_a_bearer_token(graph, mailbox):
    session, base = graph
    draft = session.post(f"{base}/messages", json={"subject": "Big"}).json()
    payload = bytes(range(256)) * (4 * MB // 256) + b"tail"
    created = session.post(
        f"{base}/messages/{draft['id']}/attachments/createUploadSession",
        json={
            "AttachmentItem": {"attachmentType": "file", "name": "big.bin", "size": len(payload)}
        },
    )
    upload = created.json()
    plain = requests.Session()
    plain.trust_env = False
    plain.verify = session.verify

    def put(start, end):
        return plain.put(
            upload["uploadUrl"],
            data=payload[start : end + 1],
            headers={"Content-Range": f"bytes {start}-{end}/{len(payload)}"},
        )

    first = put(0, 2 * MB - 1)
    skipped = put(3 * MB, 4 * MB - 1)
    last = put(2 * MB, len(payload) - 1)
    attachment_id = last.headers["Location"].rpartition("('")[2].rstrip("')")
    content = session.get(f"{base}/messages/{draft['id']}/attachments/{attachment_id}/$value")

    assert created.status_code == 201
    assert upload["nextExpectedRanges"] == ["0-"]
    assert first.status_code == 200
    assert first.json()["nextExpectedRanges"] == [str(2 * MB)]
    assert skipped.status_code == 416
    assert last.status_code == 201
    assert content.content == payload
    assert put(0, 10).status_code == 404  # the session ended with the last chunk


def test_an_upload_session_for_a_small_file_is_refused(graph, mailbox):
    session, base = graph
    draft = session.post(f"{base}/messages", json={}).json()

    answer = session.post(
        f"{base}/messages/{draft['id']}/attachments/createUploadSession",
        json={"AttachmentItem": {"attachmentType": "file", "name": "x", "size": 10}},
    )

    assert answer.status_code == 400


def test_refused_writes_fail_once_change_nothing_and_are_counted(graph, graph_simulator, mailbox):
    session, base = graph
    message = received(mailbox)
    regular = session.get(f"{base}/messages/{message}").json()["id"]
    graph_simulator.refuse_writes(regular, status=403)

    refused = session.patch(f"{base}/messages/{message}", json={"isRead": True})
    unread = mailbox.messages[message]["isRead"]
    accepted = session.patch(f"{base}/messages/{message}", json={"isRead": True})

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "ErrorAccessDenied"
    assert unread is False
    assert accepted.status_code == 200
    assert graph_simulator.refused_writes["update"] == 1
    assert graph_simulator.write_counts["update"] == 1


def test_faults_and_the_concurrency_limit_apply_to_writes(graph, graph_simulator, mailbox):
    session, base = graph
    message = received(mailbox)
    graph_simulator.script_faults(("429", "2"))

    throttled = session.patch(f"{base}/messages/{message}", json={"isRead": True})
    for _ in range(4):
        assert graph_simulator.enter_mailbox(mailbox.address)
    try:
        busy = session.post(f"{base}/messages/{message}/move", json={"destinationId": "archive"})
    finally:
        for _ in range(4):
            graph_simulator.leave_mailbox(mailbox.address)

    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "2"
    assert busy.status_code == 429
    assert mailbox.messages[message]["isRead"] is False
    assert mailbox.location[message] == mailbox.folder("inbox").id


def test_writes_inside_a_batch_stay_refused(graph, graph_simulator, mailbox):
    session, base = graph
    message = received(mailbox)
    url = f"/users/{mailbox.address}/messages/{message}"

    answer = session.post(
        f"{graph_simulator.base_url}/v1.0/$batch",
        json={"requests": [{"id": "1", "method": "PATCH", "url": url, "body": {"isRead": True}}]},
    )

    assert answer.json()["responses"][0]["status"] == 405
