"""The Airtable export against the fake Airtable with Airtable's real limits (issue 15):
requests for a first export of 20,000 recipients and for an incremental one after ~1,000 of
them changed, 429s, wall time.

Targets: exactly ceil(records / 10) upserts for the first export and ceil(changed / 10) for
the incremental one, plus the reads needed (none: upserts on the merge key need no lookup, and
unchanged records are told apart by the hashes stored after each upsert), and zero 429s.

The statistics are RecipientStat rows written directly (what mailsync's rebuild leaves), in
two mailboxes whose recipients overlap by a tenth, so the export sums over mailboxes; 1,000 of
the addresses belong to customers of 100 organizations, so the CRM columns join too. The fake
(`airtablesim`) runs in a thread of the measuring process on loopback, with 5 requests per
second per base and a 30 s lockout, so the wall time is set by the rate limit: a first export
of 20,000 records (2,000 upserts) takes about 7 minutes. `BENCH_AIRTABLE_RECIPIENTS=300
BENCH_AIRTABLE_CHANGED=40` gives a check in seconds; `collect()` and `render()` take and show
the figures without writing docs/benchmarks.md.
"""

from __future__ import annotations

import math
import os
import time

import psycopg

from bench.common import (
    PG,
    bench_env,
    in_django,
    machine,
    manage,
    write_section,
)

