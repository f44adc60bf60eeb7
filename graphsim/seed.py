"""Realistic mailboxes and scripted changes to them, deterministic by seed.

`seed_mailbox` writes support conversations the way a shared mailbox holds them: the customer's
messages in the Inbox, support's replies in Sent Items, every message with the properties Graph
returns (and the internet headers a `$select` asks for), plus the awkward cases a sync client
meets sooner or later: no subject, non-ASCII and right-to-left text, emoji, 500 recipients,
plain-text bodies, attachments inline and not. `seed_bulk` fills a folder fast for benchmarks;
`mutate` then changes a mailbox the way people work in it.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import gc
import html
import random
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphsim.mail import Mailbox
from graphsim.seed_content import (
    ARABIC_CUSTOMER,
    CATEGORIES,
    CUSTOMER_NAMES,
    DEFAULT_DOMAINS,
    EMOJI_TOPIC,
    GENERIC_CUSTOMER,
    GENERIC_SUPPORT,
    GERMAN_CUSTOMER,
    GERMAN_TOPIC,
    JAPANESE_CUSTOMER,
    JAPANESE_TOPIC,
    NO_SUBJECT_TOPIC,
    NULL_SUBJECT_TOPIC,
    RTL_TOPIC,
    SUPPORT_AGENTS,
    TOPICS,
    USER_FOLDERS,
    Topic,
)

START = datetime.datetime(2025, 3, 3, 7, 30, tzinfo=datetime.UTC)
FILETIME_EPOCH = datetime.datetime(1601, 1, 1, tzinfo=datetime.UTC)
# Each case lands on its own thread when there are enough threads, then on more by chance.
EDGE_CASES = (
    "no_subject",
    "null_subject",
    "german",
    "japanese",
    "emoji",
    "rtl",
    "many_recipients",
    "plain_text",
    "attachment",
    "inline_image",
)
EDGE_CASE_SHARE = 0.03
CASE_TOPICS = {
    "german": GERMAN_TOPIC,
    "japanese": JAPANESE_TOPIC,
    "rtl": RTL_TOPIC,
    "emoji": EMOJI_TOPIC,
    "no_subject": NO_SUBJECT_TOPIC,
    "null_subject": NULL_SUBJECT_TOPIC,
}
CASE_CUSTOMERS = {"german": GERMAN_CUSTOMER, "japanese": JAPANESE_CUSTOMER, "rtl": ARABIC_CUSTOMER}
MANY_RECIPIENTS = 500
RANDOM_ATTACHMENT_SHARE = 0.06
REPLY_PREFIX = {"de-DE": "AW: "}
MUTATION_WEIGHTS = {
    "read": 20,
    "unread": 8,
    "flag": 10,
    "categorize": 8,
    "move": 16,
    "delete": 8,
    "new": 15,
    "reply": 15,
}
MOVE_TARGETS = ("inbox", "archive", "sentitems")


@dataclass(frozen=True)
class Person:
    name: str
    address: str

    @property
    def first_name(self) -> str:
        return self.name.split()[0]

    def recipient(self) -> dict[str, Any]:
        return {"emailAddress": {"name": self.name, "address": self.address}}

    def header(self) -> str:
        """As in a From/To header: non-ASCII names as RFC 2047 encoded words."""
        return email.utils.formataddr((self.name, self.address), charset="utf-8")


@dataclass(frozen=True)
class Said:
    """The previous message of a thread, as much as a reply quotes of it."""

    author: Person
    to: tuple[Person, ...]
    sent: datetime.datetime
    subject: str | None
    text: str


@dataclass
class Thread:
    """A conversation in the making: who takes part and what has been said so far."""

    topic: Topic
    subject: str | None
    ref: str
    customer: Person
    support: Person
    agent: str
    conversation_id: str
    index: bytes
    started: datetime.datetime
    clock: datetime.datetime
    case: str | None = None
    cc: list[Person] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    said: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})
    last: Said | None = None

    @property
    def plain_text(self) -> bool:
        return self.case == "plain_text"


# Public API


def seed_mailbox(
    mailbox: Mailbox,
    *,
    threads: int,
    seed: int = 0,
    domain_pool: Sequence[str] = DEFAULT_DOMAINS,
    with_attachments: bool = True,
) -> list[str]:
    """Create `threads` support conversations of 1-6 messages; returns the new message ids in
    creation order. Seed a mailbox once per seed: `internetMessageId`s derive from it."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    cases = _edge_case_plan(rng, threads)
    created: list[str] = []
    for number in range(threads):
        clock = START + datetime.timedelta(minutes=number * 47 + rng.randint(0, 40))
        thread = _new_thread(mailbox, rng, domain_pool, clock, cases.get(number))
        length = max(_thread_length(rng), 2 if thread.case == "inline_image" else 1)
        for position in range(length):
            from_customer = position % 2 == 0
            created.append(_write(mailbox, rng, thread, from_customer, with_attachments))
    return created


