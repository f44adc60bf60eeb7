"""Sent-mail recipient statistics: kept from Sent Items by sync rounds and local delivery,
rebuilt from scratch to the same figures, and served by the API (filters, order, pages, CSV)
and the admin, each caller seeing only their mailboxes' figures."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from rest_framework.test import APIClient

from crm.changes import item_touch
from mailsync import services
from mailsync.models import Message, RecipientStat, RecipientStatCursor, SentRecipient
from mailsync.services import recipient_stats
from mailsync.tasks import sweep_recipient_stats, sync_mailbox
from tests.cases.factories import TeamFactory, make_agent
from tests.mailsync import mime_samples as samples
from tests.mailsync.conftest import ADDRESS, graph_message

pytestmark = pytest.mark.django_db
URL = "/api/v1/mail/recipient-stats"


def people(*addresses: str) -> list[dict]:
    return [{"emailAddress": {"name": a.split("@")[0], "address": a}} for a in addresses]


def sent_item(n: int, *, to=(), cc=(), bcc=(), day: int = 10, **overrides) -> dict:
    """A message in Sent Items as Graph returns it: the shared mailbox writing to customers."""
    return graph_message(
        n,
        subject=f"RE: Invoice {n}",
        toRecipients=people(*to),
        ccRecipients=people(*cc),
        bccRecipients=people(*bcc),
        sentDateTime=f"2026-11-{day:02d}T10:00:00Z",
        receivedDateTime=f"2026-11-{day:02d}T10:00:01Z",
        **overrides,
    )


def stats(mailbox) -> dict[str, tuple]:
    return {
        s.address: (s.domain, s.to_count, s.cc_count, s.bcc_count, s.total_count,
                    s.first_sent.date().isoformat(), s.last_sent.date().isoformat())
        for s in RecipientStat.objects.filter(mailbox=mailbox)
    }  # fmt: skip


def rows(mailbox) -> set[tuple]:
    return set(
        SentRecipient.objects.filter(mailbox=mailbox).values_list(
            "message_id", "address", "domain", "kind", "sent_at"
        )
    )


@pytest.fixture
def worker(eager_celery, django_capture_on_commit_callbacks):
    """What the worker does after a commit: the follow-up tasks run at once."""

    def run(function, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return function(*args, **kwargs)

    return run


# --- kept from sync rounds and local delivery ---------------------------------------------------


def test_a_sync_round_counts_each_recipient_of_sent_items(mailbox, remote, worker):
    remote.add_message("sentitems", **sent_item(1, to=["Anna.Berg@Nordwind.example"],
                                                cc=["jon@nordwind.example"], day=10))  # fmt: skip
    remote.add_message("sentitems", **sent_item(2, to=["anna.berg@nordwind.example"],
                                                bcc=["boss@contoso.example"], day=12))  # fmt: skip
    both = ["anna.berg@nordwind.example", "legacy-dn-without-at"]
    remote.add_message("sentitems", **sent_item(3, to=both, cc=both[:1], day=14))
    remote.add_message("sentitems", **sent_item(4, to=["draft@nordwind.example"], isDraft=True))
    remote.add_message("inbox", **graph_message(5))  # received mail is not counted

    worker(sync_mailbox, mailbox.pk)

    assert stats(mailbox) == {
        "anna.berg@nordwind.example": ("nordwind.example", 3, 1, 0, 4, "2026-11-10", "2026-11-14"),
        "jon@nordwind.example": ("nordwind.example", 0, 1, 0, 1, "2026-11-10", "2026-11-10"),
        "boss@contoso.example": ("contoso.example", 0, 0, 1, 1, "2026-11-12", "2026-11-12"),
    }
    cursor = RecipientStatCursor.objects.get(mailbox=mailbox)
    mailbox.container.refresh_from_db()
    assert cursor.last_seq == mailbox.container.last_seq


def test_later_rounds_add_rewrite_and_remove_rows_incrementally(mailbox, remote, worker):
    keep = remote.add_message("sentitems", **sent_item(1, to=["anna@nordwind.example"], day=10))
    edit = remote.add_message("sentitems", **sent_item(2, to=["jon@nordwind.example"], day=11))
    move = remote.add_message("sentitems", **sent_item(3, to=["eva@nordwind.example"], day=12))
    gone = remote.add_message("sentitems", **sent_item(4, to=["max@nordwind.example"], day=13))
    worker(sync_mailbox, mailbox.pk)
    assert set(stats(mailbox)) == {"anna@nordwind.example", "jon@nordwind.example",
                                   "eva@nordwind.example", "max@nordwind.example"}  # fmt: skip

    remote.add_message("sentitems", **sent_item(5, to=["anna@nordwind.example"], day=20))
    remote.update_message(edit, toRecipients=people("jon@nordwind.example", "ida@nordwind.example"))
    remote.update_message(keep, isRead=True)
    remote.move_message(move, "archive")
    remote.delete_message(gone)
    worker(sync_mailbox, mailbox.pk)

    figures = stats(mailbox)
    assert figures["anna@nordwind.example"] == (
        "nordwind.example", 2, 0, 0, 2, "2026-11-10", "2026-11-20"
    )  # fmt: skip
    assert figures["ida@nordwind.example"][1:5] == (1, 0, 0, 1)
    assert "eva@nordwind.example" not in figures  # moved out of Sent Items
    assert "max@nordwind.example" not in figures  # deleted
    gone_rows = SentRecipient.objects.filter(
        address__in=["eva@nordwind.example", "max@nordwind.example"]
    )
    assert not gone_rows.exists()


def test_a_deleted_message_is_uncounted_from_its_tombstone(mailbox, remote, worker):
    """The rows outlive the message until the update reads its tombstone: only they say
    whose figures the deletion changes."""
    ids = [remote.add_message("sentitems", **sent_item(n, to=["anna@nordwind.example"]))
           for n in (1, 2)]  # fmt: skip
    worker(sync_mailbox, mailbox.pk)
    remote.delete_message(ids[0])
    for _ in range(2):  # left the folder, then settled as deleted; no update in between
        assert not services.mailbox_sync(mailbox=mailbox).failed
    assert Message.objects.filter(mailbox=mailbox).count() == 1
    assert SentRecipient.objects.filter(mailbox=mailbox).count() == 2

    progress = services.recipient_stats_update(mailbox_id=mailbox.pk)

    assert progress.removed == 1
    assert stats(mailbox)["anna@nordwind.example"][1:5] == (1, 0, 0, 1)


def test_local_delivery_counts_the_sent_copy_only(team, settings, tmp_path, worker):
    settings.MEDIA_ROOT = tmp_path
    help_box = services.mailbox_connect(address="help@crm.example", team=team, local=True)
    sales_box = services.mailbox_connect(
        address="sales@crm.example", team=TeamFactory(name="Sales"), local=True
    )
    agent = make_agent(team=team)
    raw = samples.plain(sender="Support <help@crm.example>", to="sales@crm.example",
                        message_id="<out1@crm.example>")  # fmt: skip
    inbound = services.inbound_receive(
        raw=raw, mail_from="help@crm.example", rcpt_tos=["sales@crm.example", "boss@crm.example"],
        peer="crm", helo="crm", user_id=agent.pk,
    )  # fmt: skip

    worker(services.inbound_deliver, inbound_id=inbound.pk)

    figures = stats(help_box)
    assert figures["sales@crm.example"][1:5] == (1, 0, 0, 1)
    assert figures["boss@crm.example"][1:5] == (0, 0, 1, 1)
    assert stats(sales_box) == {}


def test_updating_again_or_with_nothing_new_changes_nothing(mailbox, remote, worker):
    remote.add_message("sentitems", **sent_item(1, to=["anna@nordwind.example"]))
    worker(sync_mailbox, mailbox.pk)
    before = (rows(mailbox), stats(mailbox))

    again = services.recipient_stats_update(mailbox_id=mailbox.pk)

    assert again.changes == 0
    assert (rows(mailbox), stats(mailbox)) == before


def test_updates_work_in_bounded_batches(mailbox, remote):
    remote.add_messages(
        "sentitems", [sent_item(n, to=[f"c{n}@nordwind.example"]) for n in range(7)]
    )
    services.recipient_stats_update(mailbox_id=mailbox.pk)  # the first one builds (empty)
    assert not services.mailbox_sync(mailbox=mailbox).failed

    first = services.recipient_stats_update(mailbox_id=mailbox.pk, batch_size=3, max_batches=1)
    assert (first.changes, first.more) == (3, True)
    rest = services.recipient_stats_update(mailbox_id=mailbox.pk, batch_size=3)

    assert not rest.more
    assert len(stats(mailbox)) == 7


def test_beat_sweep_updates_mailboxes_whose_changes_were_not_seen(mailbox, remote, worker):
    remote.add_message("sentitems", **sent_item(1, to=["anna@nordwind.example"]))
    assert not services.mailbox_sync(mailbox=mailbox).failed  # no follow-up task ran
    assert services.mailboxes_behind_recipient_stats() == [mailbox.pk]

    worker(sweep_recipient_stats)

    assert "anna@nordwind.example" in stats(mailbox)
    assert services.mailboxes_behind_recipient_stats() == []


# --- rebuilt from scratch -----------------------------------------------------------------------


@pytest.fixture
def history(mailbox, remote, worker):
    """A mailbox whose statistics were kept incrementally through adds, edits, moves and
    deletions over three rounds."""
    ids = [
        remote.add_message("sentitems", **sent_item(
            n, to=[f"c{n % 5}@nordwind.example", "Team@Contoso.example "],
            cc=[f"c{(n + 1) % 5}@nordwind.example"] if n % 2 else [],
            bcc=["audit@contoso.example"] if n % 3 == 0 else [], day=1 + n % 28,
        ))
        for n in range(30)
    ]  # fmt: skip
    remote.add_message("inbox", **graph_message(99))
    worker(sync_mailbox, mailbox.pk)
    for graph_id in ids[:4]:
        remote.move_message(graph_id, "archive")
    for graph_id in ids[4:7]:
        remote.delete_message(graph_id)
    remote.update_message(ids[8], ccRecipients=people("new@elsewhere.example"))
    remote.add_message("sentitems", **sent_item(40, to=["late@elsewhere.example"], day=28))
    worker(sync_mailbox, mailbox.pk)
    worker(sync_mailbox, mailbox.pk)
    return mailbox


def test_rebuild_equals_what_the_updates_kept(history):
    kept = (rows(history), stats(history))
    assert kept[1]["team@contoso.example"][1] == 23  # 30 sent, 4 moved out, 3 deleted
    assert kept[1]["late@elsewhere.example"][1:5] == (1, 0, 0, 1)

    out = io.StringIO()
    call_command("recipient_stats_rebuild", "--mailbox", ADDRESS, stdout=out)

    assert (rows(history), stats(history)) == kept
    assert f"{ADDRESS}: {len(kept[0])} recipient rows, {len(kept[1])} recipients" in out.getvalue()


def test_the_rebuild_without_postgresql_gives_the_same_rows(history, monkeypatch):
    """SQLite's rebuild computes the rows in Python; it must agree with the SQL."""
    kept = (rows(history), stats(history))
    monkeypatch.setattr(recipient_stats, "is_postgresql", lambda: False)

    services.recipient_stats_rebuild(mailbox_id=history.pk)

    assert (rows(history), stats(history)) == kept


