"""The Airtable export against the fake Airtable (`airtablesim`) over a real socket, with its
real limits: 10 records per upsert, 5 requests per second per base, a lockout after a 429
(short here), unknown fields refused.

Given recipient statistics (RecipientStat rows of a local mailbox) and an export config, when
a run goes, then the fake's table holds one record per recipient, only changed records are
sent again, a failed run is recorded with Airtable's reason and the next one resumes.
"""

from __future__ import annotations

import io
import math
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask

from airtablesim.server import start
from cases.airtable.choices import RunStatus
from cases.airtable.client import AirtableClient
from cases.airtable.limits import BaseRateLimiter, base_key, rate_backend
from cases.airtable.services import AirtableExportBusy, airtable_export_run
from cases.models import (
    AirtableExport,
    AirtableExportColumn,
    AirtableExportedRecord,
    AirtableExportRun,
)
from crm.db import lease_take
from mailsync import services as mail_services
from mailsync.models import RecipientStat
from tests.cases.factories import CustomerFactory, OrganizationFactory, make_agent

pytestmark = pytest.mark.django_db

TOKEN = "patTEST.0123456789abcdef"
BASE = "appTESTBASE000001"
TABLE = "Recipients"
FIELDS = ["Email", "Domain", "Sent", "To", "Last sent", "Customer", "Organization", "Tier"]
MAPPING = [
    ("Email", "address"),
    ("Domain", "domain"),
    ("Sent", "sent_total"),
    ("To", "sent_to"),
    ("Last sent", "last_sent_at"),
    ("Customer", "customer_name"),
    ("Organization", "organization_name"),
    ("Tier", "organization_tier"),
]
EXPORTS = "/admin/cases/airtableexport/"
RUNS = "/admin/cases/airtableexportrun/"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def airtable(settings):
    """The fake Airtable with one base and table; the client retries quickly and waits a
    short lockout after a 429 (a little longer than the fake's own)."""
    server = start()
    server.lockout_seconds = 0.3
    server.add_base(BASE, token=TOKEN, tables={TABLE: FIELDS, "Other": FIELDS})
    settings.AIRTABLE_API_URL = server.base_url
    settings.AIRTABLE_LOCKOUT_SECONDS = 0.5
    settings.AIRTABLE_BACKOFF_SECONDS = 0.01
    settings.AIRTABLE_MAX_RETRIES = 3
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def team():
    from tests.cases.factories import TeamFactory

    return TeamFactory(name="Sales")


@pytest.fixture
def mailbox(team):
    return mail_services.mailbox_connect(address="sales@crm.example", team=team, local=True)


def make_export(name="Recipients to Airtable", *, mailboxes=(), mapping=MAPPING, **fields):
    values = {"base_id": BASE, "table_name": TABLE, "token": TOKEN, "every_minutes": 0}
    values.update(fields)
    export = AirtableExport.objects.create(name=name, **values)
    export.mailboxes.set(mailboxes)
    AirtableExportColumn.objects.bulk_create(
        AirtableExportColumn(export=export, column=column, source=source)
        for column, source in mapping
    )
    return export


@pytest.fixture
def export(mailbox):
    return make_export(mailboxes=[mailbox])


def address(n: int) -> str:
    return f"person{n:04d}@client{n % 3}.example"


def given_stats(mailbox, count: int, *, total: int = 3) -> None:
    RecipientStat.objects.bulk_create(
        RecipientStat(
            mailbox=mailbox,
            address=address(n),
            domain=address(n).split("@")[1],
            to_count=total,
            cc_count=0,
            bcc_count=0,
            total_count=total,
            first_sent=T0,
            last_sent=T0 + timedelta(days=n % 7),
        )  # fmt: skip
        for n in range(count)
    )


def change_stats(mailbox, numbers) -> None:
    for n in numbers:
        RecipientStat.objects.filter(mailbox=mailbox, address=address(n)).update(
            total_count=99, last_sent=T0 + timedelta(days=30)
        )


