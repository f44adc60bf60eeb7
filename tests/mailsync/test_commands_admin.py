"""connect_mailbox and sync_mail as an admin types them, the same in Django admin, and the
scheduled task."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask

from mailsync.models import Mailbox, MailFolder, Message, SyncRound
from mailsync.tasks import sync_all_mailboxes
from tests.cases.factories import make_agent
from tests.mailsync.conftest import ADDRESS, graph_message

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


def test_connect_mailbox_for_a_team_then_sync_mail_prints_what_changed(remote, team):
    for n in range(3):
        remote.add_message("inbox", **graph_message(n))

    connected = run("connect_mailbox", ADDRESS.upper(), "--team", "support")
    output = run("sync_mail", ADDRESS)

    assert f"Connected Microsoft 365 mailbox {ADDRESS} for team Support" in connected
    assert "Inbox: full resync ok, 1 pages, +3 ~0 -0" in output
    assert "folder tree: folder tree ok" in output
    assert Message.objects.count() == 3


def test_connect_mailbox_for_an_agent_and_local_mailboxes(db):
    agent = make_agent(email="dana@support.example")

    run("connect_mailbox", "dana@contoso.example", "--owner", "dana@support.example")
    run("connect_mailbox", "help@crm.example", "--owner", agent.email, "--local")

    local = Mailbox.objects.get(address="help@crm.example")
    assert local.kind == "local"
    roles = set(local.folders.values_list("well_known", flat=True))
    assert roles >= {"inbox", "sentitems", "drafts", "junkemail"}
    assert Mailbox.objects.get(address="dana@contoso.example").owner == agent


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x@contoso.example", "--team", "Nobody"], "No team named"),
        (["x@contoso.example", "--owner", "ghost@example.com"], "No agent with the address"),
        (["not-an-address", "--team", "Support"], "is not an email address"),
    ],
)
def test_connect_mailbox_says_what_is_wrong(team, args, message):
    with pytest.raises(CommandError, match=message):
        run("connect_mailbox", *args)


def test_connecting_twice_is_refused(mailbox):
    with pytest.raises(CommandError, match="already connected"):
        run("connect_mailbox", ADDRESS, "--team", "Support")


def test_sync_mail_exits_non_zero_when_a_round_fails(mailbox, graph, settings):
    settings.GRAPH_MAX_RETRIES = 0
    graph.set_fault_rate(1.0)

    with pytest.raises(CommandError, match="A sync round failed"):
        run("sync_mail", ADDRESS)
    assert Mailbox.objects.get().last_error


def test_sync_mail_for_an_unknown_mailbox(db):
    with pytest.raises(CommandError, match="No Microsoft 365 mailbox"):
        run("sync_mail", "nobody@contoso.example")


def test_beat_schedules_the_sync_and_the_task_runs_every_mailbox(mailbox, remote):
    from crm.celery import app

    app.conf.task_always_eager = True
    remote.add_message("inbox", **graph_message(1))
    try:
        sync_all_mailboxes.delay()
    finally:
        app.conf.task_always_eager = False

    assert PeriodicTask.objects.filter(task="mailsync.tasks.sync_all_mailboxes").exists()
    assert Message.objects.count() == 1


# --- admin ---------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, db):
    make_agent(email="root@support.example", role="admin")
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(email="root@support.example")
    user.is_staff = True
    user.is_superuser = True
    user.save()
    client.force_login(user)
    return client


def test_admin_connects_a_mailbox_through_the_service(admin_client, team):
    response = admin_client.post(
        "/admin/mailsync/mailbox/add/",
        {"address": "Billing@Contoso.example", "display_name": "Billing", "kind": "m365",
         "team": team.pk, "owner": "", "sync_enabled": "on"},
    )  # fmt: skip

    assert response.status_code == 302, response.content[:2000]
    mailbox = Mailbox.objects.get()
    assert mailbox.address == "billing@contoso.example"
    assert mailbox.container.key == f"mailbox:{mailbox.pk}"


def test_admin_refuses_a_mailbox_without_exactly_one_owner(admin_client, team):
    response = admin_client.post(
        "/admin/mailsync/mailbox/add/",
        {"address": "x@contoso.example", "kind": "m365", "team": "", "owner": ""},
    )

    assert response.status_code == 200
    assert "belongs to a team or to an agent" in response.content.decode()
    assert not Mailbox.objects.exists()


def test_admin_opts_a_folder_in_and_sees_rounds_with_progress(admin_client, mailbox, remote):
    run("sync_mail", ADDRESS)
    archive = mailbox.folders.get(well_known="archive")
    folders = list(mailbox.folders.order_by("display_name"))
    form = {
        "display_name": mailbox.display_name,
        "sync_enabled": "on",
        "folders-TOTAL_FORMS": len(folders),
        "folders-INITIAL_FORMS": len(folders),
        "folders-MIN_NUM_FORMS": 0,
        "folders-MAX_NUM_FORMS": 1000,
    }
    for i, folder in enumerate(folders):
        form[f"folders-{i}-id"] = folder.pk
        form[f"folders-{i}-mailbox"] = mailbox.pk
        if folder.sync_enabled or folder == archive:
            form[f"folders-{i}-sync_enabled"] = "on"

    response = admin_client.post(f"/admin/mailsync/mailbox/{mailbox.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[:3000]
    assert MailFolder.objects.get(pk=archive.pk).sync_enabled
    rounds = admin_client.get("/admin/mailsync/syncround/")
    assert rounds.status_code == 200
    assert SyncRound.objects.count() >= 3
    assert "Full resync" in rounds.content.decode()


def test_admin_sync_now_queues_a_round(
    admin_client, mailbox, remote, django_capture_on_commit_callbacks
):
    from crm.celery import app

    app.conf.task_always_eager = True
    remote.add_message("inbox", **graph_message(1))
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(
                "/admin/mailsync/mailbox/",
                {"action": "sync_now", "_selected_action": [mailbox.pk]},
            )
    finally:
        app.conf.task_always_eager = False

    assert response.status_code == 302
    assert Message.objects.count() == 1


def test_admin_message_list_is_read_only(admin_client, mailbox, remote):
    remote.add_message("inbox", **graph_message(1))
    run("sync_mail", ADDRESS)

    listing = admin_client.get("/admin/mailsync/message/")
    detail = admin_client.get(f"/admin/mailsync/message/{Message.objects.get().pk}/change/")

    assert listing.status_code == detail.status_code == 200
    assert "Invoice 1 is wrong" in listing.content.decode()
    assert admin_client.get("/admin/mailsync/message/add/").status_code == 403
