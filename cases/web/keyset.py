"""Keyset ("seek") pagination for the UI's lists, with opaque signed cursors.

An OFFSET page of a million cases reads and throws away every row before it; a keyset page
starts from the last row seen through the index the list is sorted by, so page 500 costs what
page 1 costs. The cursor holds that row's sort values, signed so that nobody can hand the
database values of their own making, and it says which way to page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core import signing
from django.db.models import Q, QuerySet

SALT = "cases.web.keyset"


class BadCursor(ValueError):
    """The cursor was not made by us, or not for this sort."""


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    next_cursor: str | None
    previous_cursor: str | None


def keyset_page(
    queryset: QuerySet,
    *,
    keys: list[tuple[str, bool]],
    cursor: str | None,
    size: int,
) -> Page:
    """One page of `queryset` sorted by `keys` (name, descending?), the last naming a unique
    column. Precondition: no key is ever NULL (NULLs do not compare)."""
    if not cursor:
        return _forward(queryset, keys, None, size, first=True)
    direction, values = _decode(cursor, keys)
    if direction == "n":
        return _forward(queryset, keys, values, size, first=False)
    return _backward(queryset, keys, values, size)


def _forward(queryset, keys, values, size: int, *, first: bool) -> Page:
    if values is not None:
        queryset = queryset.filter(_beyond(keys, values, forward=True))
    rows = list(queryset.order_by(*_ordering(keys, reverse=False))[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return Page(
        rows=rows,
        next_cursor=_encode("n", keys, rows[-1]) if more else None,
        previous_cursor=_encode("p", keys, rows[0]) if rows and not first else None,
    )


def _backward(queryset, keys, values, size: int) -> Page:
    queryset = queryset.filter(_beyond(keys, values, forward=False))
    rows = list(queryset.order_by(*_ordering(keys, reverse=True))[: size + 1])
    more = len(rows) > size
    rows = rows[:size][::-1]
    return Page(
        rows=rows,
        next_cursor=_encode("n", keys, rows[-1]) if rows else None,
        previous_cursor=_encode("p", keys, rows[0]) if more else None,
    )


def _ordering(keys, *, reverse: bool) -> list[str]:
    return [f"-{name}" if descending != reverse else name for name, descending in keys]


def _beyond(keys, values, *, forward: bool) -> Q:
    """Rows after (or before) `values` in the sort: (a, b, c) > (x, y, z), spelled out so
    that each key may run its own direction."""
    condition = Q()
    equal = Q()
    for (name, descending), value in zip(keys, values, strict=True):
        later = "lt" if descending == forward else "gt"
        condition |= equal & Q(**{f"{name}__{later}": value})
        equal &= Q(**{name: value})
    return condition


def _value(row: Any, name: str) -> Any:
    return row.pk if name == "pk" else getattr(row, name)


def _encode(direction: str, keys, row: Any) -> str:
    values = [_plain(_value(row, name)) for name, _ in keys]
    return signing.dumps([direction, [name for name, _ in keys], values], salt=SALT, compress=True)


def _decode(cursor: str, keys) -> tuple[str, list[Any]]:
    try:
        direction, names, values = signing.loads(cursor, salt=SALT)
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise BadCursor("That page link is not valid (it may be from an older version).") from exc
    if direction not in ("n", "p") or names != [name for name, _ in keys]:
        raise BadCursor("That page link belongs to another sort order.")
    return direction, [_typed(value) for value in values]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if isinstance(value, Decimal):
        return float(value)
    return value


def _typed(value: Any) -> Any:
    if isinstance(value, dict) and "t" in value:
        return datetime.fromisoformat(value["t"])
    return value