def table_records(server, table=TABLE) -> list[dict]:
    return server.table(BASE, table).all_fields()


def run_export(export, **kwargs) -> AirtableExportRun:
    return airtable_export_run(config_id=export.pk, **kwargs)


# --- the happy path --------------------------------------------------------------------------


def test_the_first_export_creates_every_recipient_with_its_customer(airtable, mailbox, export):
    given_stats(mailbox, 25)
    organization = OrganizationFactory(name="Client Zero Ltd", tier="gold")
    CustomerFactory(name="Pat Zero", emails=[address(0).upper()], organization=organization)

    run = run_export(export)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert (run.records_total, run.records_done, run.created, run.updated) == (25, 25, 25, 0)
    assert (run.requests, run.throttled, run.errors) == (3, 0, 0)
    assert airtable.counts["upsert"] == math.ceil(25 / 10)
    records = {r["Email"]: r for r in table_records(airtable)}
    assert len(records) == 25
    assert records[address(0)] == {
        "Email": address(0), "Domain": "client0.example", "Sent": 3, "To": 3,
        "Last sent": "2026-11-02T09:00:00Z", "Customer": "Pat Zero",
        "Organization": "Client Zero Ltd", "Tier": "gold",
    }  # fmt: skip
    assert records[address(1)]["Customer"] is None


def test_a_second_export_sends_nothing(airtable, mailbox, export):
    given_stats(mailbox, 25)
    run_export(export)
    before = dict(airtable.counts)

    again = run_export(export)

    assert again.status == RunStatus.SUCCEEDED
    assert (again.records_total, again.unchanged, again.requests) == (0, 25, 0)
    assert dict(airtable.counts) == before


def test_changed_statistics_are_sent_in_the_fewest_upserts(airtable, mailbox, export):
    given_stats(mailbox, 40)
    run_export(export)
    upserts = airtable.counts["upsert"]
    change_stats(mailbox, range(5, 18))  # 13 recipients

    run = run_export(export)

    assert airtable.counts["upsert"] - upserts == math.ceil(13 / 10)
    assert (run.records_total, run.updated, run.created, run.unchanged) == (13, 13, 0, 27)
    records = {r["Email"]: r for r in table_records(airtable)}
    assert len(records) == 40
    assert records[address(5)]["Sent"] == 99
    assert records[address(4)]["Sent"] == 3


def test_a_full_export_sends_every_record_again_as_updates(airtable, mailbox, export):
    given_stats(mailbox, 12)
    run_export(export)

    run = run_export(export, full=True)

    assert (run.records_total, run.updated, run.created) == (12, 12, 0)
    assert len(table_records(airtable)) == 12


# --- throttling and failures ----------------------------------------------------------------


def test_a_429_waits_out_the_lockout_and_is_counted(airtable, mailbox, export):
    given_stats(mailbox, 30)
    airtable.throttle_next(1)

    run = run_export(export)

    # Had the client not waited the lockout, every retry inside it would be another 429.
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert (run.throttled, airtable.counts["status:429"]) == (1, 1)
    assert run.requests == 4  # three upserts and the one retried
    assert len(table_records(airtable)) == 30


def test_a_dropped_connection_is_retried_without_duplicating(airtable, mailbox, export):
    given_stats(mailbox, 30)
    airtable.drop_next(1, skip=1)  # the second upsert arrives, its answer does not

    run = run_export(export)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert airtable.counts["dropped"] == 1
    assert run.errors == 1
    emails = [r["Email"] for r in table_records(airtable)]
    assert sorted(emails) == sorted({address(n) for n in range(30)})
    assert (run.created, run.updated) == (20, 10)  # the resent upsert found its records