def test_rebuild_command_for_an_unknown_mailbox(db):
    with pytest.raises(CommandError, match="No mailbox nobody@example.com"):
        call_command("recipient_stats_rebuild", "--mailbox", "nobody@example.com")


# --- the API ------------------------------------------------------------------------------------


@pytest.fixture
def boxes(team, settings, tmp_path):
    """Two local mailboxes of the agent's team and one of another team, with sent mail."""
    settings.MEDIA_ROOT = tmp_path
    help_box = services.mailbox_connect(address="help@crm.example", team=team, local=True)
    billing = services.mailbox_connect(address="billing@crm.example", team=team, local=True)
    other = services.mailbox_connect(
        address="hr@crm.example", team=TeamFactory(name="HR"), local=True
    )
    for box, recipients in [
        (help_box, [(["anna@nordwind.example"], ["jon@nordwind.example"], 3),
                    (["anna@nordwind.example", "=cmd@evil.example"], [], 5),
                    (["bob@acme.example"], ["anna@nordwind.example"], 20)]),
        (billing, [(["anna@nordwind.example"], [], 25), (["cy@acme.example"], [], 1)]),
        (other, [(["secret@hidden.example"], [], 2)]),
    ]:  # fmt: skip
        for to, cc, day in recipients:
            write_sent(box, to=to, cc=cc, day=day)
        services.recipient_stats_update(mailbox_id=box.pk)
    return help_box, billing, other


