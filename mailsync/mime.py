"""Inbound MIME → the columns of a `Message`, the same ones Graph sync fills.

Whatever arrives at the SMTP listener has been acknowledged with `250`, so parsing must never
fail: `parse_message` always returns something storable.

Two policies of the standard library, each where it is safe. The MIME tree is read with the
legacy `compat32` policy, which keeps header values as strings and splits parameters with
plain string operations: the modern `email.policy.default` parses every Content-Type the tree
walk touches with its full RFC 5322 grammar, which is quadratic on hostile input (measured: a
40 kB Content-Type of quotes took 27 s to parse, 150 kB of commas in a To: header 13 s), and
one such message must not cost a worker minutes. The modern policy's header classes then parse
only what we keep and need its grammar for (addresses, subject, date), each header on its
own: one that raises (DESIGN.md "Known traps") is kept raw and the problem recorded
(`ParsedMessage.problems`, stored as `Message.parse_problems`), and long address lists are
parsed address by address so the cost stays linear.

Unknown or lying charsets are decoded with replacement characters. Text that ends up in a
one-line field (subject, names, addresses, kept headers) has its control characters replaced,
so a CR/LF smuggled in through an encoded word cannot inject a header anywhere the value is
written again; everything is stripped of NUL and lone surrogates, which PostgreSQL refuses.

Structure: the first text/plain and text/html parts that are not attachments are the bodies
(text derived from HTML when there is no plain part); every other leaf is an attachment, inline
when it has a Content-ID (images of a multipart/related HTML body). Attached messages
(message/rfc822) stay one attachment and are not searched for bodies. A delivery status
notification (multipart/report; report-type=delivery-status) is marked as a bounce, with the
Message-ID of the message that bounced, from its message/rfc822 or text/rfc822-headers part.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import Message as MimePart
from email.parser import BytesParser, HeaderParser
from typing import Any

from mailsync.choices import Importance
from mailsync.graph_mapping import KEPT_HEADERS, MAX_TEXT, html_to_text

MAX_PROBLEMS = 50
MAX_PARTS = 1_000  # leaves beyond this are not extracted (a problem is recorded)
MAX_DEPTH = 30
MAX_HEADER_VALUE = 10_000
MAX_ADDRESSES = 5_000
# Values up to this are parsed whole by the modern header classes; address lists beyond it
# address by address, anything else beyond it is cut (their grammar is quadratic, see above).
WHOLE_HEADER_LIMIT = 4_000
CONTENT_HEADER_LIMIT = 4_000  # Content-* values are cut here: the legacy splitter is quadratic
HEADER_BLOCK_LIMIT = 1 << 20  # header lines beyond 1 MiB are dropped (Postfix drops them too)
MAX_BOUNDARY_LINES = 10_000  # more "--" lines than this: the body is not split into parts
PREVIEW_CHARS = 255
ADDRESS_HEADERS = ("from", "sender", "to", "cc", "bcc", "reply-to")


class _ParsePolicy(type(policy.compat32)):  # type: ignore[misc]
    """compat32, with over-long Content-* header values cut when the parser reads them (the
    parser itself splits Content-Type's parameters, in time quadratic in their length)."""

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        if len(value) > CONTENT_HEADER_LIMIT and name.lower().startswith("content-"):
            value = value[:CONTENT_HEADER_LIMIT]
        return name, value


_PARSE = _ParsePolicy()
_FLATTEN = policy.compat32.clone(linesep="\r\n", max_line_length=None)
_NOT_CHARSETS = frozenset(
    {"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined", "mbcs", "oem"}
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_NOT_IN_ADDRESS = re.compile(r"[\s<>()\[\],;:\"\\]+")
_ANGLED = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_SAFE_NAME = re.compile(r"[^\w.\- ()\[\]]+")


@dataclass
class ParsedAttachment:
    """A leaf part that is not a body: a file, an inline image, an attached message."""

    name: str
    content_type: str
    content: bytes
    is_inline: bool = False
    content_id: str = ""

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass
class ParsedMessage:
    """What `parse_message` read; `message_fields()` gives the columns of `mailsync.Message`."""

    subject: str = ""
    from_name: str = ""
    from_address: str = ""
    sender_address: str = ""
    to: list[dict[str, str]] = field(default_factory=list)
    cc: list[dict[str, str]] = field(default_factory=list)
    bcc: list[dict[str, str]] = field(default_factory=list)
    reply_to: list[dict[str, str]] = field(default_factory=list)
    sent_at: datetime | None = None
    message_id: str = ""
    in_reply_to: str = ""
    references: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    importance: str = Importance.NORMAL
    body_text: str = ""
    body_html: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)
    is_bounce: bool = False
    bounce_of_message_id: str = ""
    bounced_recipients: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def has_attachments(self) -> bool:
        """As Graph counts them: inline parts of the body are not attachments."""
        return any(not a.is_inline for a in self.attachments)

    @property
    def preview(self) -> str:
        return " ".join(self.body_text[: 4 * PREVIEW_CHARS].split())[:PREVIEW_CHARS]

    def message_fields(self) -> dict[str, Any]:
        """The columns of a `mailsync.Message`, filled as `graph_mapping` fills them for Graph
        (lowercased addresses, kept headers by lowercased name, References space-joined)."""
        return {
            "subject": self.subject,
            "from_name": self.from_name,
            "from_address": self.from_address,
            "sender_address": self.sender_address,
            "to": self.to,
            "cc": self.cc,
            "bcc": self.bcc,
            "reply_to": self.reply_to,
            "preview": self.preview,
            "body_html": self.body_html,
            "body_text": self.body_text,
            "headers": dict(self.headers),
            "headers_fetched": True,
            "internet_message_id": self.message_id,
            "in_reply_to": self.in_reply_to,
            "references": self.references,
            "sent_at": self.sent_at,
            "importance": self.importance,
            "has_attachments": self.has_attachments,
            "conversation_id": "",
            "parse_problems": list(self.problems),
            "is_bounce": self.is_bounce,
            "bounce_of_message_id": self.bounce_of_message_id,
        }


class _Problems(list):
    """A bounded list of problems: a pathological message must not grow it without end."""

    def add(self, text: str) -> None:
        if len(self) < MAX_PROBLEMS:
            self.append(one_line(text)[:300])


# --- text hygiene ------------------------------------------------------------------------------


def storable(text: str) -> str:
    """Text PostgreSQL accepts: no NUL, no lone surrogates (left by undecodable bytes)."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    if _SURROGATES.search(text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        text = _SURROGATES.sub("\ufffd", text)
    return text


def one_line(text: str) -> str:
    """A value for a one-line field: control characters (CR and LF above all, the stuff of
    header injection) become spaces."""
    return _CONTROL.sub(" ", storable(text)).strip()


def _raw_text(value: object) -> str:
    """A raw header value as text: unfolded, its 8-bit bytes read as UTF-8 (else Windows-1252)."""
    text = _FOLD.sub("", str(value))
    if _SURROGATES.search(text):
        data = text.encode("utf-8", "surrogateescape")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("cp1252", "replace")
    return text


def _decode_words(text: str) -> str:
    """RFC 2047 encoded words in a value the modern parser did not decode (lenient)."""
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except Exception:  # any failure keeps the text as it came
        return text


def decode_bytes(data: bytes, charset: str | None, problems: _Problems, where: str) -> str:
    """Bytes of a text part in its declared charset; never fails.

    An unknown charset, or bytes that are not valid in the declared one, decode as UTF-8 (or
    Windows-1252 when that fails too) with replacement characters, and a problem is recorded.
    """
    codec = _text_codec(charset)
    if charset and codec is None:
        problems.add(f"{where}: unknown charset {charset!r}, read as UTF-8")
    if codec in (None, "ascii"):  # undeclared or ASCII: UTF-8 is a superset, often the truth
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            if codec == "ascii":
                problems.add(f"{where}: 8-bit bytes in a us-ascii part, read as Windows-1252")
            return data.decode("cp1252", "replace")
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        problems.add(f"{where}: bytes invalid in {charset}, replaced")
    except Exception:  # a codec that fails otherwise: read as UTF-8
        problems.add(f"{where}: charset {charset!r} failed, read as UTF-8")
        return data.decode("utf-8", "replace")
    try:
        return data.decode(codec, "replace")
    except Exception:
        return data.decode("utf-8", "replace")


def _text_codec(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        info = codecs.lookup(charset.strip().strip('"'))
    except (LookupError, ValueError, TypeError):
        return None
    # Only charsets: "base64", "rot13" or "unicode_escape" are Python codecs, not charsets.
    if not getattr(info, "_is_text_encoding", True) or info.name.replace("-", "_") in _NOT_CHARSETS:
        return None
    return info.name


# --- headers -----------------------------------------------------------------------------------


def _first_values(part: MimePart) -> dict[str, str]:
    """The first raw value of every header, by lowercased name, without any parsing."""
    values: dict[str, str] = {}
    try:
        items = list(part.raw_items())
    except Exception:  # not expected; a message without readable headers
        return values
    for name, value in items:
        key = str(name).strip().lower()
        if key not in values:
            values[key] = _raw_text(value)
    return values


def _structured(name: str, value: str, problems: _Problems) -> Any | None:
    """The modern policy's header object for `value`, or None if it cannot parse it."""
    try:
        header = policy.default.header_factory(name, value)
    except Exception as exc:  # the modern parser raises on some malformations
        problems.add(f"{name}: could not be parsed ({type(exc).__name__}); kept raw")
        return None
    for defect in list(getattr(header, "defects", ()))[:3]:
        problems.add(f"{name}: {defect}")
    return header


def _address(name: str, address: str) -> dict[str, str]:
    return {
        "name": one_line(name)[:320],
        "address": re.sub(r"\s+", "", one_line(address)).lower()[:320],
    }


def parse_addresses(name: str, value: str, problems: _Problems) -> list[dict[str, str]]:
    """{"name", "address"} pairs of an address header; what looks like an address where the
    header does not parse. A long list is parsed address by address (linear time)."""
    chunks = [value] if len(value) <= WHOLE_HEADER_LIMIT else _split_addresses(value)
    found: list[dict[str, str]] = []
    for chunk in chunks[:MAX_ADDRESSES]:
        found += _parse_address_chunk(name, chunk, problems)
    return found[:MAX_ADDRESSES]


def _parse_address_chunk(name: str, value: str, problems: _Problems) -> list[dict[str, str]]:
    header = _structured(name, value, problems) if len(value) <= WHOLE_HEADER_LIMIT else None
    if header is not None:
        try:
            found = [_address(a.display_name or "", a.addr_spec or "") for a in header.addresses]
        except Exception as exc:  # parsed lazily, may still raise
            problems.add(f"{name}: addresses could not be read ({type(exc).__name__}); kept raw")
        else:
            return [a for a in found if a["address"] or a["name"]]
    # Kept raw: what is between angle brackets, else whatever looks like an address.
    matches = _ANGLED.findall(value) or _address_like(value)
    return [_address("", match) for match in matches[:MAX_ADDRESSES]]


def _address_like(value: str) -> list[str]:
    """Words with one "@" inside (a split, not a search: linear on any input)."""
    return [
        word
        for word in _NOT_IN_ADDRESS.split(value)
        if word.count("@") == 1 and not word.startswith("@") and not word.endswith("@")
    ]


def _split_addresses(value: str) -> list[str]:
    """Split an address list at the commas between addresses (not those in quotes, comments
    or angle brackets), in one pass."""
    chunks: list[str] = []
    start = depth = 0
    quoted = escaped = False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == '"':
            quoted = True
        elif char in "(<":
            depth += 1
        elif char in ")>":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            chunks.append(value[start:index])
            start = index + 1
    chunks.append(value[start:])
    return [chunk for chunk in chunks if chunk.strip()]


def _date(value: str, problems: _Problems) -> datetime | None:
    header = _structured("date", value[:200], problems)
    try:
        moment = getattr(header, "datetime", None)
    except Exception:
        moment = None
    if not isinstance(moment, datetime):
        return None
    if moment.tzinfo is None:  # "-0000": the time is UTC, the zone unknown (RFC 5322)
        moment = moment.replace(tzinfo=UTC)
    try:
        moment.astimezone(UTC)
    except (OverflowError, ValueError):
        problems.add("date: out of range; ignored")
        return None
    return moment


def _subject(value: str, problems: _Problems) -> str:
    if len(value) > WHOLE_HEADER_LIMIT:
        problems.add(f"subject: longer than {WHOLE_HEADER_LIMIT:,} characters; cut")
        value = value[:WHOLE_HEADER_LIMIT]
    header = _structured("subject", value, problems)
    text = str(header) if header is not None else _decode_words(value)
    return one_line(text)


def _importance(values: dict[str, str]) -> str:
    importance = values.get("importance", "").strip().lower()
    if importance in (Importance.HIGH, Importance.LOW):
        return importance
    priority = values.get("x-priority", "").strip()[:1]
    if priority in ("1", "2"):
        return Importance.HIGH
    if priority in ("4", "5"):
        return Importance.LOW
    return Importance.NORMAL


def _message_id(value: str) -> str:
    found = _MESSAGE_ID.search(value)
    return one_line(found.group(0) if found else value)[:998]


def _read_headers(message: MimePart, parsed: ParsedMessage, problems: _Problems) -> None:
    values = _first_values(message)
    parsed.subject = _subject(values["subject"], problems) if "subject" in values else ""
    addresses = {
        name: parse_addresses(name, values[name], problems) if name in values else []
        for name in ADDRESS_HEADERS
    }
    sender = (addresses["from"] or addresses["sender"] or [{"name": "", "address": ""}])[0]
    parsed.from_name, parsed.from_address = sender["name"], sender["address"]
    parsed.sender_address = (addresses["sender"] or [sender])[0]["address"]
    parsed.to, parsed.cc = addresses["to"], addresses["cc"]
    parsed.bcc, parsed.reply_to = addresses["bcc"], addresses["reply-to"]
    parsed.sent_at = _date(values["date"], problems) if "date" in values else None
    parsed.message_id = _message_id(values.get("message-id", ""))
    parsed.in_reply_to = one_line(values.get("in-reply-to", ""))[:MAX_HEADER_VALUE]
    parsed.references = " ".join(one_line(values.get("references", "")).split())[:MAX_HEADER_VALUE]
    parsed.headers = {
        name: one_line(values[name])[:MAX_HEADER_VALUE]
        for name in sorted(KEPT_HEADERS)
        if name in values
    }
    parsed.importance = _importance(values)


# --- structure ---------------------------------------------------------------------------------


@dataclass
class _Walk:
    """State of one walk through the MIME tree."""

    parsed: ParsedMessage
    problems: _Problems
    leaves: int = 0
    text_found: bool = False
    html_found: bool = False


def _content_type(part: MimePart) -> str:
    try:
        return str(part.get_content_type()).lower()
    except Exception:
        raw = _first_values(part).get("content-type", "")
        return raw.split(";", 1)[0].strip().lower() or "text/plain"


def _param(part: MimePart, name: str) -> str:
    try:
        value = part.get_param(name)
    except Exception:
        return ""
    if isinstance(value, tuple):  # RFC 2231 (charset, language, value) on the legacy API
        value = value[2]
    return str(value or "")


def _disposition(part: MimePart) -> str:
    try:
        return str(part.get_content_disposition() or "")
    except Exception:
        raw = _first_values(part).get("content-disposition", "")
        return raw.split(";", 1)[0].strip().lower()


def _filename(part: MimePart) -> str:
    try:
        name = part.get_filename() or ""
    except Exception:
        name = ""
    if not name:
        name = _param(part, "name")
    return one_line(_decode_words(_raw_text(name)))[:255]


def _charset(part: MimePart) -> str | None:
    try:
        return part.get_content_charset()
    except Exception:
        return _param(part, "charset") or None


def _payload(part: MimePart) -> bytes:
    """The decoded bytes of a leaf (base64 and quoted-printable leniently undone)."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def _as_bytes(part: MimePart) -> bytes:
    """A whole (sub)message as bytes, headers as they came."""
    try:
        return part.as_bytes(policy=_FLATTEN)
    except Exception:
        return b""


def _walk(part: MimePart, walk: _Walk, depth: int, report: bool) -> None:
    if walk.leaves >= MAX_PARTS:
        return
    ctype = _content_type(part)
    children = part.get_payload() if part.is_multipart() else None
    if ctype.startswith("multipart/") and isinstance(children, list):
        if depth >= MAX_DEPTH:
            walk.problems.add(f"MIME nested deeper than {MAX_DEPTH}; inner parts ignored")
            return
        is_report = ctype == "multipart/report" and (
            _param(part, "report-type").lower() == "delivery-status"
        )
        walk.parsed.is_bounce = walk.parsed.is_bounce or is_report
        for child in children:
            if isinstance(child, MimePart):
                _walk(child, walk, depth + 1, report or is_report)
        return
    walk.leaves += 1
    if walk.leaves == MAX_PARTS:
        walk.problems.add(f"more than {MAX_PARTS} MIME parts; the rest are not extracted")
    if isinstance(children, list):  # message/rfc822, message/delivery-status...
        _attached_message(part, ctype, children, walk, report)
        return
    _leaf(part, ctype, walk, report)


def _leaf(part: MimePart, ctype: str, walk: _Walk, report: bool) -> None:
    parsed = walk.parsed
    disposition, filename = _disposition(part), _filename(part)
    is_text = ctype in ("text/plain", "text/html") or ctype.startswith("multipart/")
    if is_text and disposition != "attachment" and not filename:
        if ctype == "text/html" and not walk.html_found:
            walk.html_found = True
            parsed.body_html = _text_body(part, walk, "HTML body")
            return
        if ctype != "text/html" and not walk.text_found:
            walk.text_found = True
            parsed.body_text = _text_body(part, walk, "text body")
            return
    content = _payload(part)
    if report and ctype == "text/rfc822-headers":
        text = decode_bytes(content, _charset(part), walk.problems, "returned headers")
        try:
            _note_bounce(walk, _bounced_original(HeaderParser(policy=_PARSE).parsestr(text)))
        except Exception:  # the bounce stays a bounce without the original's id
            walk.problems.add("returned headers could not be parsed")
    content_id = one_line(_first_values(part).get("content-id", "")).strip("<> ")[:255]
    parsed.attachments.append(
        ParsedAttachment(
            name=filename or _default_name(ctype, len(parsed.attachments) + 1),
            content_type=one_line(ctype)[:255],
            content=content,
            is_inline=bool(content_id) and disposition != "attachment",
            content_id=content_id,
        )
    )


def _text_body(part: MimePart, walk: _Walk, where: str) -> str:
    text = decode_bytes(_payload(part), _charset(part), walk.problems, where)
    if len(text) > MAX_TEXT:
        walk.problems.add(f"{where}: longer than {MAX_TEXT:,} characters; cut")
    return storable(text[:MAX_TEXT])


def _attached_message(
    part: MimePart, ctype: str, children: list, walk: _Walk, report: bool
) -> None:
    parsed = walk.parsed
    inner = [c for c in children if isinstance(c, MimePart)]
    if report and ctype == "message/delivery-status":
        _delivery_status(inner, parsed)
    if report and inner and ctype in ("message/rfc822", "message/global"):
        _note_bounce(walk, _bounced_original(inner[0]))
    name = _filename(part)
    if not name and ctype in ("message/rfc822", "message/global") and inner:
        subject = _first_values(inner[0]).get("subject", "")
        name = _safe_file_name(_decode_words(subject)) + ".eml" if subject else ""
    parsed.attachments.append(
        ParsedAttachment(
            name=name or _default_name(ctype, len(parsed.attachments) + 1),
            content_type=ctype[:255],
            content=b"".join(_as_bytes(c) for c in inner),
        )
    )


def _bounced_original(headers: MimePart) -> str:
    return _message_id(_first_values(headers).get("message-id", ""))


def _note_bounce(walk: _Walk, message_id: str) -> None:
    if message_id and not walk.parsed.bounce_of_message_id:
        walk.parsed.bounce_of_message_id = message_id


def _delivery_status(blocks: list[MimePart], parsed: ParsedMessage) -> None:
    """Recipients whose delivery failed, from the per-recipient blocks of a DSN (RFC 3464)."""
    for block in blocks[1:]:
        values = _first_values(block)
        if values.get("action", "").strip().lower() != "failed":
            continue
        recipient = values.get("final-recipient") or values.get("original-recipient", "")
        address = recipient.split(";", 1)[-1]
        cleaned = _address("", address)["address"]
        if cleaned and cleaned not in parsed.bounced_recipients:
            parsed.bounced_recipients.append(cleaned)


_EXTENSIONS = {
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "text/rfc822-headers": ".txt",
    "message/rfc822": ".eml",
    "message/delivery-status": ".txt",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "application/pdf": ".pdf",
}


def _default_name(ctype: str, number: int) -> str:
    return f"part-{number}{_EXTENSIONS.get(ctype, '')}"


def _safe_file_name(text: str) -> str:
    return _SAFE_NAME.sub("_", one_line(text)).strip(" ._")[:100] or "message"


# --- entry point -------------------------------------------------------------------------------


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse one message as received; never raises (see the module docstring)."""
    parsed = ParsedMessage()
    problems = _Problems()
    message = _parse_tree(raw, problems)
    if message is not None:
        _read_headers(message, parsed, problems)
        _read_structure(raw, message, parsed, problems)
    else:
        _raw_as_text(raw, parsed, problems)
    if parsed.body_html and not parsed.body_text:
        parsed.body_text = storable(html_to_text(parsed.body_html))
    parsed.problems = list(problems)
    return parsed


def _parse_tree(raw: bytes, problems: _Problems) -> MimePart | None:
    raw = _limit_headers(raw, problems)
    boundaries = raw.count(b"\n--")
    if boundaries > MAX_BOUNDARY_LINES:  # not mail anyone writes; splitting it costs minutes
        problems.add(f"{boundaries:,} MIME boundary lines; the body is kept as text, not split")
    try:
        message = BytesParser(policy=_PARSE).parsebytes(
            raw, headersonly=boundaries > MAX_BOUNDARY_LINES
        )
    except Exception as exc:  # the parser is lenient; this is a last resort
        problems.add(f"MIME could not be parsed ({type(exc).__name__})")
        return None
    for defect in list(message.defects)[:5]:
        problems.add(f"MIME: {type(defect).__name__}")
    return message


def _limit_headers(raw: bytes, problems: _Problems) -> bytes:
    """The message with its header lines beyond `HEADER_BLOCK_LIMIT` dropped (each header
    line costs the parser a few hundred bytes of memory; 60 MB of them would cost gigabytes)."""
    if len(raw) <= HEADER_BLOCK_LIMIT:
        return raw
    ends = [i for i in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if i >= 0]
    end = min(ends) if ends else -1
    if 0 <= end <= HEADER_BLOCK_LIMIT:
        return raw
    problems.add(f"headers longer than {HEADER_BLOCK_LIMIT:,} bytes; the rest of them dropped")
    cut = raw.rfind(b"\n", 0, HEADER_BLOCK_LIMIT) + 1
    return raw[:cut] + (raw[end + 1 :] if end >= 0 else b"")


def _read_structure(
    raw: bytes, message: MimePart, parsed: ParsedMessage, problems: _Problems
) -> None:
    """Bodies and attachments; should the walk trip on something, the bytes become the text."""
    try:
        _walk(message, _Walk(parsed, problems), 0, False)
    except Exception as exc:
        problems.add(f"MIME structure: {type(exc).__name__}; body kept as text")
        parsed.attachments = []
        parsed.body_html = ""
        _raw_as_text(raw, parsed, problems)


def _raw_as_text(raw: bytes, parsed: ParsedMessage, problems: _Problems) -> None:
    parsed.body_text = storable(decode_bytes(raw[:MAX_TEXT], None, problems, "message"))