def test_a_run_failing_halfway_is_recorded_and_the_next_resumes(airtable, mailbox, export):
    given_stats(mailbox, 35)
    airtable.drop_next(50, skip=1)  # the connection keeps dropping after the first upsert

    failed = run_export(export)

    assert failed.status == RunStatus.FAILED
    assert "could not be reached" in failed.error_message
    assert (failed.records_total, failed.records_done) == (35, 10)
    assert AirtableExportedRecord.objects.filter(export=export).count() == 10

    airtable.drop_next(0)
    resumed = run_export(export)

    assert resumed.status == RunStatus.SUCCEEDED
    assert resumed.records_total == 25  # the first ten were not sent again
    emails = [r["Email"] for r in table_records(airtable)]
    assert len(emails) == 35 == len(set(emails))


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ({"token": "patWRONG.token"}, "401 UNAUTHORIZED"),
        ({"base_id": "appNOSUCHBASE0001"}, "403 INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND"),
        ({"table_name": "No such table"}, "403 INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND"),
    ],
)
def test_bad_settings_fail_the_run_clearly_and_the_next_recovers(
    airtable, mailbox, export, broken, expected
):
    given_stats(mailbox, 12)
    good = {name: getattr(export, name) for name in broken}
    AirtableExport.objects.filter(pk=export.pk).update(**broken)
    if "token" in broken:  # update() bypasses the field's encryption
        export.refresh_from_db()
        export.token = broken["token"]
        export.save()

    failed = run_export(export)

    assert failed.status == RunStatus.FAILED
    assert failed.finished_at is not None
    assert expected in failed.error_message
    assert not AirtableExportedRecord.objects.filter(export=export).exists()
    export.refresh_from_db()
    for name, value in good.items():
        setattr(export, name, value)
    export.save()
    recovered = run_export(export)
    assert (recovered.status, recovered.created) == (RunStatus.SUCCEEDED, 12)


def test_a_column_airtable_does_not_know_fails_with_its_name(airtable, mailbox, export):
    given_stats(mailbox, 5)
    AirtableExportColumn.objects.create(export=export, column="Phone", source="customer_id")

    failed = run_export(export)

    assert failed.status == RunStatus.FAILED
    assert 'UNKNOWN_FIELD_NAME: Unknown field name: "Phone"' in failed.error_message
    assert "change the mapping" in failed.error_message
    assert table_records(airtable) == []
    AirtableExportColumn.objects.filter(column="Phone").delete()
    assert run_export(export).created == 5


def test_two_runs_of_one_export_never_overlap(airtable, mailbox, export):
    given_stats(mailbox, 3)
    assert lease_take(AirtableExport, export.pk, seconds=60)

    with pytest.raises(AirtableExportBusy, match="already running"):
        run_export(export)
    assert not AirtableExportRun.objects.exists()
    assert airtable.counts["upsert"] == 0


def test_a_run_left_running_by_a_dead_worker_is_closed_by_the_next(airtable, mailbox, export):
    given_stats(mailbox, 3)
    abandoned = AirtableExportRun.objects.create(export=export)

    run_export(export)

    abandoned.refresh_from_db()
    assert abandoned.status == RunStatus.FAILED
    assert "stopped" in abandoned.error_message


# --- the rate limit across processes ----------------------------------------------------------


@pytest.mark.parametrize("redis", [True, False], ids=["redis", "lock-file"])
def test_the_rate_limit_holds_across_clients_with_their_own_limiters(
    airtable, settings, tmp_path, redis
):
    """Two threads stand for two worker processes: each has its own client and its own
    limiter (its own Redis connection, or its own view of the lock file)."""
    if not redis:
        settings.REDIS_URL = ""
        settings.VAR_DIR = tmp_path
    failures = []

    def worker(table: str, offset: int) -> None:
        limiter = BaseRateLimiter(base_key(BASE), rate_backend(shared=False))
        client = AirtableClient(token=TOKEN, base_id=BASE, table_name=table, limiter=limiter)
        try:
            for n in range(offset, offset + 6):
                client.upsert([{"Email": address(n)}], merge_on="Email")
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(table, i * 100))
               for i, table in enumerate([TABLE, "Other"])]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert airtable.counts["upsert"] == 12
    assert airtable.counts["status:429"] == 0
    assert airtable.max_requests_in_window(BASE) <= 5