def seed_bulk(
    mailbox: Mailbox, *, messages: int, folder: str = "inbox", seed: int = 0
) -> list[str]:
    """`messages` cheaper but Graph-shaped messages in one folder, in threads of 1-4, fast
    enough for 100,000 in a few seconds (benchmarks); returns their ids."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    items = _bulk_messages(rng, _support_person(mailbox), _people(DEFAULT_DOMAINS), messages)
    # Millions of small acyclic dicts: the cyclic collector would rescan them again and
    # again as they pile up, doubling the time, and has nothing to find.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return mailbox.add_messages(folder, items)
    finally:
        if collecting:
            gc.enable()


def mutate(mailbox: Mailbox, *, changes: int, seed: int = 0) -> dict[str, int]:
    """`changes` deterministic changes of the kinds in `MUTATION_WEIGHTS` (mark read or
    unread, flag, categorize, move, delete, a new thread, a reply in an existing thread);
    returns the count per kind. Moves go between Inbox, Archive, Sent Items and user folders
    (created under the Inbox when the mailbox has none)."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    mutator = _Mutator.of(mailbox, rng)
    actions: dict[str, Callable[[], None]] = {
        "read": mutator.mark_read,
        "unread": mutator.mark_unread,
        "flag": mutator.flag,
        "categorize": mutator.categorize,
        "move": mutator.move,
        "delete": mutator.delete,
        "new": mutator.new_thread,
        "reply": mutator.reply,
    }
    counts = dict.fromkeys(MUTATION_WEIGHTS, 0)
    for _ in range(changes):
        kind = rng.choices(list(MUTATION_WEIGHTS), list(MUTATION_WEIGHTS.values()))[0]
        kind = kind if mutator.ids else "new"
        mutator.clock += datetime.timedelta(seconds=rng.randint(20, 900))
        actions[kind]()
        counts[kind] += 1
    return counts


# Threads


def _edge_case_plan(rng: random.Random, threads: int) -> dict[int, str]:
    """Thread number -> its edge case (at most one each, so none hides another)."""
    chosen = rng.sample(range(threads), min(threads, len(EDGE_CASES)))
    plan = dict(zip(chosen, EDGE_CASES, strict=False))
    for number in range(threads):
        if number not in plan and rng.random() < EDGE_CASE_SHARE:
            plan[number] = rng.choice(EDGE_CASES)
    return plan


def _thread_length(rng: random.Random) -> int:
    return rng.choices([1, 2, 3, 4, 5, 6], [20, 30, 22, 14, 8, 6])[0]


def _support_person(mailbox: Mailbox) -> Person:
    local, _, domain = mailbox.address.partition("@")
    return Person(f"{domain.split('.')[0].title()} {local.title()}", mailbox.address)


def _people(domains: Sequence[str]) -> list[Person]:
    return [
        Person(f"{first} {last}", f"{local}@{domain}")
        for domain in domains
        for first, last, local in CUSTOMER_NAMES
    ]


