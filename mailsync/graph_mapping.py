"""Graph message resources → our columns, for partial updates as well as whole messages.

Graph's delta updates carry only what changed, so every mapping here looks only at the keys
present in the item and returns only the columns they determine: a property absent from an
update is left as stored, never nulled (DESIGN.md "Known traps").
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from mailsync.choices import FlagStatus, Importance

# What the delta query asks for: everything we store except the internet headers, which Graph
# returns only on a single-message GET, and attachments, which have their own endpoint.
DELTA_SELECT = (
    "subject,bodyPreview,body,from,sender,toRecipients,ccRecipients,bccRecipients,replyTo,"
    "receivedDateTime,sentDateTime,internetMessageId,conversationId,importance,isRead,isDraft,"
    "flag,categories,hasAttachments,parentFolderId"
)

# Headers kept with a message: threading, and what intake needs to spot auto-replies,
# bounces and mailing lists. Names are stored lowercased.
KEPT_HEADERS = frozenset(
    {
        "message-id",
        "in-reply-to",
        "references",
        "auto-submitted",
        "x-auto-response-suppress",
        "precedence",
        "list-id",
        "list-unsubscribe",
        "return-path",
        "x-autoreply",
        "x-autorespond",
        "x-failed-recipients",
        "content-type",
        "content-language",
    }
)
MAX_TEXT = 1_000_000  # a body larger than this is cut; Graph bodies are rarely over 100 kB


def _text(value: Any) -> str:
    """A string for a text column; NUL characters, which PostgreSQL refuses, are dropped."""
    if not isinstance(value, str):
        return ""
    return value.replace("\x00", "") if "\x00" in value else value


def _address(value: Any) -> dict[str, str]:
    email = (value or {}).get("emailAddress") or {} if isinstance(value, dict) else {}
    return {
        "name": _text(email.get("name"))[:320],
        "address": _text(email.get("address")).strip().lower()[:320],
    }


def _addresses(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        return []
    return [a for a in (_address(item) for item in value) if a["address"] or a["name"]]


def parse_datetime(value: Any) -> datetime | None:
    """Graph's ISO 8601 instants (`2026-11-23T08:15:00Z`, sometimes with fractions)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


_INVISIBLE_OPEN = re.compile(r"<(head|style|script)\b", re.I)
_INVISIBLE_CLOSE = {
    name: re.compile(rf"</{name}\s*>", re.I) for name in ("head", "style", "script")
}
_BLOCK = re.compile(r"</?(?:p|div|br|li|tr|h[1-6]|blockquote|table|ul|ol)\b[^>]*>", re.I)
_TAG = re.compile(r"<[^>]*>|<!--.*?-->", re.S)
_SPACES = re.compile(r"[ \t\r\f\v\xa0]+")
_BLANK_LINES = re.compile(r" ?\n[ \n]*\n")


