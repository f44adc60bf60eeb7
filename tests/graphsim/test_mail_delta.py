"""The simulator's mail folders and delta queries behave like Graph's (the contract our sync
client is written against)."""

from tests.graphsim.helpers import delta_round


def test_folders_list_the_well_known_tree(graph, mailbox):
    session, base = graph

    names = {f["displayName"] for f in session.get(f"{base}/mailFolders").json()["value"]}

    assert {"Inbox", "Sent Items", "Drafts", "Deleted Items", "Archive", "Junk Email"} <= names


def test_first_round_pages_through_everything_then_changes_come_partial(graph, mailbox):
    session, base = graph
    ids = [mailbox.add_message("inbox", subject=f"Order {i}", isRead=False) for i in range(25)]

    pages, items, delta_link = delta_round(session, f"{base}/mailFolders/inbox/messages/delta")

    assert pages == 3
    assert [m["id"] for m in items] == ids
    inbox = mailbox.folder("inbox").id
    assert items[0] == {
        "id": ids[0],
        "subject": "Order 0",
        "isRead": False,
        "parentFolderId": inbox,
    }

    mailbox.update_message(ids[0], isRead=True)
    mailbox.move_message(ids[1], "archive")
    mailbox.delete_message(ids[2])
    new = mailbox.add_message("inbox", subject="New", isRead=False)
    _, changes, _ = delta_round(session, delta_link)

    assert {c["id"]: c for c in changes} == {
        ids[0]: {"id": ids[0], "isRead": True},
        ids[1]: {"id": ids[1], "@removed": {"reason": "deleted"}},
        ids[2]: {"id": ids[2], "@removed": {"reason": "deleted"}},
        new: {"id": new, "subject": "New", "isRead": False, "parentFolderId": inbox},
    }


def test_moved_message_keeps_its_immutable_id_in_the_other_folder(graph, mailbox):
    session, base = graph
    message = mailbox.add_message("inbox", subject="Move me")

    mailbox.move_message(message, "archive")
    _, archived, _ = delta_round(session, f"{base}/mailFolders/archive/messages/delta")

    assert [m["id"] for m in archived] == [message]


def test_select_limits_properties(graph, mailbox):
    session, base = graph
    mailbox.add_message("inbox", subject="Hi", body={"content": "long"}, isRead=False)

    _, items, _ = delta_round(session, f"{base}/mailFolders/inbox/messages/delta?$select=subject")

    assert set(items[0]) == {"id", "subject"}


def test_expired_sync_state_answers_410(graph, mailbox):
    session, base = graph
    mailbox.add_message("inbox", subject="x")
    _, _, delta_link = delta_round(session, f"{base}/mailFolders/inbox/messages/delta")
    mailbox.add_message("inbox", subject="y")

    mailbox.expire_sync_state("inbox")
    response = session.get(delta_link)

    assert response.status_code == 410
    assert response.json()["error"]["code"] == "syncStateNotFound"


def test_an_expired_token_answers_401_and_an_unknown_user_404(graph, graph_simulator, mailbox):
    session, base = graph
    graph_simulator.identity.expire_all_tokens()

    assert session.get(f"{base}/mailFolders").status_code == 401
    fresh = graph_simulator.identity.issue_token()
    other = session.get(
        base.replace("support@", "nobody@") + "/mailFolders",
        headers={"Authorization": f"Bearer {fresh}"},
    )
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "ErrorInvalidUser"


def test_more_than_four_concurrent_requests_per_mailbox_get_429(graph, graph_simulator, mailbox):
    from concurrent.futures import ThreadPoolExecutor

    session, base = graph
    graph_simulator.response_delay = 0.5  # holds each request long enough to overlap

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(
            pool.map(lambda _: session.get(f"{base}/mailFolders").status_code, range(6))
        )

    assert statuses.count(200) == 4
    assert statuses.count(429) == 2
    assert graph_simulator.concurrency_refusals == 2


def test_rounds_may_contain_empty_pages_and_repeated_items(graph, graph_simulator, mailbox):
    session, base = graph
    ids = [mailbox.add_message("inbox", subject=f"m{i}") for i in range(12)]
    graph_simulator.empty_pages = True
    graph_simulator.repeat_items = True

    pages, items, delta_link = delta_round(session, f"{base}/mailFolders/inbox/messages/delta", 5)

    assert pages == 6, "an empty page before each of the three real pages"
    assert [m["id"] for m in items] == [*ids[:5], ids[4], *ids[5:10], ids[9], *ids[10:]]
    assert "deltatoken" in delta_link


def test_folder_delta_lists_the_tree_then_its_changes(graph, mailbox):
    session, base = graph
    inbox = mailbox.folder("inbox")
    customers = mailbox.add_folder("Customers", parent_id=inbox.id)

    first = session.get(f"{base}/mailFolders/delta").json()
    mailbox.rename_folder(customers.id, "Key customers")
    vip = mailbox.add_folder("VIP", parent_id=customers.id)
    mailbox.add_message(vip.id, subject="inside")
    mailbox.delete_folder(customers.id)
    second = session.get(first["@odata.deltaLink"]).json()

    names = {f["displayName"]: f for f in first["value"]}
    assert names["Customers"]["parentFolderId"] == inbox.id
    assert names["Inbox"]["wellKnownName"] == "inbox"
    assert len(first["value"]) == 7
    assert second["value"] == [
        {"id": customers.id, "@removed": {"reason": "deleted"}},
        {"id": vip.id, "@removed": {"reason": "deleted"}},
    ]


def test_attachments_metadata_first_bytes_on_request(graph, mailbox):
    session, base = graph
    message = mailbox.add_message("inbox", subject="Invoice", hasAttachments=False)
    attachment = mailbox.add_attachment(
        message, name="invoice.pdf", content=b"%PDF-1.7 test", content_type="application/pdf"
    )

    listed = session.get(f"{base}/messages/{message}/attachments").json()["value"]
    raw = session.get(f"{base}/messages/{message}/attachments/{attachment}/$value")
    _, items, _ = delta_round(session, f"{base}/mailFolders/inbox/messages/delta")

    assert listed == [
        {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "id": attachment,
            "name": "invoice.pdf",
            "contentType": "application/pdf",
            "size": 13,
            "isInline": False,
        }
    ]
    assert raw.content == b"%PDF-1.7 test"
    assert raw.headers["Content-Type"] == "application/pdf"
    assert items[0]["hasAttachments"] is True
    assert session.get(f"{base}/messages/nope/attachments").status_code == 404