def _new_thread(
    mailbox: Mailbox,
    rng: random.Random,
    domains: Sequence[str],
    clock: datetime.datetime,
    case: str | None,
) -> Thread:
    topic = CASE_TOPICS.get(case or "", rng.choice(TOPICS))
    first, last, local = CASE_CUSTOMERS.get(case or "", rng.choice(CUSTOMER_NAMES))
    name = f"{last} {first}" if topic.language == "ja-JP" else f"{first} {last}"
    customer = Person(name, f"{local}@{rng.choice(domains)}")
    ref = str(rng.randint(10000, 99999))
    thread = Thread(
        topic=topic,
        subject=None if topic.subject is None else topic.subject.format(ref=ref),
        ref=ref,
        customer=customer,
        support=_support_person(mailbox),
        agent=rng.choice(SUPPORT_AGENTS),
        conversation_id=_conversation_id(rng),
        index=_index_header(clock, rng),
        started=clock,
        clock=clock,
        case=case,
    )
    if rng.random() < 0.25:
        colleague = rng.choice(_people([customer.address.partition("@")[2]]))
        thread.cc = [colleague] if colleague.address != customer.address else []
    return thread


def _write(
    mailbox: Mailbox, rng: random.Random, thread: Thread, from_customer: bool, attachments: bool
) -> str:
    """The thread's next message, stored in the folder its direction puts it in."""
    first_reply = not from_customer and thread.said[False] == 0
    inline_cid = (
        _cid(rng) if attachments and thread.case == "inline_image" and first_reply else None
    )
    attach_file = (
        attachments
        and from_customer
        and (
            (thread.last is None and thread.case == "attachment")
            or rng.random() < RANDOM_ATTACHMENT_SHARE
        )
    )
    properties = _message(rng, thread, from_customer, inline_cid=inline_cid, mixed=attach_file)
    message_id = mailbox.add_message("inbox" if from_customer else "sentitems", **properties)
    if inline_cid:
        mailbox.add_attachment(
            message_id,
            name="image001.png",
            content=_png(rng),
            content_type="image/png",
            inline=True,
            content_id=inline_cid,
        )
    if attach_file:
        _attach_file(mailbox, rng, message_id)
    return message_id


def _attach_file(mailbox: Mailbox, rng: random.Random, message_id: str) -> None:
    if rng.random() < 0.6:
        name, content, kind = f"document-{rng.randint(100, 999)}.pdf", _pdf(rng), "application/pdf"
    else:
        name, content, kind = f"photo-{rng.randint(100, 999)}.png", _png(rng), "image/png"
    mailbox.add_attachment(message_id, name=name, content=content, content_type=kind)


# Messages


def _message(
    rng: random.Random,
    thread: Thread,
    from_customer: bool,
    *,
    inline_cid: str | None = None,
    mixed: bool = False,
) -> dict[str, Any]:
    """All the properties Graph returns for the thread's next message; advances the thread."""
    author = thread.customer if from_customer else thread.support
    to, cc = _addressees(thread, from_customer)
    sent = thread.clock = thread.clock + datetime.timedelta(minutes=rng.randint(5, 2880))
    received = sent + datetime.timedelta(seconds=rng.randint(2, 40) if from_customer else 0)
    if thread.last is not None:
        thread.index += _index_child(thread.started, sent, rng)
    paragraphs = _paragraphs(thread, from_customer)
    body, unique, preview = _bodies(thread, paragraphs, inline_cid)
    message_id = _internet_message_id(rng, author, from_customer)
    subject = _subject(thread)
    properties = {
        "subject": subject,
        "bodyPreview": preview,
        "body": body,
        **({"uniqueBody": unique} if thread.last is not None else {}),
        "from": author.recipient(),
        "sender": author.recipient(),
        "toRecipients": [p.recipient() for p in to],
        "ccRecipients": [p.recipient() for p in cc],
        "bccRecipients": [],
        "replyTo": [],
        "receivedDateTime": _iso(received),
        "sentDateTime": _iso(sent),
        "createdDateTime": _iso(received),
        "lastModifiedDateTime": _iso(received),
        "internetMessageId": message_id,
        "conversationId": thread.conversation_id,
        "conversationIndex": base64.b64encode(thread.index).decode(),
        "internetMessageHeaders": _headers(
            thread, author, to, cc, subject, message_id, sent, inline_cid=inline_cid, mixed=mixed
        ),
        **_triage(rng, thread, from_customer),
        "isDraft": False,
        "hasAttachments": False,
        "inferenceClassification": "focused",
    }
    thread.references.append(message_id)
    thread.said[from_customer] += 1
    thread.last = Said(author, tuple(to), sent, subject, "\n\n".join(paragraphs))
    return properties


