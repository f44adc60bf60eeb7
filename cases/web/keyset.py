"""Keyset ("seek") pagination for the UI's lists, with opaque signed cursors.

An OFFSET page of a million cases reads and throws away every row before it; a keyset page
starts from the row the last page ended on, through the index the list is sorted by, so page
400 costs what page 1 costs, and rows that arrive meanwhile do not shift the page under the
agent. The cursor holds that row's sort values, signed (nobody hands the database values of
their own making) and tied to the list and its sort order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core import signing
from django.db.models import F, Model, OrderBy, Q, QuerySet
from django.http import HttpRequest

PAGE_SIZE = 50


class BadCursor(ValueError):
    """A page link that was tampered with, or made for another list or sort order."""


@dataclass(frozen=True)
class Key:
    """One column of a list's order. Empty values of a `nullable` column sort last."""

    field: str
    descending: bool = False
    nullable: bool = False

    def order(self, *, reverse: bool) -> OrderBy:
        descending = self.descending != reverse
        nulls = {"nulls_first" if reverse else "nulls_last": True} if self.nullable else {}
        return F(self.field).desc(**nulls) if descending else F(self.field).asc(**nulls)

    def after(self, value: object, *, reverse: bool) -> Q:
        """Rows strictly after `value` in this column, walking forward or backward."""
        if value is None:
            return Q(**{f"{self.field}__isnull": False}) if reverse else Q(pk__in=[])
        lookup = "lt" if self.descending != reverse else "gt"
        condition = Q(**{f"{self.field}__{lookup}": value})
        if self.nullable and not reverse:
            condition |= Q(**{f"{self.field}__isnull": True})
        return condition

    def equal(self, value: object) -> Q:
        return Q(**{f"{self.field}__isnull": True}) if value is None else Q(**{self.field: value})


@dataclass
class Page:
    rows: list
    next_cursor: str | None = None
    previous_cursor: str | None = None


def _dump(value: object) -> object:
    return {"dt": value.isoformat()} if isinstance(value, datetime) else value


def _load(value: object) -> object:
    return datetime.fromisoformat(value["dt"]) if isinstance(value, dict) else value


@dataclass(frozen=True)
class Keyset:
    """Pages of a list in the order of `keys` (the last key must make the order total)."""

    name: str
    keys: tuple[Key, ...]
    size: int = PAGE_SIZE

    @property
    def _salt(self) -> str:
        return f"cases.web.keyset.{self.name}"

    @property
    def _signature(self) -> str:
        return ",".join(f"{'-' if k.descending else ''}{k.field}" for k in self.keys)

    def paginate(self, rows: QuerySet, cursor: str | None) -> Page:
        """The page after (or, for a "previous" cursor, before) the cursor's row."""
        if not cursor:
            return self._page(rows, None, backward=False)
        values, backward = self._decode(cursor)
        page = self._page(rows, values, backward=backward)
        if backward and page.previous_cursor is None:
            # Back at the start: show a full first page rather than the few rows left.
            return self._page(rows, None, backward=False)
        return page

    def _page(self, rows: QuerySet, values: list | None, *, backward: bool) -> Page:
        if values is not None:
            rows = rows.filter(self._after(values, reverse=backward))
        rows = rows.order_by(*(key.order(reverse=backward) for key in self.keys))
        found = list(rows[: self.size + 1])
        more = len(found) > self.size
        found = found[: self.size]
        if backward:
            found.reverse()
        has_previous = more if backward else values is not None
        has_next = True if backward else more
        if not found:
            return Page(rows=[])
        return Page(
            rows=found,
            next_cursor=self._encode(found[-1], backward=False) if has_next else None,
            previous_cursor=self._encode(found[0], backward=True) if has_previous else None,
        )

    def neighbours(self, rows: QuerySet, pk: object) -> tuple[Model | None, Model | None]:
        """The rows just before and just after row `pk` in this order (None at either end,
        or both when the row is not in `rows`): one indexed query each way."""
        row = rows.filter(pk=pk).first()
        if row is None:
            return None, None
        values = [getattr(row, key.field) for key in self.keys]
        return self._step(rows, values, backward=True), self._step(rows, values, backward=False)

    def _step(self, rows: QuerySet, values: list, *, backward: bool) -> Model | None:
        rows = rows.filter(self._after(values, reverse=backward))
        return rows.order_by(*(key.order(reverse=backward) for key in self.keys)).first()

    def _after(self, values: list, *, reverse: bool) -> Q:
        condition = Q(pk__in=[])
        for index, key in enumerate(self.keys):
            same = Q()
            for earlier, value in zip(self.keys[:index], values, strict=False):
                same &= earlier.equal(value)
            condition |= same & key.after(values[index], reverse=reverse)
        return condition

    def _encode(self, row: Model, *, backward: bool) -> str:
        values = [_dump(getattr(row, key.field)) for key in self.keys]
        payload = {"k": self._signature, "v": values, "b": backward}
        return signing.dumps(payload, salt=self._salt, compress=True)

    def _decode(self, cursor: str) -> tuple[list, bool]:
        try:
            payload = signing.loads(cursor, salt=self._salt)
            signature, values, backward = payload["k"], payload["v"], payload["b"]
            values = [_load(v) for v in values]
        except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
            raise BadCursor(
                "This page link is not valid any more; start from the first page."
            ) from exc
        if signature != self._signature or len(values) != len(self.keys):
            raise BadCursor("This page link was made for another sort order.")
        return values, bool(backward)


def page_url(request: HttpRequest, param: str, cursor: str | None) -> str | None:
    """This page's address with another cursor in `param` (filters and other lists' cursors
    kept), or None when there is no such page."""
    if cursor is None:
        return None
    query = request.GET.copy()
    query[param] = cursor
    return f"?{query.urlencode()}"


def first_page_url(request: HttpRequest, param: str) -> str:
    query = request.GET.copy()
    query.pop(param, None)
    return f"?{query.urlencode()}" if query else request.path


@dataclass
class Pager:
    """What the pager template needs: the page and the links around it."""

    page: Page
    next_url: str | None
    previous_url: str | None
    first_url: str | None
    error: str = ""

    @property
    def rows(self) -> list:
        return self.page.rows


def paginate(request: HttpRequest, keyset: Keyset, rows: QuerySet, param: str = "cursor") -> Pager:
    """Page `rows` by the cursor in `param`; a bad cursor shows the first page with a message."""
    cursor = request.GET.get(param, "")
    error = ""
    try:
        page = keyset.paginate(rows, cursor)
    except BadCursor as exc:
        error, cursor = str(exc), ""
        page = keyset.paginate(rows, None)
    return Pager(
        page=page,
        next_url=page_url(request, param, page.next_cursor),
        previous_url=page_url(request, param, page.previous_cursor),
        first_url=first_page_url(request, param) if cursor else None,
        error=error,
    )