DATABASE = "crm_bench_airtable"
REDIS_URL = "redis://127.0.0.1:6379/5"
RECIPIENTS = int(os.environ.get("BENCH_AIRTABLE_RECIPIENTS", "20000"))
CHANGED = int(os.environ.get("BENCH_AIRTABLE_CHANGED", "1000"))
CUSTOMERS = min(1000, RECIPIENTS // 2)
ORGANIZATIONS = 100
TOKEN = "patBENCH.0123456789abcdef"  # noqa: S105 - the fake's token
BASE = "appBENCHBASE00001"
TABLE = "Recipients"
MAPPING = [
    ("Email", "address"), ("Domain", "domain"), ("To", "sent_to"), ("Cc", "sent_cc"),
    ("Bcc", "sent_bcc"), ("Sent", "sent_total"), ("First sent", "first_sent_at"),
    ("Last sent", "last_sent_at"), ("Customer", "customer_name"), ("Customer id", "customer_id"),
    ("Organization", "organization_name"), ("Tier", "organization_tier"),
]  # fmt: skip


def _fresh_database() -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')


def _env() -> dict[str, str]:
    return {**bench_env(DATABASE), "REDIS_URL": REDIS_URL}


# --- inside Django ----------------------------------------------------------------------------


def _address(n: int) -> str:
    return f"contact{n:06d}@client{n % 997:03d}.example"


def prepare(recipients: int) -> None:
    """Two mailboxes' statistics (a tenth of the addresses in both), customers and
    organizations for some of the addresses."""
    from datetime import UTC, datetime, timedelta

    from cases.services.customers import customer_create, organization_create
    from crm.models import Team
    from mailsync.models import RecipientStat
    from mailsync.services import mailbox_connect

    team = Team.objects.create(name="Sales")
    boxes = [mailbox_connect(address=f"{n}@crm.example", team=team, local=True)
             for n in ("sales", "support")]  # fmt: skip
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for n in range(recipients):
        for box in boxes if n % 10 == 0 else [boxes[n % 2]]:
            to, cc, bcc = n % 7 + 1, n % 3, n % 2
            rows.append(RecipientStat(
                mailbox=box, address=_address(n), domain=_address(n).split("@")[1],
                to_count=to, cc_count=cc, bcc_count=bcc, total_count=to + cc + bcc,
                first_sent=start + timedelta(hours=n % 500),
                last_sent=start + timedelta(days=100, hours=n % 700),
            ))  # fmt: skip
    RecipientStat.objects.bulk_create(rows, batch_size=5000)
    organizations = [organization_create(name=f"Client {k:03d} Ltd",
                                         tier=("standard", "gold")[k % 2])
                     for k in range(ORGANIZATIONS)]  # fmt: skip
    step = max(1, recipients // CUSTOMERS)
    for k, n in enumerate(range(0, recipients, step)[:CUSTOMERS]):
        customer_create(name=f"Contact {n}", emails=[_address(n)],
                        organization=organizations[k % ORGANIZATIONS])  # fmt: skip


def measure(recipients: int, changed: int) -> dict:
    """Start the fake with real limits, export once, change `changed` recipients, export
    again; the requests the fake saw, the runs' own counts and the wall times."""
    from datetime import timedelta

    from django.conf import settings
    from django.db.models import F

    from airtablesim.server import start
    from cases.airtable.services import airtable_export_run
    from cases.models import AirtableExport, AirtableExportColumn
    from mailsync.models import Mailbox, RecipientStat

    server = start()
    server.add_base(BASE, token=TOKEN, tables={TABLE: [column for column, _ in MAPPING]})
    settings.AIRTABLE_API_URL = server.base_url
    export = AirtableExport.objects.create(
        name="Bench", base_id=BASE, table_name=TABLE, token=TOKEN, every_minutes=0
    )
    export.mailboxes.set(Mailbox.objects.all())
    AirtableExportColumn.objects.bulk_create(
        AirtableExportColumn(export=export, column=c, source=s) for c, s in MAPPING
    )
    figures: dict = {"recipients": recipients, "changed": changed}
    for label in ("first", "incremental"):
        if label == "incremental":
            every = max(1, recipients // changed)
            addresses = [_address(n) for n in range(0, recipients, every)[:changed]]
            RecipientStat.objects.filter(address__in=addresses).update(
                to_count=F("to_count") + 1, total_count=F("total_count") + 1,
                last_sent=F("last_sent") + timedelta(days=1),
            )  # fmt: skip
            figures["changed"] = len(addresses)
        before = dict(server.counts)
        started = time.perf_counter()
        run = airtable_export_run(config_id=export.pk)
        seconds = time.perf_counter() - started
        seen = {k: server.counts[k] - before.get(k, 0) for k in server.counts}
        figures[label] = {
            "status": str(run.status), "error": run.error_message, "seconds": seconds,
            "sent": run.records_total, "created": run.created, "updated": run.updated,
            "unchanged": run.unchanged, "requests": run.requests, "throttled": run.throttled,
            "errors": run.errors, "upserts": seen.get("upsert", 0), "reads": seen.get("list", 0),
            "other": sum(v for k, v in seen.items()
                         if k in ("create", "update", "other")),
            "fake_429s": seen.get("status:429", 0),
        }  # fmt: skip
    records = server.table(BASE, TABLE).all_fields()
    figures["table_records"] = len(records)
    figures["distinct_emails"] = len({r["Email"] for r in records})
    figures["max_per_window"] = server.max_requests_in_window(BASE)
    server.shutdown()
    server.server_close()
    return figures


# --- running and reporting ------------------------------------------------------------------------


def collect() -> dict:
    """Build the database and take every figure (docs/benchmarks.md is not touched)."""
    _fresh_database()
    env = _env()
    manage(env, "migrate", "--noinput")
    started = time.perf_counter()
    in_django(env, f"from bench.airtable_export import prepare; prepare({RECIPIENTS})")
    prepared = time.perf_counter() - started
    output = in_django(
        env,
        f"from bench.airtable_export import measure; print(repr(measure({RECIPIENTS}, {CHANGED})))",
    )
    figures = eval(output.strip().splitlines()[-1])  # noqa: S307 - our own repr of a dict
    figures["prepared_seconds"] = prepared
    return figures


def run() -> None:
    body = render(collect())
    write_section("airtable_export", body)
    print(body)


def _verdict(label: str, r: dict, records: int) -> str:
    target = math.ceil(records / 10)
    upserts = "met" if r["upserts"] == target else f"missed ({r['upserts']:,} ≠ {target:,})"
    throttled = "met" if r["fake_429s"] == 0 else f"missed ({r['fake_429s']} 429s)"
    return (f"| {label} | {r['status']} | {records:,} | {r['upserts']:,} (target {target:,}: "
            f"{upserts}) | {r['reads']} | {r['fake_429s']} ({throttled}) | {r['requests']:,} | "
            f"{r['created']:,} / {r['updated']:,} / {r['unchanged']:,} | {r['seconds']:,.1f} s | "
            f"{r['sent'] / r['seconds'] if r['seconds'] else 0:,.0f} |")  # fmt: skip


def render(f: dict) -> str:
    first, later = f["first"], f["incremental"]
    duplicates = f["table_records"] - f["distinct_emails"]
    runs = (("First", first), ("Incremental", later))
    errors = "".join(f"\n\n{label} run failed: {r['error']}" for label, r in runs if r["error"])
    header = (
        "| export | status | records sent | upserts | reads | 429s (target 0) | HTTP requests "
        "| created / updated / unchanged | wall time | records/s |"
    )
    return f"""## Airtable export: {f["recipients"]:,} recipients, then {f["changed"]:,} changed

{machine()}.

The fake Airtable (`airtablesim`, loopback) enforces Airtable's limits: 10 records per
request, 5 requests per second per base, a 30 s lockout after a 429. The export sends only
records whose mapped values changed (hash per record), ten per upsert on the email column,
holding the per-base limit in Redis (a turn counts until one second plus a 0.05 s margin
after its answer, so arrivals at Airtable stay a window apart whatever the delays on the
way). Statistics of two mailboxes (a tenth of the addresses in both), {CUSTOMERS:,} addresses
with a customer and organization; 12 mapped columns. Data prepared in
{f["prepared_seconds"]:.0f} s (not part of the figures).

{header}
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|
{_verdict("first", first, first["sent"])}
{_verdict("incremental", later, f["changed"])}

The table holds {f["table_records"]:,} records ({duplicates} duplicates); at most
{f["max_per_window"]} requests reached the base within any second. The wall time is the rate
limit's: {first["upserts"]:,} upserts at 5 a second take {first["upserts"] / 5:,.0f} s at the
least, and each turn also waits for the previous answers; reading and hashing
{f["recipients"]:,} recipients' statistics is a small part of it (the incremental export
reads them all again and sends {later["sent"]:,}).{errors}"""