def _addressees(thread: Thread, from_customer: bool) -> tuple[list[Person], list[Person]]:
    """To and Cc; the many-recipients case puts 500 addresses on the thread's first message."""
    if not from_customer:
        return [thread.customer], list(thread.cc)
    if thread.case == "many_recipients" and thread.last is None:
        domain = thread.customer.address.partition("@")[2]
        crowd = [Person(f"Team member {i}", f"member{i:03d}@{domain}") for i in range(1, 500)]
        half = MANY_RECIPIENTS // 2
        return [thread.support, *crowd[: half - 1]], crowd[half - 1 :]
    return [thread.support], list(thread.cc)


def _subject(thread: Thread) -> str | None:
    if thread.last is None:
        return thread.subject
    return REPLY_PREFIX.get(thread.topic.language, "RE: ") + (thread.subject or "")


def _paragraphs(thread: Thread, from_customer: bool) -> list[str]:
    """Greeting, what this side says next, signature; localized topics carry their own."""
    said = thread.said[from_customer]
    texts = thread.topic.customer if from_customer else thread.topic.support
    generic = GENERIC_CUSTOMER if from_customer else GENERIC_SUPPORT
    text = texts[said] if said < len(texts) else generic[(said - len(texts)) % len(generic)]
    text = text.format(ref=thread.ref, first=thread.customer.first_name)
    signer = thread.customer.name if from_customer else thread.agent
    if thread.topic.language != "en-US":
        return [text, signer]
    greeting = "Hello," if from_customer else f"Hello {thread.customer.first_name},"
    company = thread.customer.address.partition("@")[2] if from_customer else thread.support.name
    return [greeting, text, f"Best regards,\n{signer}\n{company}"]


def _bodies(
    thread: Thread, paragraphs: list[str], inline_cid: str | None
) -> tuple[dict[str, str], dict[str, str], str]:
    """`body` (with the quoted previous message), `uniqueBody` (without) and `bodyPreview`."""
    quote_text = _quote_text(thread.last) if thread.last else ""
    preview = " ".join(("\n".join(paragraphs) + quote_text).split())[:255]
    if thread.plain_text:
        text = "\r\n\r\n".join(paragraphs).replace("\n", "\r\n")
        return (
            {"contentType": "text", "content": text + quote_text.replace("\n", "\r\n")},
            {"contentType": "text", "content": text},
            preview,
        )
    direction = "rtl" if thread.topic.rtl else "ltr"
    new = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
    if inline_cid:
        new += f'<p><img src="cid:{inline_cid}" alt="screenshot" width="320" height="200"></p>'
    quote = _quote_html(thread.last) if thread.last else ""
    return (
        {
            "contentType": "html",
            "content": _html_document(f'<div dir="{direction}">{new}</div>{quote}'),
        },
        {"contentType": "html", "content": _html_document(f'<div dir="{direction}">{new}</div>')},
        preview,
    )


def _html_document(inner: str) -> str:
    return (
        '<html><head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\r\n'
        f"</head>\r\n<body>\r\n{inner}\r\n</body>\r\n</html>\r\n"
    )


def _quote_text(last: Said) -> str:
    return (
        f"\n\n________________________________\nFrom: {last.author.name} <{last.author.address}>"
        f"\nSent: {_outlook_date(last.sent)}\nTo: {'; '.join(p.name for p in last.to[:5])}"
        f"\nSubject: {last.subject or ''}\n\n{last.text}"
    )