def write_sent(box, *, to, cc=(), day):
    """A sent copy stored as local delivery stores one (its change number included)."""
    at = datetime(2026, 10, day, 9, 0, tzinfo=UTC)
    with transaction.atomic():
        message = Message(
            mailbox=box, folder=box.folders.get(well_known="sentitems"), sent_copy=True,
            to=[{"name": "", "address": a} for a in to],
            cc=[{"name": "", "address": a} for a in cc], sent_at=at, received_at=at,
        )  # fmt: skip
        item_touch(message, box.container)
        message.save()


@pytest.fixture
def api(team):
    client = APIClient()
    client.force_authenticate(make_agent(team=team))
    return client


def addresses(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [r["address"] for r in response.json()["recipients"]]


def test_api_sums_over_the_visible_mailboxes_in_address_order(api, boxes):
    response = api.get(URL)

    body = response.json()
    assert addresses(response) == [
        "=cmd@evil.example",  # C collation: byte order
        "anna@nordwind.example",
        "bob@acme.example",
        "cy@acme.example",
        "jon@nordwind.example",
    ]
    anna = body["recipients"][1]
    assert anna == {
        "address": "anna@nordwind.example", "domain": "nordwind.example", "sent_to": 3,
        "sent_cc": 1, "sent_bcc": 0, "sent_total": 4,
        "first_sent_at": "2026-10-03T09:00:00Z", "last_sent_at": "2026-10-25T09:00:00Z",
    }  # fmt: skip
    assert body["nextPageToken"] is None


def test_api_filters(api, boxes):
    help_box, billing, _ = boxes
    assert addresses(api.get(URL, {"mailbox": [billing.pk]})) == [
        "anna@nordwind.example", "cy@acme.example"
    ]  # fmt: skip
    both = api.get(URL, {"mailbox": [help_box.address, str(billing.pk)], "domain": "@Acme.example"})
    assert addresses(both) == ["bob@acme.example", "cy@acme.example"]
    assert addresses(api.get(URL, {"q": "NORDWIND"})) == [
        "anna@nordwind.example", "jon@nordwind.example"
    ]  # fmt: skip
    assert addresses(api.get(URL, {"min_total": 2})) == ["anna@nordwind.example"]
    after = api.get(URL, {"last_sent_after": "2026-10-20"})
    assert addresses(after) == ["anna@nordwind.example", "bob@acme.example"]
    before = api.get(URL, {"last_sent_before": "2026-10-05T09:00:00+00:00"})
    assert addresses(before) == ["cy@acme.example", "jon@nordwind.example"]


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        ("-sent_total", ["anna@nordwind.example", "=cmd@evil.example", "bob@acme.example",
                         "cy@acme.example", "jon@nordwind.example"]),
        ("last_sent_at", ["cy@acme.example", "jon@nordwind.example", "=cmd@evil.example",
                          "bob@acme.example", "anna@nordwind.example"]),
        ("-address", ["jon@nordwind.example", "cy@acme.example", "bob@acme.example",
                      "anna@nordwind.example", "=cmd@evil.example"]),
        ("domain", ["bob@acme.example", "cy@acme.example", "=cmd@evil.example",
                    "anna@nordwind.example", "jon@nordwind.example"]),
        ("-sent_cc", ["anna@nordwind.example", "jon@nordwind.example", "=cmd@evil.example",
                      "bob@acme.example", "cy@acme.example"]),
    ],
)  # fmt: skip
def test_api_orders_and_pages_follow_tokens_without_gaps(api, boxes, ordering, expected):
    assert addresses(api.get(URL, {"ordering": ordering})) == expected
    seen, token = [], None
    while True:
        params = {"ordering": ordering, "pageSize": 2, **({"pageToken": token} if token else {})}
        response = api.get(URL, params)
        seen += addresses(response)
        token = response.json()["nextPageToken"]
        if token is None:
            break
    assert seen == expected


