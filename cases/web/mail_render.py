"""How a case's messages read in the workspace: plain text escaped and linkified with the
quoted tail folded away, HTML bodies as sanitized documents for their sandboxed iframe.

Plain text is shown in the page itself (escaping makes it inert); HTML never is, because a
stranger's markup and styles must not share a document with the agent's session.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import urlize
from django.utils.safestring import SafeString, mark_safe

from cases.models import CaseMessage
from cases.web.sanitize import mentions_remote_images, sanitize_email_html
from mailsync.models import Attachment, Message

ATTRIBUTION = re.compile(
    r"^\s*(on\b.{0,300}\bwrote:|am\b.{0,300}\bschrieb.{0,100}:|le\b.{0,300}a écrit\s*:"
    r"|el\b.{0,300}escribió:|op\b.{0,300}schreef.{0,100}:)\s*$",
    re.I,
)
ATTRIBUTION_END = re.compile(r"\b(wrote|schrieb|a écrit|escribió|schreef)\b.{0,100}:\s*$", re.I)
ATTRIBUTION_START = re.compile(r"^\s*(on|am|le|el|op)\b", re.I)
OUTLOOK_SEPARATOR = re.compile(
    r"^\s*(-{2,}\s*(original message|ursprüngliche nachricht|message d'origine)\s*-{2,}"
    r"|_{10,})\s*$",
    re.I,
)
HEADER_LINE = re.compile(r"^\s*\*?(from|von|de|van)\s*:\*?\s", re.I)
SENT_LINE = re.compile(r"^\s*\*?(sent|gesendet|envoyé|verzonden|date|datum)\s*:", re.I)
NEW_TAB_LINK = '<a target="_blank" rel="noopener noreferrer" href="'


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _attribution_start(lines: list[str], end: int) -> int | None:
    """The first line of an "On ..., Anna wrote:" attribution ending just before `end` (blank
    lines between are allowed), which mail clients often wrap over two lines."""
    k = end
    while k > 0 and not lines[k - 1].strip():
        k -= 1
    if k == 0:
        return None
    if ATTRIBUTION.match(lines[k - 1]):
        return k - 1
    if (
        k > 1
        and ATTRIBUTION_END.search(lines[k - 1])
        and ATTRIBUTION_START.match(lines[k - 2])
        and ATTRIBUTION.match(f"{lines[k - 2]} {lines[k - 1]}")
    ):
        return k - 2
    return None


def _trailing_quote_start(lines: list[str]) -> int | None:
    """Where the trailing `>` block (with its attribution) begins, if the text ends in one."""
    end = len(lines)
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    start = end
    while start > 0 and (_is_quoted(lines[start - 1]) or not lines[start - 1].strip()):
        start -= 1
    if not any(_is_quoted(line) for line in lines[start:end]):
        return None
    while start < end and not lines[start].strip():
        start += 1
    attribution = _attribution_start(lines, start)
    return start if attribution is None else attribution


def _reply_header_start(lines: list[str]) -> int | None:
    """Where an Outlook-style quoted reply begins ("-----Original Message-----", or a "From:"
    line with a "Sent:" line right after it), or an attribution with the thread below it."""
    for index, line in enumerate(lines):
        if OUTLOOK_SEPARATOR.match(line):
            return index
        if HEADER_LINE.match(line) and any(
            SENT_LINE.match(n) for n in lines[index + 1 : index + 4]
        ):
            return index
        if ATTRIBUTION.match(line) and index > 0:
            return index
    return None


def split_quoted_text(text: str) -> tuple[str, str]:
    """The new part of a plain-text message and its quoted tail ("" when there is none, or when
    the message is nothing but quote, which then stays in view)."""
    lines = text.splitlines()
    candidates = [i for i in (_trailing_quote_start(lines), _reply_header_start(lines)) if i]
    if not candidates:
        return text.strip("\n"), ""
    start = min(candidates)
    main = "\n".join(lines[:start]).rstrip()
    if not main.strip():
        return text.strip("\n"), ""
    return main, "\n".join(lines[start:]).strip("\n")


def text_to_html(text: str) -> SafeString:
    """Plain text as HTML: escaped, with web and mail addresses as links that open a new tab.
    Line breaks are kept by CSS (`white-space: pre-wrap`)."""
    linked = urlize(text, autoescape=True)
    # urlize escaped the text, so every `<a href="` left in it is one urlize wrote.
    return mark_safe(linked.replace('<a href="', NEW_TAB_LINK))  # noqa: S308


@dataclass
class MessageView:
    """One message of the conversation as the thread template shows it."""

    link: CaseMessage
    message: Message
    direction: str
    is_html: bool
    text_main: SafeString
    text_quoted: SafeString
    has_remote_images: bool
    attachments: list[Attachment]
    when: datetime


def message_view(
    case_message: CaseMessage, *, visible_attachments: Callable[[Message], list[Attachment]]
) -> MessageView:
    message = case_message.message
    is_html = bool(message.body_html.strip())
    main = quoted = ""
    if not is_html:
        main, quoted = split_quoted_text(message.body_text or message.preview or "")
    return MessageView(
        link=case_message,
        message=message,
        direction=case_message.direction,
        is_html=is_html,
        text_main=text_to_html(main),
        text_quoted=text_to_html(quoted) if quoted else mark_safe(""),  # noqa: S308
        has_remote_images=is_html and mentions_remote_images(message.body_html),
        attachments=visible_attachments(message),
        when=message.received_at or message.sent_at or case_message.created_at,
    )


def message_document(
    message: Message, *, remote_images: bool, inline_image_url: Callable[[str], str | None]
) -> str:
    """The sanitized body of an HTML message (or its text, escaped) for the iframe."""
    if message.body_html.strip():
        return sanitize_email_html(
            message.body_html, remote_images=remote_images, inline_image_url=inline_image_url
        )
    return f'<div class="text">{text_to_html(message.body_text)}</div>'