def _quote_html(last: Said) -> str:
    def escape(value: str) -> str:
        return html.escape(value).replace("\n", "<br>")

    return (
        '<hr style="display:inline-block;width:98%" tabindex="-1"><div id="divRplyFwdMsg" '
        'dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt" color="#000000">'
        f"<b>From:</b> {escape(last.author.name)} &lt;{last.author.address}&gt;<br>"
        f"<b>Sent:</b> {_outlook_date(last.sent)}<br>"
        f"<b>To:</b> {escape('; '.join(p.name for p in last.to[:5]))}<br>"
        f"<b>Subject:</b> {escape(last.subject or '')}</font><div>&nbsp;</div></div>"
        f"<div>{escape(last.text)}</div>"
    )


def _headers(
    thread: Thread,
    author: Person,
    to: list[Person],
    cc: list[Person],
    subject: str | None,
    message_id: str,
    sent: datetime.datetime,
    *,
    inline_cid: str | None,
    mixed: bool,
) -> list[dict[str, str]]:
    """The internet headers a `$select=internetMessageHeaders` returns, threading included."""
    received = f"from {_host(author)} by {_host(thread.support)} with HTTPS; {_rfc_date(sent)}"
    headers = [
        # Only mail that arrived has a Received header; Sent Items copies have none.
        *([("Received", received)] if author != thread.support else []),
        ("From", author.header()),
        ("To", ", ".join(p.header() for p in to)),
        *([("CC", ", ".join(p.header() for p in cc))] if cc else []),
        ("Subject", _encoded(subject or "")),
        ("Thread-Topic", _encoded(thread.subject or "")),
        ("Thread-Index", base64.b64encode(thread.index).decode()),
        ("Date", _rfc_date(sent)),
        ("Message-ID", message_id),
    ]
    if thread.references:
        headers += [
            ("In-Reply-To", thread.references[-1]),
            ("References", " ".join(thread.references)),
        ]
    headers += [
        ("Content-Language", thread.topic.language),
        (
            "Content-Type",
            _content_type(thread.plain_text, message_id, inline=bool(inline_cid), mixed=mixed),
        ),
        ("MIME-Version", "1.0"),
    ]
    return [{"name": name, "value": value} for name, value in headers]


def _content_type(plain_text: bool, message_id: str, *, inline: bool, mixed: bool) -> str:
    boundary = f'boundary="_000_{zlib.crc32(message_id.encode()):08x}_"'
    if mixed:
        return f"multipart/mixed; {boundary}"
    if inline:
        return f'multipart/related; {boundary}; type="multipart/alternative"'
    return 'text/plain; charset="utf-8"' if plain_text else f"multipart/alternative; {boundary}"


def _encoded(value: str) -> str:
    """Header text as it travels: non-ASCII as an RFC 2047 encoded word."""
    if value.isascii():
        return value
    return f"=?utf-8?B?{base64.b64encode(value.encode()).decode()}?="


def _triage(rng: random.Random, thread: Thread, from_customer: bool) -> dict[str, Any]:
    """What people do to a message: read it, flag it, categorize it; what it claims."""
    urgent = thread.topic.subject is not None and thread.topic.subject.startswith("Urgent")
    importance = "high" if urgent else rng.choices(["normal", "high", "low"], [90, 6, 4])[0]
    if not from_customer:
        return {
            "importance": importance,
            "isRead": True,
            "flag": {"flagStatus": "notFlagged"},
            "categories": [],
        }
    flag = rng.choices(["notFlagged", "flagged", "complete"], [85, 10, 5])[0]
    categories = sorted(rng.sample(CATEGORIES, rng.choice([0, 0, 0, 1, 1, 2])))
    return {
        "importance": importance,
        "isRead": rng.random() < 0.75,
        "flag": {"flagStatus": flag},
        "categories": categories,
    }


# Identifiers and encodings


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc_date(moment: datetime.datetime) -> str:
    return email.utils.format_datetime(moment)


def _outlook_date(moment: datetime.datetime) -> str:
    return moment.strftime("%A, %B %d, %Y %I:%M %p").replace(" 0", " ")


