"""Seeded mailboxes look like a real shared support mailbox, and scripted mutations change
them the way people do, the same way for the same seed."""

import pytest

from graphsim.mail import Mailbox
from graphsim.seed import mutate, seed_bulk, seed_mailbox
from tests.graphsim.helpers import IMMUTABLE, delta_round

ADDRESS = "support@contoso.example"
GRAPH_PROPERTIES = {
    "subject", "bodyPreview", "body", "from", "sender", "toRecipients", "ccRecipients",
    "bccRecipients", "replyTo", "receivedDateTime", "sentDateTime", "createdDateTime",
    "lastModifiedDateTime", "internetMessageId", "conversationId", "conversationIndex",
    "internetMessageHeaders", "importance", "isRead", "isDraft", "flag", "categories",
    "hasAttachments", "parentFolderId",
}  # fmt: skip


@pytest.fixture(scope="module")
def seeded():
    mailbox = Mailbox.with_standard_folders(ADDRESS)
    ids = seed_mailbox(mailbox, threads=60, seed=7)
    return mailbox, [mailbox.messages[i] for i in ids]


def header(message, name):
    return next((h["value"] for h in message["internetMessageHeaders"] if h["name"] == name), None)


def threads_of(messages):
    threads = {}
    for message in messages:
        threads.setdefault(message["conversationId"], []).append(message)
    return threads


def test_every_message_has_what_graph_returns(seeded):
    mailbox, messages = seeded

    for message in messages:
        assert set(message) >= GRAPH_PROPERTIES
        assert message["isDraft"] is False
        assert message["importance"] in {"low", "normal", "high"}
        assert message["flag"]["flagStatus"] in {"notFlagged", "flagged", "complete"}
        assert message["sentDateTime"].endswith("Z")
        assert message["body"]["contentType"] in {"html", "text"}
        assert message["parentFolderId"] == mailbox.location[message["id"]]
    assert len({m["internetMessageId"] for m in messages}) == len(messages)


def test_threads_alternate_customer_inbox_and_support_sent_items(seeded):
    mailbox, messages = seeded
    inbox, sent = mailbox.folder("inbox").id, mailbox.folder("sentitems").id

    threads = threads_of(messages)

    assert len(threads) == 60
    assert {len(t) for t in threads.values()} <= set(range(1, 7))
    for thread in threads.values():
        for position, message in enumerate(thread):
            from_support = message["from"]["emailAddress"]["address"] == ADDRESS
            assert from_support == (position % 2 == 1)
            assert message["parentFolderId"] == (sent if from_support else inbox)


def test_replies_thread_by_headers_and_time(seeded):
    _, messages = seeded

    for thread in threads_of(messages).values():
        ids = [header(m, "Message-ID") for m in thread]
        assert ids == [m["internetMessageId"] for m in thread]
        assert header(thread[0], "In-Reply-To") is None
        for position, reply in enumerate(thread[1:], start=1):
            assert reply["subject"].startswith(("RE: ", "AW: "))
            assert header(reply, "In-Reply-To") == ids[position - 1]
            assert header(reply, "References") == " ".join(ids[:position])
            assert reply["sentDateTime"] > thread[position - 1]["sentDateTime"]
            assert len(reply["conversationIndex"]) > len(thread[0]["conversationIndex"])


def test_the_edge_cases_are_all_there(seeded):
    mailbox, messages = seeded
    subjects = [m["subject"] for m in messages]
    bodies = " ".join(m["body"]["content"] for m in messages)
    attachments = [a for m in messages for a in mailbox.attachments.get(m["id"], [])]

    assert "" in subjects
    assert None in subjects
    assert any("Größe" in (s or "") for s in subjects)
    assert any("請求書" in (s or "") for s in subjects)
    assert any("🚀" in (s or "") for s in subjects)
    assert any("تسجيل" in (s or "") for s in subjects)
    assert 'dir="rtl"' in bodies
    assert max(len(m["toRecipients"]) + len(m["ccRecipients"]) for m in messages) == 500
    assert any(m["body"]["contentType"] == "text" for m in messages)
    assert any(a["contentType"] == "application/pdf" and not a["isInline"] for a in attachments)
    inline = [a for a in attachments if a["isInline"]]
    assert inline
    assert f"cid:{inline[0]['contentId']}" in bodies


