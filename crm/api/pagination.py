"""Cursor pagination is the default: stable under inserts and cheap at any depth."""

from __future__ import annotations

from rest_framework import exceptions, pagination
from rest_framework.request import Request


class CursorPagination(pagination.CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-pk"

    def decode_cursor(self, request: Request) -> pagination.Cursor | None:
        """A mangled cursor is the client's mistake: 400 naming the parameter, not DRF's 404."""
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound as exc:
            raise exceptions.ValidationError({self.cursor_query_param: [str(exc.detail)]}) from exc


class FixedOrderCursorPagination(CursorPagination):
    """For sub-lists (a case's timeline, notes, tasks) whose order is not the view's."""

    def __init__(self, *ordering: str) -> None:
        self.ordering = ordering

    def get_ordering(self, request: Request, queryset: object, view: object) -> tuple[str, ...]:
        return self.ordering
