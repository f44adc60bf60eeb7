"""SLA clocks over 100,000 open cases in PostgreSQL: one beat tick, and recomputing every
deadline after a calendar change.

The cases come from the bulk generator (`seed_demo --cases`), then are made open and recent:
opened over the last ten business days, a third already answered, a fifth waiting on the
customer (paused) for part of their life, priorities as the generator spreads them. Four
policies (VIP, urgent, a tag, the catch-all) share a Berlin calendar of Mon-Fri 08-18 with
German holidays.

- **Recompute** is `sla_recompute_all()` as the worker runs it after a calendar or policy
  change: every open case is read with its status periods, its policy matched, its three
  targets computed, and the changed rows written back in batches of 2,000.
- **Tick** is `sla_tick()` as beat runs it every minute: first with the clock moved on by one
  minute (the usual tick: a few cases turn at risk or breached), then after an hour without
  ticks (a worker that was down), then a tick with nothing to do.
"""

from __future__ import annotations

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

DATABASE = "crm_bench_sla"
CASES = int(os.environ.get("BENCH_SLA_CASES", "100000"))


def _fresh_database() -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')


def bench_now():
    """The benchmark's "now": the next weekday 14:00 in Berlin, so that the hour the ticks
    cover is business time whenever the benchmark runs (at night no target moves)."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    moment = datetime.now(ZoneInfo("Europe/Berlin")).replace(
        hour=14, minute=0, second=0, microsecond=0
    ) + timedelta(days=1)
    while moment.weekday() >= 5:
        moment += timedelta(days=1)
    return moment


def prepare(count: int) -> None:
    """Runs inside Django: the policies, then `count` open cases with status periods."""
    from datetime import date
    from datetime import time as clock

    from django.db import connection

    from cases.bulkdata import generate_cases
    from cases.models import BusinessCalendar, BusinessHours, Holiday, SlaPolicy, SlaTarget, Tag

    SlaPolicy.objects.all().delete()  # seed_demo's own, if any
    BusinessCalendar.objects.all().delete()
    calendar = BusinessCalendar.objects.create(name="Berlin", timezone="Europe/Berlin",
                                               is_default=True)  # fmt: skip
    BusinessHours.objects.bulk_create(
        BusinessHours(calendar=calendar, weekday=d, start=clock(8), end=clock(18)) for d in range(5)
    )
    for day, name in [
        ((2026, 12, 24), "Heiligabend"),
        ((2026, 12, 25), "Weihnachten"),
        ((2026, 12, 26), "2. Weihnachtstag"),
        ((2027, 1, 1), "Neujahr"),
    ]:
        Holiday.objects.create(calendar=calendar, date=date(*day), name=name)
    targets = {"urgent": (60, 120, 480), "high": (240, 480, 1200),
               "normal": (480, 600, 3000), "low": (1200, 1800, 6000)}  # fmt: skip
    tag, _ = Tag.objects.get_or_create(name="enterprise")
    policies = [
        SlaPolicy.objects.create(name="VIP", order=1, vip="vip"),
        SlaPolicy.objects.create(name="Urgent", order=2, priorities=["urgent"]),
        SlaPolicy.objects.create(name="Enterprise", order=3),
        SlaPolicy.objects.create(name="Standard", order=100, is_default=True),
    ]
    policies[2].tags.set([tag])
    for policy in policies:
        SlaTarget.objects.bulk_create(
            SlaTarget(policy=policy, priority=priority, metric=metric, minutes=minutes)
            for priority, values in targets.items()
            for metric, minutes in zip(
                ("first_response", "next_response", "resolution"), values, strict=True
            )  # fmt: skip
        )
    generate_cases(count)
    with connection.cursor() as cursor:
        cursor.execute(
            OPEN_RECENT_SQL.replace("now()", f"'{bench_now().isoformat()}'::timestamptz")
        )
        cursor.execute("DELETE FROM cases_casestatusperiod")
        cursor.execute(PERIODS_SQL)
        cursor.execute("ANALYZE cases_case; ANALYZE cases_casestatusperiod")
    print(f"prepared {count} open cases")


# Open, recent, a third answered; every tenth waiting on the customer since its answer.
OPEN_RECENT_SQL = """
UPDATE cases_case SET
  created_at = now() - (random() * interval '14 days'),
  status = CASE WHEN id % 10 = 0 THEN 'awaiting_customer'
                WHEN id % 3 = 0 THEN 'in_progress' ELSE 'new' END,
  resolved_at = NULL, closed_at = NULL, first_response_at = NULL, waiting_since = NULL;
