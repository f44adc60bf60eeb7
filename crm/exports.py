"""CSV downloads every app shares: cells spreadsheets open safely, and responses that stream
under both servers (the queue export, the analytics and reports, the recipient statistics)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from itertools import islice
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> Any:
    """Text a spreadsheet would run as a formula (an agent named `=HYPERLINK(...)`) is
    prefixed with an apostrophe; numbers and dates go out as they are."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return f"'{value}"
    return value


class Echo:
    """A file whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def streaming_csv(
    request: HttpRequest, lines: Iterator[str], *, filename: str
) -> StreamingHttpResponse:
    """A CSV download that streams under both servers.

    Under ASGI, Django buffers a synchronous iterator whole before sending it (a million-row
    export would sit in memory), so there the lines go out through an async iterator that
    pulls batches of them in the request's database thread. `request` may be DRF's wrapper.
    """
    asgi = isinstance(getattr(request, "_request", request), ASGIRequest)
    return StreamingHttpResponse(
        _async_batches(lines) if asgi else lines,
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _async_batches(lines: Iterator[str], size: int = 500) -> AsyncIterator[str]:
    pull = sync_to_async(lambda: "".join(islice(lines, size)), thread_sensitive=True)
    while batch := await pull():
        yield batch
