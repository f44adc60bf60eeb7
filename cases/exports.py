"""The case export (queue and admin): its columns and lines; CSV helpers are `crm.exports`."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from cases.models import Case
from crm.exports import Echo, spreadsheet_cell

CASE_COLUMNS = [
    "number",
    "title",
    "status",
    "priority",
    "type",
    "channel",
    "team",
    "assignee",
    "customer",
    "customer_email",
    "organization",
    "tags",
    "created_at",
    "updated_at",
    "first_response_at",
    "resolved_at",
]


def case_csv_lines(cases: QuerySet[Case]) -> Iterator[str]:
    """CSV lines of `cases`, produced while the response streams (a million rows never sit in
    memory). Precondition: `cases` selects team, assignee, customer, organization and
    prefetches tags and customer emails, or every row costs queries."""
    writer = csv.writer(Echo())
    yield writer.writerow(CASE_COLUMNS)
    for case in cases.iterator(chunk_size=1000):
        yield writer.writerow([spreadsheet_cell(value) for value in _case_row(case)])


def _case_row(case: Case) -> list[Any]:
    customer = case.customer
    emails = list(customer.emails.all()) if customer else []
    return [
        case.number,
        case.title,
        case.status,
        case.priority,
        case.type,
        case.channel,
        case.team.name,
        case.assignee.email if case.assignee else "",
        customer.name if customer else "",
        emails[0].email if emails else "",
        case.organization.name if case.organization else "",
        " ".join(tag.name for tag in case.tags.all()),
        _iso(case.created_at),
        _iso(case.updated_at),
        _iso(case.first_response_at),
        _iso(case.resolved_at),
    ]


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def case_export_queryset(cases: QuerySet[Case]) -> QuerySet[Case]:
    """What `case_csv_lines` needs, in a constant number of queries per chunk."""
    return cases.select_related("team", "assignee", "customer", "organization").prefetch_related(
        "tags", "customer__emails"
    )