def _host(person: Person) -> str:
    domain = person.address.partition("@")[2]
    return f"mail.{domain}" if not domain.startswith("contoso") else "EXO.prod.outlook.com"


def _internet_message_id(rng: random.Random, author: Person, from_customer: bool) -> str:
    token = f"{rng.getrandbits(80):020x}"
    if from_customer:
        return f"<{token}@{_host(author)}>"
    return f"<AM0PR03MB{token.upper()}@AM0PR03MB{token[:4].upper()}.eurprd03.prod.outlook.com>"


def _conversation_id(rng: random.Random) -> str:
    return "AAQkAD" + base64.b64encode(rng.randbytes(30)).decode()


def _filetime(moment: datetime.datetime) -> int:
    return (moment - FILETIME_EPOCH) // datetime.timedelta(microseconds=1) * 10


def _index_header(moment: datetime.datetime, rng: random.Random) -> bytes:
    """Outlook's Thread-Index header block: a reserved byte, 5 bytes of time, a GUID."""
    return b"\x01" + struct.pack(">Q", _filetime(moment))[:5] + rng.randbytes(16)


def _index_child(
    started: datetime.datetime, moment: datetime.datetime, rng: random.Random
) -> bytes:
    """A reply's 5-byte block: the time since the thread began, then random bits."""
    delta = max(0, _filetime(moment) - _filetime(started))
    coarse = delta >= 1 << 49
    value = (delta >> (23 if coarse else 18)) & 0x7FFFFFFF
    return struct.pack(">I", (int(coarse) << 31) | value) + bytes([rng.getrandbits(8)])


def _cid(rng: random.Random) -> str:
    return f"image001.png@01DB{rng.getrandbits(48):012X}"