UPDATE cases_case SET first_response_at = created_at + (random() * interval '6 hours')
  WHERE status <> 'new';
UPDATE cases_case SET waiting_since = first_response_at + interval '2 hours'
  WHERE status = 'in_progress' AND id % 2 = 0;
"""
PERIODS_SQL = """
INSERT INTO cases_casestatusperiod (case_id, status, started_at, ended_at)
SELECT id, 'new', created_at, CASE WHEN status = 'new' THEN NULL ELSE first_response_at END
  FROM cases_case;
INSERT INTO cases_casestatusperiod (case_id, status, started_at, ended_at)
SELECT id, status, first_response_at, NULL FROM cases_case WHERE status <> 'new';
"""


def measure() -> dict[str, float]:
    """Runs inside Django: the timings, in seconds, and what they did."""
    from datetime import timedelta

    from cases.models import Holiday
    from cases.services.sla import sla_config_changed, sla_recompute_all, sla_tick

    figures: dict[str, float] = {}
    now = bench_now()
    started = time.perf_counter()
    figures["first_changed"] = sla_recompute_all(now=now)
    figures["first_seconds"] = time.perf_counter() - started

    Holiday.objects.create(
        calendar_id=_default_calendar(), date=now.date() + timedelta(days=1),
        name="Staff day",
    )  # fmt: skip
    sla_config_changed()
    started = time.perf_counter()
    figures["recompute_changed"] = sla_recompute_all(now=now)
    figures["recompute_seconds"] = time.perf_counter() - started

    for name, moment in (("tick_minute", now + timedelta(minutes=1)),
                         ("tick_hour", now + timedelta(hours=1, minutes=1)),
                         ("tick_idle", now + timedelta(hours=1, minutes=1))):  # fmt: skip
        started = time.perf_counter()
        result = sla_tick(now=moment)
        figures[f"{name}_seconds"] = time.perf_counter() - started
        figures[f"{name}_moved"] = result.at_risk + result.breached
    return figures


def _default_calendar() -> int:
    from cases.models import BusinessCalendar

    return BusinessCalendar.objects.get(is_default=True).pk


def run() -> None:
    _fresh_database()
    env = bench_env(DATABASE)
    manage(env, "migrate", "--noinput")
    manage(env, "seed_demo")
    in_django(env, f"from bench.sla import prepare; prepare({CASES})")
    output = in_django(env, "from bench.sla import measure; print(repr(measure()))")
    figures = eval(output.strip().splitlines()[-1])  # noqa: S307 - our own repr of a dict
    _report(figures)


def _report(f: dict[str, float]) -> None:
    body = f"""## SLA clocks over {CASES:,} open cases (PostgreSQL)

{machine()}. Four policies (VIP, urgent, a tag, catch-all) on a Berlin business calendar;
cases opened over the 14 days before "now" (a weekday, 14:00 Berlin, so that the ticks'
hour is business time), a tenth waiting on the customer (paused).

| what | time | cases | target |
|---|---:|---:|---|
| first computation of every open case | {f["first_seconds"]:.1f} s | {int(f["first_changed"]):,} written | - |
| recompute after a calendar change (a new holiday) | {f["recompute_seconds"]:.1f} s | {int(f["recompute_changed"]):,} changed | ≤ 60 s |
| beat tick, one minute on | {f["tick_minute_seconds"] * 1000:.0f} ms | {int(f["tick_minute_moved"]):,} moved | ≤ 5 s |
| beat tick after an hour without ticks | {f["tick_hour_seconds"] * 1000:.0f} ms | {int(f["tick_hour_moved"]):,} moved | ≤ 5 s |
| beat tick with nothing to do | {f["tick_idle_seconds"] * 1000:.0f} ms | {int(f["tick_idle_moved"]):,} moved | ≤ 5 s |

The recompute reads each batch of 2,000 cases with their status periods (two queries),
matches the policy and computes three targets in Python (`cases.sla.hours`, a few
microseconds per target), and writes the changed rows with one `UPDATE … FROM (VALUES …)`
per batch. A tick is two set-based statements per target over partial indexes that hold only
running targets, plus one timeline event per transition.
"""  # noqa: E501
    write_section("sla", body)
    print(body)
