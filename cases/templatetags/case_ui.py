"""Template helpers of the agent UI."""

from __future__ import annotations

import re

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.filter
def highlight(text: str, terms: list[str]) -> SafeString:
    """`text` escaped, with the search's words marked (`<mark>`), as the agent typed them or
    as a word's beginning (full-text search matches "refund" for "refunds" too)."""
    escaped = escape(text or "")
    words = [re.escape(escape(term)) for term in terms or () if term]
    if not words:
        return mark_safe(escaped)  # noqa: S308 - escaped above
    pattern = re.compile(
        r"(?<![\w&])(" + "|".join(sorted(words, key=len, reverse=True)) + r")", re.I
    )
    return mark_safe(pattern.sub(r"<mark>\1</mark>", escaped))  # noqa: S308 - escaped above


@register.simple_tag
def capped(count: int, cap: int) -> str:
    """1,234 → "1,000+" once a count went past the cap it was counted to."""
    return f"{cap:,}+" if count > cap else f"{count:,}"


@register.simple_tag(takes_context=True)
def with_param(context, key: str, value: str) -> str:
    """The current query string with `key` set to `value` (and no page cursor)."""
    params = context["request"].GET.copy()
    params.pop("cursor", None)
    params[key] = value
    return "?" + params.urlencode()


@register.filter
def getlist(params, key: str) -> list[str]:
    """All values of a query-string key (`request.GET|getlist:"status"`)."""
    return params.getlist(key)