def test_api_csv_streams_every_filtered_row(api, boxes):
    response = api.get(URL, {"format": "csv", "ordering": "-sent_total", "pageSize": 1})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="recipient-stats-')
    table = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert table[0] == ["address", "domain", "sent_to", "sent_cc", "sent_bcc", "sent_total",
                        "first_sent_at", "last_sent_at"]  # fmt: skip
    assert table[1] == ["anna@nordwind.example", "nordwind.example", "3", "1", "0", "4",
                        "2026-10-03T09:00:00+00:00", "2026-10-25T09:00:00+00:00"]  # fmt: skip
    assert "'=cmd@evil.example" in [row[0] for row in table]  # no formula for a spreadsheet
    assert len(table) == 6


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"mailbox": "hr@crm.example"}, "mailbox"),  # another team's: as if it did not exist
        ({"mailbox": "999999"}, "mailbox"),
        ({"min_total": "many"}, "min_total"),
        ({"min_total": "-1"}, "min_total"),
        ({"min_total": "9" * 30}, "min_total"),
        ({"q": "nul\x00"}, "q"),
        ({"mailbox": [str(n) for n in range(101)]}, "mailbox"),
        ({"last_sent_after": "yesterday"}, "last_sent_after"),
        ({"last_sent_before": "2026-13-01"}, "last_sent_before"),
        ({"ordering": "subject"}, "ordering"),
        ({"pageToken": "forged"}, "pageToken"),
        ({"pageSize": "0"}, "pageSize"),
        ({"format": "xml"}, "format"),
    ],
)
def test_api_bad_parameters_are_400_naming_them(api, boxes, params, field):
    response = api.get(URL, params)

    assert response.status_code == 400
    assert field in response.json()


