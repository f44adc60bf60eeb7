"""Sent-mail recipient statistics in PostgreSQL: 100,000 sent messages to 20,000 recipients,
built from scratch, then brought up to date after 1,000 new sent messages (issue 15).

The messages are written straight into the database (COPY, as `cases.bulkdata` writes cases):
one mailbox's Sent Items, each message with change numbers taken from the mailbox's container
as a sync page takes them, To 1-3 recipients, Cc 0-2 on a third, Bcc one on a tenth. Every
one of the recipients gets at least one message; the rest are drawn with a skew (a few
customers get most of the mail, as in a real mailbox), over 2,000 domains.

- **Rebuild**: `recipient_stats_rebuild` as the command and the admin action run it (one
  transaction: the rows by one INSERT ... SELECT over `jsonb_array_elements`, the statistics
  by one GROUP BY), three times.
- **Incremental**: 1,000 more sent messages arrive (committed as sync pages of 100, with
  their change numbers), then `recipient_stats_update` as the task runs it, until nothing is
  left; and once more with nothing new (what a sweep costs a quiet mailbox).
- **Reading**: the selector the API and the Airtable export use, every recipient summed and
  the first page by most mail.

`BENCH_SENT`, `BENCH_RECIPIENTS` and `BENCH_NEW_SENT` give smaller runs; `collect()` and
`render()` take and show the figures without writing docs/benchmarks.md.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import psycopg

from bench.common import (
    PG,
    bench_env,
    in_django,
    in_django_value,
    machine,
    manage,
    write_section,
)

DATABASE = "crm_bench_recipients"
REDIS_URL = "redis://127.0.0.1:6379/4"
SENT = int(os.environ.get("BENCH_SENT", "100000"))
RECIPIENTS = int(os.environ.get("BENCH_RECIPIENTS", "20000"))
NEW_SENT = int(os.environ.get("BENCH_NEW_SENT", "1000"))
DOMAINS = 2_000
ADDRESS = "support@crm.example"
CHUNK = 5_000  # messages per transaction while generating
PAGE = 100  # new messages per transaction in the incremental part (a sync page)


def _fresh_database() -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')


def _env() -> dict[str, str]:
    return {**bench_env(DATABASE), "REDIS_URL": REDIS_URL}


# --- data (inside Django) --------------------------------------------------------------------


def _recipient(k: int) -> dict[str, str]:
    return {"name": f"Contact {k}", "address": f"contact{k}@customer{k % DOMAINS}.example"}


def _draw(rng: random.Random) -> int:
    """A recipient, skewed: low numbers are the customers written to most."""
    return int(RECIPIENTS * rng.random() ** 3)


def _messages(mailbox, folder, numbers: list[int], first: int, rng: random.Random) -> list:  # noqa: ANN001
    from mailsync.models import Message

    start = datetime(2024, 1, 1, tzinfo=UTC)
    messages = []
    for offset, number in enumerate(numbers):
        n = first + offset
        to = [n % RECIPIENTS if n < RECIPIENTS else _draw(rng)]
        to += [_draw(rng) for _ in range(rng.randint(0, 2))]
        cc = [_draw(rng) for _ in range(rng.randint(1, 2))] if n % 3 == 0 else []
        bcc = [_draw(rng)] if n % 10 == 0 else []
        at = start + timedelta(minutes=7 * n)
        messages.append(
            Message(
                mailbox=mailbox, folder=folder, change_container_id=mailbox.container_id,
                change_seq=number, subject=f"RE: Invoice {n}", from_address=ADDRESS,
                to=[_recipient(k) for k in to], cc=[_recipient(k) for k in cc],
                bcc=[_recipient(k) for k in bcc], sent_at=at, received_at=at, is_read=True,
                internet_message_id=f"<sent{n}@crm.example>",
            )
        )  # fmt: skip
    return messages


def _write_sent(mailbox, count: int, first: int, chunk: int, seed: int) -> None:  # noqa: ANN001
    """`count` sent messages numbered from `first`, `chunk` per transaction."""
    from django.db import transaction

    from crm.changes import change_seq_allocate_many
    from crm.db import bulk_insert
    from mailsync.models import Message

    folder = mailbox.folders.get(well_known="sentitems")
    rng = random.Random(seed)
    for start in range(0, count, chunk):
        size = min(chunk, count - start)
        with transaction.atomic():
            numbers = change_seq_allocate_many(mailbox.container, size)
            bulk_insert(Message, _messages(mailbox, folder, numbers, first + start, rng))


def prepare(sent: int) -> None:
    """A team, its local mailbox, and `sent` messages in its Sent Items."""
    from django.db import connection

    from crm.models import Team
    from mailsync import services

    team = Team.objects.create(name="Support")
    mailbox = services.mailbox_connect(address=ADDRESS, team=team, local=True)
    _write_sent(mailbox, sent, 0, CHUNK, seed=15)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE mailsync_message")


def _mailbox():  # noqa: ANN202
    from mailsync.models import Mailbox

    return Mailbox.objects.select_related("container").get(address=ADDRESS)


def _timed(function, *args, **kwargs) -> tuple[float, object]:  # noqa: ANN001
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def measure_rebuild(runs: int = 3) -> dict[str, object]:
    from django.db import connection

    from mailsync.models import RecipientStat, SentRecipient
    from mailsync.services import recipient_stats_rebuild

    mailbox = _mailbox()
    seconds = []
    for _ in range(runs):
        elapsed, written = _timed(recipient_stats_rebuild, mailbox_id=mailbox.pk)
        seconds.append(elapsed)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE mailsync_sentrecipient")
        cursor.execute("VACUUM ANALYZE mailsync_recipientstat")
    return {
        "seconds": seconds,
        "median": statistics.median(seconds),
        "rows": SentRecipient.objects.filter(mailbox=mailbox).count(),
        "written": written,
        "recipients": RecipientStat.objects.filter(mailbox=mailbox).count(),
    }


def measure_incremental(new: int, sent: int) -> dict[str, object]:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    from mailsync.models import RecipientStat, SentRecipient
    from mailsync.services import recipient_stats_update

    mailbox = _mailbox()
    rows_before = SentRecipient.objects.filter(mailbox=mailbox).count()
    _write_sent(mailbox, new, sent, PAGE, seed=16)
    reset_queries()
    with CaptureQueriesContext(connection) as queries:
        elapsed, progress = _timed(recipient_stats_update, mailbox_id=mailbox.pk, max_batches=10**6)
    quiet, nothing = _timed(recipient_stats_update, mailbox_id=mailbox.pk)
    return {
        "seconds": elapsed,
        "changes": progress.changes,
        "added": progress.added,
        "addresses": progress.addresses,
        "queries": len(queries.captured_queries),
        "rows": SentRecipient.objects.filter(mailbox=mailbox).count(),
        "rows_before": rows_before,
        "recipients": RecipientStat.objects.filter(mailbox=mailbox).count(),
        "quiet_seconds": quiet,
        "quiet_changes": nothing.changes,
    }


def measure_reading(runs: int = 5) -> dict[str, object]:
    from mailsync import selectors

    mailbox = _mailbox()

    def everything() -> int:
        return len(list(selectors.recipient_stats(mailbox_ids=[mailbox.pk])))

    def top_page() -> int:
        rows = selectors.recipient_stats(mailbox_ids=[mailbox.pk])
        return len(list(selectors.recipient_stats_ordered(rows, ordering="-sent_total")[:50]))

    all_times = [_timed(everything)[0] for _ in range(runs)]
    page_times = [_timed(top_page)[0] for _ in range(runs)]
    return {
        "all_ms": statistics.median(all_times) * 1000,
        "page_ms": statistics.median(page_times) * 1000,
        "rows": everything(),
    }


def rebuild_matches_incremental() -> bool:
    """After the incremental update, a rebuild gives the same statistics."""
    from mailsync.models import RecipientStat
    from mailsync.services import recipient_stats_rebuild

    mailbox = _mailbox()
    columns = ["address", "to_count", "cc_count", "bcc_count", "total_count", "first_sent",
               "last_sent"]  # fmt: skip
    kept = set(RecipientStat.objects.filter(mailbox=mailbox).values_list(*columns))
    recipient_stats_rebuild(mailbox_id=mailbox.pk)
    return kept == set(RecipientStat.objects.filter(mailbox=mailbox).values_list(*columns))


# --- running and reporting ------------------------------------------------------------------


def collect() -> dict[str, object]:
    """Build the database and take every figure (docs/benchmarks.md is not touched)."""
    _fresh_database()
    env = _env()
    manage(env, "migrate", "--noinput")
    started = time.perf_counter()
    in_django(env, f"from bench.recipient_stats import prepare; prepare({SENT})")
    prepared = time.perf_counter() - started
    module = "__import__('bench.recipient_stats').recipient_stats"
    rebuild = in_django_value(env, f"{module}.measure_rebuild()")
    incremental = in_django_value(env, f"{module}.measure_incremental({NEW_SENT}, {SENT})")
    reading = in_django_value(env, f"{module}.measure_reading()")
    same = in_django_value(env, f"{module}.rebuild_matches_incremental()")
    return {"prepared_seconds": prepared, "rebuild": rebuild, "incremental": incremental,
            "reading": reading, "same": same}  # fmt: skip


def run() -> None:
    body = render(collect())
    write_section("recipient_stats", body)
    print(body)


def render(f: dict) -> str:
    r, i, read = f["rebuild"], f["incremental"], f["reading"]
    runs = " / ".join(f"{s:.2f}" for s in r["seconds"])
    per_change = i["seconds"] / max(i["changes"], 1) * 1000
    return f"""## Sent-mail recipient statistics: {SENT:,} sent messages to {RECIPIENTS:,} recipients

