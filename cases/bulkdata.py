"""Large, believable case data for benchmarks: `seed_demo --cases N`.

A million cases with their timelines must load in minutes, so this bypasses the services and
writes rows directly: PostgreSQL's COPY (the search-vector trigger still fires per row), or
`bulk_create` in batches on SQLite. It is for benchmark and demo databases only; the numbers,
statuses and timestamps it writes obey the same rules the services enforce (the case number is
derived from the id, timestamps are ordered, resolved and closed cases carry their times).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from cases.choices import (
    CaseStatus,
    CaseType,
    Channel,
    Priority,
    Sentiment,
    SlaState,
    TimelineKind,
)
from cases.models import Case, CaseStatusPeriod, Customer, SlaPolicy, TimelineEvent
from cases.services.cases import format_case_number
from crm.models import TeamMembership

SUBJECTS = [
    "Invoice",
    "Login",
    "Password reset",
    "Export",
    "Report",
    "Dashboard",
    "Mobile app",
    "API token",
    "Webhook",
    "Calendar sync",
    "Mailbox",
    "SSO",
    "Payment",
    "Refund",
    "Subscription",
    "Data import",
    "Printer",
    "VPN",
    "Licence",
    "Permissions",
]
PROBLEMS = [
    "fails with an error",
    "shows the wrong totals",
    "is very slow",
    "times out",
    "does not arrive",
    "was charged twice",
    "cannot be opened",
    "is missing after update",
    "asks for a second factor every time",
    "duplicates entries",
    "stopped syncing",
    "needs a change of owner",
]
DETAILS = [
    "Since this morning several colleagues see the same thing.",
    "It worked last week; nothing changed on our side.",
    "Please advise before our month-end closing.",
    "Screenshot attached. Browser is up to date.",
    "This blocks our team; please treat it urgently.",
    "We would like to understand the cause, not only a workaround.",
]
# How a case created this many days ago stands today: a helpdesk closes most of its cases
# within weeks, so the open backlog is a few percent of all cases, made of recent ones.
STATUS_BY_AGE = (
    (3, {"new": 35, "in_progress": 30, "awaiting_customer": 15, "awaiting_vendor": 5,
         "resolved": 12, "closed": 3}),
    (14, {"new": 5, "in_progress": 20, "awaiting_customer": 20, "awaiting_vendor": 5,
          "resolved": 30, "closed": 20}),
    (45, {"new": 1, "in_progress": 4, "awaiting_customer": 4, "awaiting_vendor": 1,
          "resolved": 20, "closed": 70}),
    (None, {"in_progress": 0.2, "awaiting_customer": 0.2, "awaiting_vendor": 0.1,
            "resolved": 4.5, "closed": 95}),
)  # fmt: skip
PRIORITY_WEIGHTS = {Priority.LOW: 20, Priority.NORMAL: 55, Priority.HIGH: 20, Priority.URGENT: 5}
CASE_COLUMNS = [
    "id",
    "number",
    "title",
    "description",
    "type",
    "status",
    "priority",
    "sentiment",
    "channel",
    "team_id",
    "assignee_id",
    "customer_id",
    "organization_id",
    "first_response_at",
    "resolved_at",
    "closed_at",
    "created_by_id",
    "updated_by_id",
    "created_at",
    "updated_at",
    "sla_policy_id",
    "sla_first_response_due",
    "sla_first_response_state",
    "sla_first_response_risk_at",
    "sla_resolution_due",
    "sla_resolution_state",
    "sla_resolution_risk_at",
    "sla_due",
]
# Calendar-time targets per priority (first response, resolution), like a typical policy's.
SLA_TARGETS = {
    Priority.URGENT: (timedelta(hours=1), timedelta(hours=8)),
    Priority.HIGH: (timedelta(hours=4), timedelta(days=1)),
    Priority.NORMAL: (timedelta(hours=8), timedelta(days=3)),
    Priority.LOW: (timedelta(days=1), timedelta(days=7)),
}
RISK_SHARE = 0.25  # a target turns at risk when a quarter of its time is left
EVENT_COLUMNS = ["case_id", "kind", "actor_id", "summary", "data", "created_at"]
PERIOD_COLUMNS = ["case_id", "status", "started_at", "ended_at"]


@dataclass(frozen=True)
class Population:
    """Who the generated cases belong to: teams with their members, and customers."""

    members: dict[int, list[int]]
    customers: list[tuple[int, int | None]]
    sla_policy: int | None = None

    @classmethod
    def load(cls) -> Population:
        members: dict[int, list[int]] = {}
        for team_id, user_id in TeamMembership.objects.values_list("team_id", "user_id"):
            members.setdefault(team_id, []).append(user_id)
        customers = list(Customer.objects.values_list("pk", "organization_id"))
        if not members or not customers:
            raise ValueError("Seed teams, agents and customers first (seed_demo without --cases).")
        policy = SlaPolicy.objects.filter(is_default=True).values_list("pk", flat=True).first()
        return cls(members=members, customers=customers, sla_policy=policy)


def _rows(
    count: int, first_id: int, population: Population, rng: random.Random, now: datetime
) -> Iterator[tuple[tuple, list[tuple], list[tuple]]]:
    teams = list(population.members)
    priorities, priority_w = zip(*PRIORITY_WEIGHTS.items(), strict=True)
    span = 730 * 24 * 3600
    for offset in range(count):
        pk = first_id + offset
        team = rng.choice(teams)
        agents = population.members[team]
        assignee = rng.choice(agents) if rng.random() < 0.85 else None
        customer, organization = rng.choice(population.customers)
        created = now - timedelta(seconds=rng.randrange(span))
        status = _status_for_age((now - created).days, rng)
        first_response = created + timedelta(minutes=rng.randrange(5, 3000))
        resolved = closed = None
        if status in (CaseStatus.RESOLVED, CaseStatus.CLOSED):
            resolved = first_response + timedelta(minutes=rng.randrange(10, 20000))
        if status == CaseStatus.CLOSED:
            closed = resolved + timedelta(hours=rng.randrange(1, 200))
        if status == CaseStatus.NEW:
            first_response = None
        updated = min(now, closed or resolved or first_response or created)
        number = format_case_number(pk)
        title = f"{rng.choice(SUBJECTS)} {rng.choice(PROBLEMS)}"
        priority = rng.choices(priorities, priority_w)[0]
        sla = _sla_columns(population.sla_policy, priority, created, first_response, resolved, now)
        case = (
            pk,
            number,
            title,
            rng.choice(DETAILS),
            rng.choice(CaseType.values),
            status,
            priority,
            rng.choice(Sentiment.values),
            rng.choice(Channel.values),
            team,
            assignee,
            customer,
            organization,
            first_response,
            resolved,
            closed,
            None,
            assignee,
            created,
            updated,
            *sla,
        )
        events = [(pk, TimelineKind.CREATED, None, f"Case {number} created", "{}", created)]
        if assignee is not None:
            events.append(
                (
                    pk,
                    TimelineKind.ASSIGNED,
                    None,
                    "Assigned",
                    json.dumps({"new_assignee": assignee}),
                    created + timedelta(minutes=1),
                )
            )
        if status != CaseStatus.NEW:
            events.append(
                (
                    pk,
                    TimelineKind.STATUS_CHANGED,
                    assignee,
                    f"Status: New → {status}",
                    json.dumps({"old": "new", "new": status, "reopened": False}),
                    updated,
                )
            )
        periods = [(pk, CaseStatus.NEW, created, None if status == CaseStatus.NEW else updated)]
        if status != CaseStatus.NEW:
            periods.append((pk, status, updated, None))
        yield case, events, periods


def _sla_columns(
    policy: int | None,
    priority: str,
    created: datetime,
    first_response: datetime | None,
    resolved: datetime | None,
    now: datetime,
) -> tuple:
    """The SLA columns the clock would have left: due times, states, risk times, `sla_due`."""
    if policy is None:
        return (None, None, "", None, None, "", None, None)
    response_target, resolution_target = SLA_TARGETS[priority]
    response = _target(created, response_target, first_response or resolved, now)
    resolution = _target(created, resolution_target, resolved, now)
    running = [due for due, state, _ in (response, resolution) if state in RUNNING]
    return (policy, *response, *resolution, min(running, default=None))


RUNNING = (SlaState.ON_TRACK, SlaState.AT_RISK)


def _target(
    created: datetime, span: timedelta, done: datetime | None, now: datetime
) -> tuple[datetime, str, datetime | None]:
    due = created + span
    risk_at = due - span * RISK_SHARE
    if done is not None:
        return due, SlaState.MET if done <= due else SlaState.BREACHED, None
    if now > due:
        return due, SlaState.BREACHED, None
    if now >= risk_at:
        return due, SlaState.AT_RISK, None
    return due, SlaState.ON_TRACK, risk_at


def _status_for_age(days: int, rng: random.Random) -> str:
    for limit, weights in STATUS_BY_AGE:
        if limit is None or days < limit:
            return rng.choices(list(weights), list(weights.values()))[0]
    raise AssertionError("the last age bracket has no limit")


def generate_cases(count: int, *, seed: int = 7, batch: int = 20_000) -> int:
    """Add `count` cases with timelines; returns the number written."""
    population = Population.load()
    rng = random.Random(seed)  # noqa: S311 - benchmark data, not secrets
    now = timezone.now()
    first_id = (Case.objects.aggregate(top=Max("pk"))["top"] or 0) + 1
    rows = _rows(count, first_id, population, rng, now)
    written = 0
    while written < count:
        size = min(batch, count - written)
        chunk = [next(rows) for _ in range(size)]
        with transaction.atomic():
            if connection.vendor == "postgresql":
                _copy(chunk)
            else:
                _bulk_create(chunk)
        written += size
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('cases_case', 'id'), "
                "(SELECT max(id) FROM cases_case))"
            )
            # VACUUM also sets the visibility map, so counts can use index-only scans; it cannot
            # run inside a transaction (a caller's, such as a test's), ANALYZE can.
            command = "ANALYZE" if connection.in_atomic_block else "VACUUM ANALYZE"
            cursor.execute(f"{command} cases_case")
            cursor.execute(f"{command} cases_timelineevent")
    return written


def _copy(chunk: list[tuple[tuple, list[tuple], list[tuple]]]) -> None:
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY cases_case ({', '.join(CASE_COLUMNS)}) FROM STDIN") as copy:
            for case, _, _ in chunk:
                copy.write_row(case)
        with raw.copy(f"COPY cases_timelineevent ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
            for _, events, _ in chunk:
                for event in events:
                    copy.write_row(event)
        with raw.copy(
            f"COPY cases_casestatusperiod ({', '.join(PERIOD_COLUMNS)}) FROM STDIN"
        ) as copy:
            for _, _, periods in chunk:
                for period in periods:
                    copy.write_row(period)


def _bulk_create(chunk: list[tuple[tuple, list[tuple], list[tuple]]]) -> None:
    Case.objects.bulk_create(
        Case(**dict(zip(CASE_COLUMNS, case, strict=True))) for case, _, _ in chunk
    )
    TimelineEvent.objects.bulk_create(
        TimelineEvent(
            **dict(zip(EVENT_COLUMNS, event, strict=True)) | {"data": json.loads(event[4])}
        )
        for _, events, _ in chunk
        for event in events
    )
    CaseStatusPeriod.objects.bulk_create(
        CaseStatusPeriod(**dict(zip(PERIOD_COLUMNS, period, strict=True)))
        for _, _, periods in chunk
        for period in periods
    )
