"""Intake of 100,000 stored messages into threaded cases, in PostgreSQL.

The messages are written straight into a local mailbox's Inbox (COPY), shaped like a support
inbox: conversations of 1-4 messages whose replies carry In-Reply-To and References, some
replies naming the case number only, 4% auto-replies, 30,000 distinct senders. Intake then
runs as the worker runs it, one message at a time through `message_intake`, here driven by
`manage.py intake_messages` so that its time is the process's own.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta

import psycopg

from bench.common import PG, ROOT, VENV_BIN, bench_env, manage, write_section

DATABASE = "crm_bench_intake"
MESSAGES = int(os.environ.get("BENCH_INTAKE_MESSAGES", "100000"))
MAILBOX = "help@crm.example"


def _fresh_database() -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')


def generate(count: int) -> None:
    """Runs inside Django (see `run`): `count` messages in conversations, oldest first."""
    from crm.db import bulk_insert
    from mailsync.models import Mailbox, Message

    mailbox = Mailbox.objects.get(address=MAILBOX)
    inbox = mailbox.folders.get(well_known="inbox")
    rng = random.Random(4)  # noqa: S311 - benchmark data
    clock = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    messages: list[Message] = []
    thread = 0
    while len(messages) < count:
        thread += 1
        sender = f"customer{rng.randrange(30_000)}@company{rng.randrange(3_000)}.example"
        chain: list[str] = []
        for position in range(rng.choice((1, 1, 2, 2, 3, 4))):
            clock += timedelta(seconds=rng.randint(5, 120))
            message_id = f"<t{thread}.{position}@{sender.split('@')[1]}>"
            auto = position > 0 and rng.random() < 0.04
            messages.append(
                Message(
                    mailbox=mailbox, folder=inbox, graph_id="",
                    subject=("Automatic reply: " if auto else "RE: " * min(position, 1))
                    + f"Order {thread} arrived damaged",
                    from_address=sender, from_name="Customer",
                    to=[{"name": "Help", "address": MAILBOX}],
                    body_text="Hello, the parcel arrived damaged. " * 8,
                    preview="Hello, the parcel arrived damaged.",
                    internet_message_id=message_id,
                    in_reply_to=chain[-1] if chain else "",
                    references=" ".join(chain),
                    headers={"auto-submitted": "auto-replied"} if auto else {},
                    received_at=clock, sent_at=clock,
                    change_container_id=mailbox.container_id, change_seq=len(messages) + 1,
                )
            )  # fmt: skip
            chain.append(message_id)
            if len(messages) == count:
                break
    for start in range(0, len(messages), 5_000):
        bulk_insert(Message, messages[start : start + 5_000])
    print(f"generated {len(messages)} messages in {thread} conversations")


def run() -> None:
    _fresh_database()
    env = bench_env(DATABASE)
    manage(env, "migrate", "--noinput")
    manage(env, "createagent", "bench-agent@crm.example", "--team", "Support")
    manage(env, "connect_mailbox", MAILBOX, "--team", "Support", "--local")
    generated = subprocess.run(
        [str(VENV_BIN / "python"), "-c",
         "import django; django.setup(); from bench.intake import generate; "
         f"generate({MESSAGES})"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    started = time.perf_counter()
    output = manage(env, "intake_messages")
    wall = time.perf_counter() - started
    rate = re.search(r"\(([\d,]+)/s\)", output).group(1)
    with psycopg.connect(f"{PG}/{DATABASE}") as conn:
        cases = conn.execute("SELECT count(*) FROM cases_case").fetchone()[0]
        outcomes = conn.execute(
            "SELECT outcome, count(*) FROM cases_casemessage GROUP BY 1 ORDER BY 1"
        ).fetchall()
    _report(generated, output.strip().splitlines()[-1], rate, wall, cases, outcomes)


def _report(generated: str, summary: str, rate: str, wall: float, cases: int, outcomes) -> None:
    table = "\n".join(f"| {outcome} | {count:,} |" for outcome, count in outcomes)
    body = f"""## Email intake into threaded cases (PostgreSQL)

{generated}; `manage.py intake_messages` decided them one by one through `message_intake`
(the worker's code path: lock the message, classify, thread by case number / Message-ID table
/ conversation, customer lookup or creation, case creation or reopening,
`case_message_received`).

- **{rate} messages/s**; {wall:.1f} s wall including Django start-up.
- {cases:,} cases opened. The command said: `{summary}`.

| outcome | messages |
|---|---:|
{table}
"""
    write_section("intake", body)
    print(body)