def _pdf(rng: random.Random) -> bytes:
    """A small valid one-page PDF."""
    note = f"% graphsim {rng.getrandbits(64):016x}\n".encode()
    return (
        b"%PDF-1.4\n" + note + b"1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        b"3 0 obj<</Type/Page/MediaBox[0 0 595 842]/Parent 2 0 R>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


def _png(rng: random.Random, size: int = 8) -> bytes:
    """A small valid PNG of one random colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    colour = rng.randbytes(3)
    rows = b"".join(b"\x00" + colour * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# Bulk


@dataclass
class _BulkThread:
    """One bulk conversation; what its messages share is built once and shared (bulk
    messages share nested values: replace them, never change them in place)."""

    sides: tuple[dict[str, Any], dict[str, Any]]
    hosts: tuple[str, str]
    subject: str
    bodies: tuple[dict[str, str], dict[str, str]]
    previews: tuple[str, str]
    conversation: str
    references: list[str] = field(default_factory=list)


def _bulk_messages(
    rng: random.Random, support: Person, people: list[Person], count: int
) -> Iterator[dict[str, Any]]:
    """Threads of 1-4 messages alternating customer and support, all in one folder."""
    sides = {person: (person.recipient(), _host(person)) for person in [support, *people]}
    moment = int(START.timestamp())
    made = 0
    while made < count:
        customer = people[rng.randrange(len(people))]
        thread = _bulk_thread(rng, sides[customer], sides[support])
        for position in range(min(count - made, 1 + rng.getrandbits(2))):
            bits = rng.getrandbits(32)
            moment += 60 + bits % 3600
            yield _bulk_message(thread, position % 2, bits, time.gmtime(moment), made)
            made += 1


# Per topic: subject, then customer and support text, each plain and as an HTML body.
_BULK_TEMPLATES = [
    (
        topic.subject or "",
        *[
            (text, f"<html><body><p>{html.escape(text)}</p></body></html>")
            for text in (topic.customer[0], topic.support[0])
        ],
    )
    for topic in TOPICS
]


def _bulk_thread(
    rng: random.Random, customer: tuple[dict[str, Any], str], support: tuple[dict[str, Any], str]
) -> _BulkThread:
    subject, *texts = _BULK_TEMPLATES[rng.randrange(len(_BULK_TEMPLATES))]
    ref = str(rng.randint(10000, 99999))
    return _BulkThread(
        sides=(customer[0], support[0]),
        hosts=(customer[1], support[1]),
        subject=subject.format(ref=ref),
        bodies=tuple({"contentType": "html", "content": body.format(ref=ref)} for _, body in texts),
        previews=tuple(text.format(ref=ref) for text, _ in texts),
        conversation=f"AAQkADbulk{rng.getrandbits(64):016x}",
    )


def _bulk_message(
    thread: _BulkThread, side: int, bits: int, moment: time.struct_time, number: int
) -> dict[str, Any]:
    """Message `number`, written by `side` (0 customer, 1 support); `bits` decide the rest."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)
    message_id = f"<bulk.{number:08d}.{bits:08x}@{thread.hosts[side]}>"
    headers = [
        {"name": "Message-ID", "value": message_id},
        {"name": "Date", "value": time.strftime("%a, %d %b %Y %H:%M:%S +0000", moment)},
        {"name": "Content-Type", "value": "multipart/alternative"},
    ]
    if thread.references:
        headers.append({"name": "In-Reply-To", "value": thread.references[-1]})
        headers.append({"name": "References", "value": " ".join(thread.references)})
    thread.references.append(message_id)
    author = thread.sides[side]
    return {
        "subject": ("RE: " if len(thread.references) > 1 else "") + thread.subject,
        "bodyPreview": thread.previews[side][:255],
        "body": thread.bodies[side],
        "from": author,
        "sender": author,
        "toRecipients": [thread.sides[1 - side]],
        "ccRecipients": [],
        "bccRecipients": [],
        "replyTo": [],
        "receivedDateTime": stamp,
        "sentDateTime": stamp,
        "createdDateTime": stamp,
        "lastModifiedDateTime": stamp,
        "internetMessageId": message_id,
        "conversationId": thread.conversation,
        "conversationIndex": base64.b64encode(bits.to_bytes(22, "big")).decode(),
        "internetMessageHeaders": headers,
        "importance": "high" if bits & 0xF0 == 0xF0 else "normal",
        "isRead": bool(bits & 3),
        "isDraft": False,
        "flag": {"flagStatus": "flagged" if bits & 0x1F00 == 0x1F00 else "notFlagged"},
        "categories": [CATEGORIES[bits >> 24 & 3]] if bits & 0x30000 == 0x30000 else [],
        "hasAttachments": False,
        "inferenceClassification": "focused",
    }


# Mutations


@dataclass
class _Mutator:
    """A mailbox being worked in: the messages to pick from and the conversations."""

    mailbox: Mailbox
    rng: random.Random
    ids: list[str]
    clock: datetime.datetime
    conversations: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, mailbox: Mailbox, rng: random.Random) -> _Mutator:
        with mailbox.lock:
            ids = list(mailbox.messages)
            latest = max(
                (_parse_iso(m.get("lastModifiedDateTime")) for m in mailbox.messages.values()),
                default=START,
            )
        mutator = cls(mailbox, rng, ids, max(latest, START))
        for message_id in ids:
            mutator._remember(message_id)
        return mutator

    def _remember(self, message_id: str) -> None:
        message = self.mailbox.messages[message_id]
        self.conversations.setdefault(message.get("conversationId") or message_id, []).append(
            message_id
        )

    def _pick(self) -> str:
        return self.ids[self.rng.randrange(len(self.ids))]

    def _touch(self, **properties: Any) -> None:
        self.mailbox.update_message(
            self._pick(), **properties, lastModifiedDateTime=_iso(self.clock)
        )

    def mark_read(self) -> None:
        self._touch(isRead=True)

    def mark_unread(self) -> None:
        self._touch(isRead=False)

    def flag(self) -> None:
        status = self.rng.choice(["flagged", "complete", "notFlagged"])
        self._touch(flag={"flagStatus": status})

    def categorize(self) -> None:
        self._touch(categories=sorted(self.rng.sample(CATEGORIES, self.rng.randint(0, 2))))

    def move(self) -> None:
        message_id = self._pick()
        current = self.mailbox.location[message_id]
        targets = [self.mailbox.folder(key).id for key in MOVE_TARGETS] + self._user_folders()
        self.mailbox.move_message(message_id, self.rng.choice([t for t in targets if t != current]))

    def delete(self) -> None:
        index = self.rng.randrange(len(self.ids))
        self.ids[index], self.ids[-1] = self.ids[-1], self.ids[index]
        self.mailbox.delete_message(self.ids.pop())

    def new_thread(self) -> None:
        thread = _new_thread(self.mailbox, self.rng, DEFAULT_DOMAINS, self.clock, None)
        self._add(_write(self.mailbox, self.rng, thread, True, attachments=False))

    def reply(self) -> None:
        """The other side answers the latest message of a picked message's conversation."""
        picked = self.mailbox.messages[self._pick()]
        conversation = [
            m
            for m in self.conversations[picked.get("conversationId") or picked["id"]]
            if m in self.mailbox.messages
        ]
        last = self.mailbox.messages[conversation[-1]]
        thread = _thread_of(
            self.mailbox,
            last,
            [self.mailbox.messages[m] for m in conversation],
            self.clock,
            self.rng,
        )
        from_customer = _address(last.get("from")) == self.mailbox.address.lower()
        self._add(_write(self.mailbox, self.rng, thread, from_customer, attachments=False))

    def _add(self, message_id: str) -> None:
        self.ids.append(message_id)
        self._remember(message_id)

    def _user_folders(self) -> list[str]:
        folders = [
            f.id
            for f in self.mailbox.folders.values()
            if f.well_known is None and f.parent_id is not None
        ]
        if not folders:
            inbox = self.mailbox.folder("inbox").id
            folders = [self.mailbox.add_folder(n, parent_id=inbox).id for n in USER_FOLDERS]
        return folders