# --- the command ---------------------------------------------------------------------------


def test_the_command_runs_one_export_with_a_progress_bar(airtable, mailbox, export):
    given_stats(mailbox, 15)
    make_export("Another", mailboxes=[mailbox], table_name="Other")
    out, err = io.StringIO(), io.StringIO()

    call_command("airtable_export", config=export.name, stdout=out, stderr=err)

    assert "created 15" in out.getvalue()
    assert "2 request(s)" in out.getvalue()
    assert "15/15" in err.getvalue()
    assert table_records(airtable, "Other") == []

    call_command("airtable_export", config=export.name, full=True, stdout=out, stderr=err)
    assert "updated 15" in out.getvalue()
    assert AirtableExportRun.objects.filter(export=export, full=True).count() == 1


def test_the_command_without_config_runs_every_enabled_export(airtable, mailbox, export):
    given_stats(mailbox, 4)
    make_export("Another", mailboxes=[mailbox], table_name="Other")
    make_export("Switched off", mailboxes=[mailbox], table_name="Other", enabled=False)

    call_command("airtable_export", no_progress=True, stdout=io.StringIO())

    assert len(table_records(airtable)) == 4
    assert len(table_records(airtable, "Other")) == 4
    assert not AirtableExportRun.objects.filter(export__name="Switched off").exists()


def test_the_command_refuses_an_unknown_config_and_reports_a_failed_run(airtable, mailbox, export):
    given_stats(mailbox, 2)
    with pytest.raises(CommandError, match="No Airtable export named “Nope”"):
        call_command("airtable_export", config="Nope")
    AirtableExport.objects.filter(pk=export.pk).update(table_name="Missing")
    err = io.StringIO()
    with pytest.raises(CommandError, match="Failed: Recipients to Airtable"):
        call_command("airtable_export", config=export.name, no_progress=True, stderr=err,
                     stdout=io.StringIO())  # fmt: skip
    assert "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND" in err.getvalue()


# --- admin ---------------------------------------------------------------------------------


@pytest.fixture
def as_superuser(client):
    client.force_login(make_agent(role="admin"))
    return client


def export_form(mailbox, **values) -> dict:
    data = {
        "name": "Sales recipients",
        "base_id": BASE,
        "table_name": TABLE,
        "token": TOKEN,
        "merge_column": "",
        "mailboxes": [str(mailbox.pk)],
        "enabled": "on",
        "every_minutes": "30",
        "columns-TOTAL_FORMS": "2",
        "columns-INITIAL_FORMS": "0",
        "columns-MIN_NUM_FORMS": "0",
        "columns-MAX_NUM_FORMS": "1000",
        "columns-0-column": "Email",
        "columns-0-source": "address",
        "columns-1-column": "Sent",
        "columns-1-source": "sent_total",
    }
    data.update(values)
    return data


