"""CSV cells that spreadsheets open safely (shared by the analytics API and the queue export)."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from itertools import islice
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse

from cases.models import Case

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> Any:
    """Text a spreadsheet would run as a formula (an agent named `=HYPERLINK(...)`) is
    prefixed with an apostrophe; numbers and dates go out as they are."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return f"'{value}"
    return value


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


class _Echo:
    """A file whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def case_csv_lines(cases: QuerySet[Case]) -> Iterator[str]:
    """CSV lines of `cases`, produced while the response streams (a million rows never sit in
    memory). Precondition: `cases` selects team, assignee, customer, organization and
    prefetches tags and customer emails, or every row costs queries."""
    writer = csv.writer(_Echo())
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


def streaming_csv(
    request: HttpRequest, lines: Iterator[str], *, filename: str
) -> StreamingHttpResponse:
    """A CSV download that streams under both servers.

    Under ASGI, Django buffers a synchronous iterator whole before sending it (a million-row
    export would sit in memory), so there the lines go out through an async iterator that
    pulls batches of them in the request's database thread.
    """
    content = _async_batches(lines) if isinstance(request, ASGIRequest) else lines
    return StreamingHttpResponse(
        content,
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _async_batches(lines: Iterator[str], size: int = 500) -> AsyncIterator[str]:
    pull = sync_to_async(lambda: "".join(islice(lines, size)), thread_sensitive=True)
    while batch := await pull():
        yield batch