def html_to_text(markup: str) -> str:
    """Readable plain text of an HTML body, for search, previews and ActiveSync's text bodies.

    Regular expressions rather than an HTML parser: sync converts every body it stores, and
    this is ten times quicker than `html.parser` while good enough for text (tags dropped,
    blocks on lines of their own, entities decoded). Linear in the length of the markup even
    when it is hostile (mail from anyone reaches the SMTP listener): a pattern that can only
    end at ">" runs only up to the last ">", and invisible elements are cut out by a scan
    instead of a lazy `.*?` that rescans to the end for every unclosed `<style`.
    """
    text = _strip_invisible(markup)
    text = _up_to_last_gt(_BLOCK, "\n", text)
    text = html.unescape(_up_to_last_gt(_TAG, "", text))
    text = _SPACES.sub(" ", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def _up_to_last_gt(pattern: re.Pattern[str], replacement: str, text: str) -> str:
    """`pattern.sub` for a pattern whose matches end with ">": nothing after the last ">" can
    match, and without this cut every "<" there would be tried to the end of the text."""
    end = text.rfind(">") + 1
    return pattern.sub(replacement, text[:end]) + text[end:]


def _strip_invisible(markup: str) -> str:
    """`<head>`, `<style>` and `<script>` elements replaced by a space (an unclosed one stays)."""
    pieces: list[str] = []
    position = 0
    unclosed: set[str] = set()  # names with no closing tag after some point: none further on
    while (opening := _INVISIBLE_OPEN.search(markup, position)) is not None:
        name = opening.group(1).lower()
        closing = None if name in unclosed else _INVISIBLE_CLOSE[name].search(markup, opening.end())
        if closing is None:
            unclosed.add(name)
            pieces.append(markup[position : opening.end()])
        else:
            pieces.append(markup[position : opening.start()] + " ")
        position = opening.end() if closing is None else closing.end()
    pieces.append(markup[position:])
    return "".join(pieces)


def _body(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    content = _text(value.get("content"))[:MAX_TEXT]
    if _text(value.get("contentType")).lower() == "html":
        return {"body_html": content, "body_text": html_to_text(content)}
    return {"body_html": "", "body_text": content}


def _flag(value: Any) -> dict[str, str]:
    status = (value or {}).get("flagStatus") if isinstance(value, dict) else None
    return {"flag_status": status if status in FlagStatus.values else FlagStatus.NOT_FLAGGED}


def _importance(value: Any) -> dict[str, str]:
    value = _text(value).lower()
    return {"importance": value if value in Importance.values else Importance.NORMAL}


def _categories(value: Any) -> dict[str, list[str]]:
    return {
        "categories": [c for c in value if isinstance(c, str)] if isinstance(value, list) else []
    }


def _from(value: Any) -> dict[str, str]:
    address = _address(value)
    return {"from_name": address["name"], "from_address": address["address"]}


PROPERTY_MAP: dict[str, Callable[[Any], dict[str, Any]]] = {
    "subject": lambda v: {"subject": _text(v)},
    "bodyPreview": lambda v: {"preview": _text(v)[:1000]},
    "body": _body,
    "from": _from,
    "sender": lambda v: {"sender_address": _address(v)["address"]},
    "toRecipients": lambda v: {"to": _addresses(v)},
    "ccRecipients": lambda v: {"cc": _addresses(v)},
    "bccRecipients": lambda v: {"bcc": _addresses(v)},
    "replyTo": lambda v: {"reply_to": _addresses(v)},
    "receivedDateTime": lambda v: {"received_at": parse_datetime(v)},
    "sentDateTime": lambda v: {"sent_at": parse_datetime(v)},
    "internetMessageId": lambda v: {"internet_message_id": _text(v)[:998]},
    "conversationId": lambda v: {"conversation_id": _text(v)[:512]},
    "importance": _importance,
    "isRead": lambda v: {"is_read": bool(v)},
    "isDraft": lambda v: {"is_draft": bool(v)},
    "flag": _flag,
    "categories": _categories,
    "hasAttachments": lambda v: {"has_attachments": bool(v)},
}


def message_fields(item: dict[str, Any]) -> dict[str, Any]:
    """The columns determined by the properties present in `item` (a whole or partial message)."""
    fields: dict[str, Any] = {}
    for name, mapper in PROPERTY_MAP.items():
        if name in item:
            fields.update(mapper(item[name]))
    return fields


def header_fields(headers: Any) -> dict[str, Any]:
    """Columns from `internetMessageHeaders`: the kept headers, and threading ones split out."""
    kept: dict[str, str] = {}
    for header in headers if isinstance(headers, list) else []:
        if not isinstance(header, dict):
            continue
        name = _text(header.get("name")).strip().lower()
        if name in KEPT_HEADERS and name not in kept:
            kept[name] = _text(header.get("value"))[:10_000]
    return {
        "headers": kept,
        "headers_fetched": True,
        "in_reply_to": kept.get("in-reply-to", "").strip(),
        "references": " ".join(kept.get("references", "").split()),
    }


def attachment_fields(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "graph_id": _text(item.get("id"))[:512],
        "name": _text(item.get("name"))[:255],
        "content_type": _text(item.get("contentType"))[:255],
        "size": item.get("size") if isinstance(item.get("size"), int) else 0,
        "is_inline": bool(item.get("isInline")),
        "content_id": _text(item.get("contentId"))[:255],
    }