def test_saving_an_export_in_admin_schedules_it_and_hides_the_token(as_superuser, mailbox):
    answer = as_superuser.post(f"{EXPORTS}add/", export_form(mailbox))
    assert answer.status_code == 302, answer.content.decode()[:3000]
    export = AirtableExport.objects.get()
    assert export.token == TOKEN
    task = PeriodicTask.objects.get(pk=export.periodic_task_id)
    assert (task.task, task.args, task.interval.every) == ("cases.tasks.airtable_export",
                                                           f"[{export.pk}]", 30)  # fmt: skip
    page = as_superuser.get(f"{EXPORTS}{export.pk}/change/").content.decode()
    assert TOKEN not in page

    email, sent = export.columns.get(column="Email"), export.columns.get(column="Sent")
    form = export_form(mailbox, token="", **{
        "columns-INITIAL_FORMS": "2",
        "columns-0-id": str(email.pk), "columns-0-export": str(export.pk),
        "columns-1-id": str(sent.pk), "columns-1-export": str(export.pk),
    })  # fmt: skip
    del form["enabled"]  # unticked
    answer = as_superuser.post(f"{EXPORTS}{export.pk}/change/", form)
    assert answer.status_code == 302, answer.content.decode()[:3000]
    export.refresh_from_db()
    assert export.token == TOKEN  # left empty: kept
    assert export.periodic_task_id is None
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"columns-0-source": "domain"}, "Map the recipient address to a column"),
        ({"merge_column": "Sent"}, "must be filled with the recipient address"),
        ({"merge_column": "Nope"}, "is not one of the mapped columns"),
        ({"columns-1-column": "Email"}, "duplicate data for column"),
        ({"base_id": "nonsense"}, "A base id starts with"),
        ({"token": ""}, "Enter the personal access token"),
    ],
)
def test_the_export_form_refuses_a_mapping_that_cannot_work(as_superuser, mailbox, values, error):
    answer = as_superuser.post(f"{EXPORTS}add/", export_form(mailbox, **values))
    assert answer.status_code == 200
    assert error in answer.content.decode()
    assert not AirtableExport.objects.exists()


def test_export_now_and_test_connection_from_the_list(
    as_superuser, airtable, mailbox, export, eager_celery, django_capture_on_commit_callbacks
):
    given_stats(mailbox, 11)
    broken = make_export("Broken", mailboxes=[mailbox], table_name="Missing")

    selected = {"action": "test_connection", "_selected_action": [export.pk, broken.pk]}
    answer = as_superuser.post(EXPORTS, selected, follow=True)
    page = answer.content.decode()
    assert "Connected: “Recipients” in base" in page
    assert "Broken: Airtable answered 403 INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND" in page
    assert airtable.counts["list"] == 2

    with django_capture_on_commit_callbacks(execute=True):
        as_superuser.post(EXPORTS, {"action": "export_now", "_selected_action": [export.pk]})
    run = AirtableExportRun.objects.get(export=export)
    assert (run.status, run.created) == (RunStatus.SUCCEEDED, 11)


def test_the_lists_show_progress_and_status_in_bounded_queries(
    as_superuser, airtable, mailbox, export, django_assert_max_num_queries
):
    given_stats(mailbox, 11)
    for n in range(3):
        make_export(f"Export {n}", mailboxes=[mailbox], table_name="Other")
    run_export(export)
    AirtableExportRun.objects.create(export=export, records_total=40, records_done=20)

    with django_assert_max_num_queries(12):
        runs = as_superuser.get(RUNS).content.decode()
    assert "11 / 11" in runs
    assert "20 / 40" in runs
    assert 'http-equiv="refresh"' in runs  # one is still running
    with django_assert_max_num_queries(12):
        exports = as_superuser.get(EXPORTS).content.decode()
    assert "Running" in exports  # the latest run of the export
    assert "Export 2" in exports
    failed_page = as_superuser.get(f"{RUNS}{AirtableExportRun.objects.first().pk}/change/")
    assert failed_page.status_code == 200


def test_only_superusers_reach_the_airtable_admin(client, team, export):
    client.force_login(make_agent(team=team, role="lead"))
    assert client.get(EXPORTS).status_code == 403
    assert client.get(RUNS).status_code == 403


def test_deleting_an_export_in_admin_removes_its_schedule(as_superuser, mailbox):
    as_superuser.post(f"{EXPORTS}add/", export_form(mailbox))
    export = AirtableExport.objects.get()
    assert PeriodicTask.objects.filter(pk=export.periodic_task_id).exists()

    as_superuser.post(
        EXPORTS, {"action": "delete_selected", "_selected_action": [export.pk], "post": "yes"}
    )

    assert not AirtableExport.objects.exists()
    assert not PeriodicTask.objects.filter(task="cases.tasks.airtable_export").exists()