def test_api_token_of_another_ordering_is_400(api, boxes):
    token = api.get(URL, {"pageSize": 1}).json()["nextPageToken"]

    response = api.get(URL, {"pageToken": token, "ordering": "-sent_total"})

    assert response.status_code == 400
    assert "another ordering" in response.json()["pageToken"][0]


def test_api_shows_other_teams_figures_to_admins_only(api, boxes, admin_user):
    assert "secret@hidden.example" not in addresses(api.get(URL))
    admin = APIClient()
    admin.force_authenticate(admin_user)
    assert "secret@hidden.example" in addresses(admin.get(URL))
    assert APIClient().get(URL).status_code in (401, 403)


def test_api_query_count_does_not_grow_with_rows_or_mailboxes(
    team, boxes, django_assert_num_queries
):
    """The caller's profile and teams, the mailboxes named, the page."""
    help_box, billing, _ = boxes
    agent = make_agent(team=team)
    params = {"mailbox": [help_box.pk, billing.pk], "last_sent_after": "2026-10-01"}

    def get(params):
        client = APIClient()
        client.force_authenticate(type(agent).objects.get(pk=agent.pk))
        with django_assert_num_queries(4):
            return client.get(URL, params)

    get(params)
    for n in range(20):
        write_sent(billing, to=[f"more{n}@acme.example"], day=1 + n)
    services.recipient_stats_update(mailbox_id=billing.pk)
    assert len(addresses(get({**params, "pageSize": 200}))) == 25


def test_api_is_in_the_schema(api, boxes, admin_client):
    schema = admin_client.get("/api/schema/")

    assert schema.status_code == 200
    text = schema.content.decode()
    assert "/api/v1/mail/recipient-stats" in text
    assert "mail_recipient_stats_list" in text


# --- the admin ----------------------------------------------------------------------------------


def test_admin_lists_searches_and_filters_the_statistics(admin_client, boxes):
    help_box, billing, _ = boxes

    listing = admin_client.get("/admin/mailsync/recipientstat/", {"q": "acme"})
    filtered = admin_client.get(
        "/admin/mailsync/recipientstat/", {"mailbox__id__exact": billing.pk, "o": "-7"}
    )

    assert listing.status_code == filtered.status_code == 200
    text = listing.content.decode()
    assert "bob@acme.example" in text
    assert "jon@nordwind.example" not in text
    assert "cy@acme.example" in filtered.content.decode()
    assert admin_client.get("/admin/mailsync/recipientstat/add/").status_code == 403


def test_admin_action_rebuilds_the_statistics(admin_client, boxes, worker):
    help_box, *_ = boxes
    RecipientStat.objects.filter(mailbox=help_box).update(total_count=0)

    response = worker(
        admin_client.post,
        "/admin/mailsync/mailbox/",
        {"action": "rebuild_recipient_stats", "_selected_action": [help_box.pk]},
    )

    assert response.status_code == 302
    assert (
        RecipientStat.objects.get(mailbox=help_box, address="anna@nordwind.example").total_count
        == 3
    )