def test_the_same_seed_gives_the_same_mailbox():
    first, second = Mailbox.with_standard_folders(ADDRESS), Mailbox.with_standard_folders(ADDRESS)

    seed_mailbox(first, threads=15, seed=3)
    seed_mailbox(second, threads=15, seed=3)

    assert first.messages == second.messages
    assert first.attachments == second.attachments


def test_a_seeded_mailbox_syncs_over_graph(graph, graph_simulator):
    session, base = graph
    mailbox = graph_simulator.add_mailbox(ADDRESS)
    ids = seed_mailbox(mailbox, threads=10, seed=1)
    in_inbox = [i for i in ids if mailbox.location[i] == mailbox.folder("inbox").id]

    _, items, _ = delta_round(session, f"{base}/mailFolders/inbox/messages/delta", 50)
    headers = session.get(
        f"{base}/messages/{in_inbox[0]}?$select=internetMessageHeaders",
        headers={"Prefer": IMMUTABLE},
    ).json()

    assert [m["id"] for m in items] == in_inbox
    assert all("internetMessageHeaders" not in m for m in items)
    assert any(h["name"] == "Message-ID" for h in headers["internetMessageHeaders"])


def test_bulk_seeding_fills_one_folder_in_threads():
    mailbox = Mailbox.with_standard_folders(ADDRESS)

    ids = seed_bulk(mailbox, messages=1000, folder="archive", seed=2)

    messages = [mailbox.messages[i] for i in ids]
    archive = mailbox.folder("archive").id
    assert len(ids) == 1000
    assert {m["parentFolderId"] for m in messages} == {archive}
    assert {len(t) for t in threads_of(messages).values()} == {1, 2, 3, 4}
    assert all(set(m) >= GRAPH_PROPERTIES for m in messages)
    replies = [m for m in messages if m["subject"].startswith("RE: ")]
    assert replies
    assert all(header(m, "In-Reply-To") for m in replies)


def test_mutations_are_deterministic_and_counted():
    mailboxes = [Mailbox.with_standard_folders(ADDRESS) for _ in range(2)]
    counts = []
    for mailbox in mailboxes:
        seed_mailbox(mailbox, threads=20, seed=1)
        counts.append(mutate(mailbox, changes=300, seed=5))

    assert counts[0] == counts[1]
    assert sum(counts[0].values()) == 300
    assert all(counts[0][kind] > 0 for kind in counts[0])
    assert mailboxes[0].messages == mailboxes[1].messages
    assert mailboxes[0].location == mailboxes[1].location


def test_replies_continue_their_thread():
    mailbox = Mailbox.with_standard_folders(ADDRESS)
    seed_bulk(mailbox, messages=50, seed=1)
    before = dict(mailbox.messages)

    mutate(mailbox, changes=200, seed=9)

    every = {**before, **mailbox.messages}.values()
    conversation_of = {m["internetMessageId"]: m["conversationId"] for m in every}
    replies = [
        m for i, m in mailbox.messages.items() if i not in before and m["subject"][:4] == "RE: "
    ]
    assert replies
    for reply in replies:
        references = header(reply, "References").split()
        assert references[-1] == header(reply, "In-Reply-To")
        assert {conversation_of[r] for r in references} == {reply["conversationId"]}
        assert all(
            reply["sentDateTime"] > m["sentDateTime"]
            for m in every
            if m["internetMessageId"] in references
        )


def test_mutations_show_in_the_next_delta_round(graph, graph_simulator):
    session, base = graph
    mailbox = graph_simulator.add_mailbox(ADDRESS)
    seed_mailbox(mailbox, threads=20, seed=4)
    url = f"{base}/mailFolders/inbox/messages/delta"
    _, _, delta_link = delta_round(session, url, 100)

    counts = mutate(mailbox, changes=60, seed=2)
    _, changes, _ = delta_round(session, delta_link, 100)
    _, everything, _ = delta_round(session, url, 100)

    assert sum(counts.values()) == 60
    assert any("@removed" in c for c in changes)
    assert any(set(c) == {"id", "isRead", "lastModifiedDateTime"} for c in changes)
    inbox = mailbox.folder("inbox").id
    assert {m["id"] for m in everything} == {
        i for i, folder in mailbox.location.items() if folder == inbox
    }