{machine()}.

One mailbox's Sent Items with {SENT:,} messages ({r["rows"]:,} recipient rows: To, Cc and Bcc
apart; {r["recipients"]:,} recipients over {min(DOMAINS, RECIPIENTS):,} domains), written by COPY with their
change numbers.

| step | time | what it did |
|---|---:|---|
| rebuild from scratch (median of 3: {runs} s) | {r["median"]:.2f} s | {r["rows"]:,} rows by one INSERT ... SELECT over `jsonb_array_elements`, {r["recipients"]:,} statistics by one GROUP BY, one transaction |
| incremental update after {NEW_SENT:,} new sent messages | {i["seconds"] * 1000:.0f} ms | {i["changes"]:,} changes read after the cursor, {i["added"]:,} rows added, {i["addresses"]:,} addresses recomputed (summed over its batches of 500); {i["queries"]} queries ({per_change:.2f} ms a change) |
| update with nothing new (a sweep of a quiet mailbox) | {i["quiet_seconds"] * 1000:.1f} ms | {i["quiet_changes"]} changes |
| selector: every recipient summed | {read["all_ms"]:.0f} ms | {read["rows"]:,} rows (what the Airtable export and the CSV read) |
| selector: first page by most mail | {read["page_ms"]:.1f} ms | 50 rows ordered by `-sent_total` (the API's page) |

After the update: {i["rows"]:,} rows (from {i["rows_before"]:,}), {i["recipients"]:,}
recipients; a rebuild then gives the same statistics: **{"yes" if f["same"] else "NO"}**.
Generating the data took {f["prepared_seconds"]:.0f} s.

The incremental update reads only the changes after the mailbox's cursor (an index range on
the container's change numbers), diffs each changed message's rows and recomputes just the
addresses that changed, so its cost follows the number of changes, not the size of the
mailbox: the reference script fetched and compared every sent mail on each run.
"""  # noqa: E501