def _thread_of(
    mailbox: Mailbox,
    last: dict[str, Any],
    messages: list[dict[str, Any]],
    clock: datetime.datetime,
    rng: random.Random,
) -> Thread:
    """A thread rebuilt from stored messages, so a reply continues it (headers, index)."""
    support = _support_person(mailbox)
    customer = (
        next(
            (
                _person(m.get("from"))
                for m in messages
                if _address(m.get("from")) != support.address.lower()
            ),
            None,
        )
        or _person((last.get("toRecipients") or [{}])[0])
        or _people(DEFAULT_DOMAINS)[0]
    )
    subject = re.sub(r"^((RE|AW): )+", "", last.get("subject") or "")
    started = _parse_iso(messages[0].get("sentDateTime"))
    index = base64.b64decode(last.get("conversationIndex") or "") or _index_header(started, rng)
    references = [m["internetMessageId"] for m in messages if m.get("internetMessageId")]
    last_author = _person(last.get("from")) or customer
    text = (last.get("bodyPreview") or "").split("________________________________")[0].strip()
    return Thread(
        topic=Topic(subject, (), ()),
        subject=subject,
        ref="",
        customer=customer,
        support=support,
        agent=SUPPORT_AGENTS[len(messages) % len(SUPPORT_AGENTS)],
        conversation_id=last.get("conversationId") or _conversation_id(rng),
        index=index,
        started=started,
        clock=max(clock, _parse_iso(last.get("sentDateTime"))),
        case="plain_text" if (last.get("body") or {}).get("contentType") == "text" else None,
        references=references,
        said={True: 1, False: 1},
        last=Said(last_author, (), _parse_iso(last.get("sentDateTime")), last.get("subject"), text),
    )


def _address(recipient: Any) -> str:
    return ((recipient or {}).get("emailAddress") or {}).get("address", "").lower()


def _person(recipient: Any) -> Person | None:
    email_address = (recipient or {}).get("emailAddress") or {}
    if not email_address.get("address"):
        return None
    return Person(email_address.get("name") or email_address["address"], email_address["address"])


def _parse_iso(value: Any) -> datetime.datetime:
    if not isinstance(value, str):
        return START
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return START
