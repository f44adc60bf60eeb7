"""MIME as it arrives at the SMTP listener: real-world shapes, and random or malformed input
that must never stop a message from being stored."""

from __future__ import annotations

import base64
import json
import os
import resource
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsync import mime
from mailsync.mime import ParsedMessage, parse_message
from tests.mailsync import mime_samples as samples

ONE_LINE_FIELDS = ("subject", "from_name", "from_address", "sender_address", "message_id",
                   "in_reply_to", "references", "bounce_of_message_id")  # fmt: skip


def assert_storable(parsed: ParsedMessage) -> None:
    """What PostgreSQL and the Message columns accept: UTF-8 text without NUL, one-line fields
    without CR/LF, lengths within the columns, JSON that serialises."""
    fields = parsed.message_fields()
    for name, value in fields.items():
        if isinstance(value, str):
            assert "\x00" not in value, name
            value.encode("utf-8")  # no lone surrogates
    for name in ONE_LINE_FIELDS:
        value = getattr(parsed, name)
        assert not {"\r", "\n"} & set(value), (name, value)
    for name in ("to", "cc", "bcc", "reply_to"):
        for address in fields[name]:
            assert set(address) == {"name", "address"}
            assert len(address["address"]) <= 320
            assert len(address["name"]) <= 320
            assert address["address"] == address["address"].lower()
            assert not any(c in address["address"] + address["name"] for c in "\r\n\x00")
    assert len(parsed.from_address) <= 320
    assert len(parsed.message_id) <= 998
    for name, value in fields["headers"].items():
        assert name == name.lower()
        assert "\n" not in value
        assert "\r" not in value
    json.dumps([fields[k] for k in ("to", "cc", "bcc", "reply_to", "headers", "parse_problems")])
    for attachment in parsed.attachments:
        assert isinstance(attachment.content, bytes)
        assert len(attachment.name) <= 255
        assert len(attachment.content_type) <= 255
        assert "\x00" not in attachment.name + attachment.content_type + attachment.content_id
    assert isinstance(parsed.problems, list)
    assert len(parsed.problems) <= 50


# --- real-world shapes -------------------------------------------------------------------------


def test_plain_text_message_fills_the_columns_graph_sync_fills():
    parsed = parse_message(samples.plain())

    fields = parsed.message_fields()
    assert fields["subject"] == "Invoice 1043 is wrong"
    assert (fields["from_name"], fields["from_address"]) == (
        "Anna Berg",
        "anna.berg@nordwind.example",
    )
    assert fields["sender_address"] == "anna.berg@nordwind.example"
    assert fields["to"] == [{"name": "Support", "address": "help@crm.example"}]
    assert fields["body_text"] == "Hello,\r\nthe invoice lists two licences.\r\n"
    assert fields["preview"] == "Hello, the invoice lists two licences."
    assert fields["internet_message_id"] == "<q1@nordwind.example>"
    assert fields["sent_at"] == datetime(2026, 11, 23, 7, 15, tzinfo=UTC)
    assert fields["headers_fetched"] is True
    assert fields["conversation_id"] == ""
    assert fields["has_attachments"] is False
    assert fields["parse_problems"] == []
    assert fields["headers"]["content-type"] == "text/plain; charset=utf-8"


def test_multipart_alternative_gives_both_bodies_addresses_threading_and_kept_headers():
    parsed = parse_message(samples.ALTERNATIVE)

    assert parsed.body_text == "Hello,\nthe invoice lists two licences – we have one."
    assert "<p>the invoice lists two licences – we have one.</p>" in parsed.body_html
    assert (parsed.from_name, parsed.from_address) == ("Berg, Anna", "anna.berg@nordwind.example")
    assert parsed.sender_address == "mailer@nordwind.example"
    assert parsed.to == [
        {"name": "", "address": "help@crm.example"},
        {"name": "Jon Ek", "address": "jon@nordwind.example"},
    ]
    assert parsed.cc == [{"name": "Jörg Müller", "address": "jorg@nordwind.example"}]
    assert parsed.reply_to == [{"name": "", "address": "tickets@nordwind.example"}]
    assert parsed.in_reply_to == "<ours1@crm.example>"
    assert parsed.references == "<first@nordwind.example> <ours1@crm.example>"
    assert parsed.importance == "high"
    assert parsed.headers["auto-submitted"] == "no"
    assert parsed.headers["references"] == "<first@nordwind.example> <ours1@crm.example>"
    assert "x-mailer" not in parsed.headers
    assert parsed.attachments == []
    assert parsed.problems == []


def test_multipart_mixed_attachment_keeps_name_type_and_bytes():
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 10

    parsed = parse_message(samples.mixed_with_pdf(pdf))

    assert parsed.body_text.startswith("See the attached invoice.")
    [attachment] = parsed.attachments
    assert (attachment.name, attachment.content_type) == ("invoice 1043.pdf", "application/pdf")
    assert attachment.content == pdf
    assert attachment.size == len(pdf)
    assert attachment.is_inline is False
    assert parsed.has_attachments is True


def test_inline_image_of_an_html_body_is_inline_with_its_content_id():
    parsed = parse_message(samples.RELATED_INLINE_IMAGE)

    assert 'src="cid:shot1@nordwind.example"' in parsed.body_html
    assert parsed.body_text == "The error:"  # derived from the HTML
    [image] = parsed.attachments
    assert (image.name, image.content_type, image.content) == ("image001.png", "image/png",
                                                                samples.PNG)  # fmt: skip
    assert image.is_inline is True
    assert image.content_id == "shot1@nordwind.example"
    assert parsed.has_attachments is False  # as Graph counts them


def test_iso_8859_1_headers_and_body_are_decoded():
    parsed = parse_message(samples.LATIN_1)

    assert parsed.subject == "Grüße aus München"
    assert parsed.from_name == "Jörg Müller"
    assert parsed.body_text.startswith("Grüße aus München, die Rechnung ist falsch.")
    assert parsed.problems == []


def test_shift_jis_and_iso_2022_jp_are_decoded():
    parsed = parse_message(samples.SHIFT_JIS)

    assert parsed.subject == samples.SHIFT_JIS_SUBJECT
    assert parsed.from_name == "山田"
    assert parsed.body_text.strip() == samples.SHIFT_JIS_BODY


def test_unknown_and_lying_charsets_decode_with_replacement_and_are_recorded():
    parsed = parse_message(samples.BROKEN_CHARSETS)

    assert parsed.body_text.strip() == "café ok"  # unknown charset: read as UTF-8
    assert parsed.body_html == "<p>invalid \ufffd\ufffd bytes</p>"
    assert any("x-no-such-charset" in p for p in parsed.problems)
    assert any("bytes invalid in utf-8" in p for p in parsed.problems)
    assert_storable(parsed)


def test_rfc_2047_subjects_in_every_usual_form():
    cases = {
        "=?UTF-8?B?w4RyZ2VyIG1pdCBkZXIgUmVjaG51bmc=?=": "Ärger mit der Rechnung",
        "=?utf-8?q?caf=C3=A9_au_lait?=": "café au lait",
        "Re: =?utf-8?q?Gr=C3=BC=C3=9Fe?= =?utf-8?q?_aus_Wien?=": "Re: Grüße aus Wien",
        "=?windows-1252?Q?=93quoted=94?= plain": "“quoted” plain",
        "=?utf-8?q?broken": "=?utf-8?q?broken",
    }
    for encoded, decoded in cases.items():
        assert parse_message(samples.plain(subject=encoded)).subject == decoded, encoded


def test_raw_utf8_in_headers_is_read_as_utf8():
    parsed = parse_message(samples.plain(subject="Grüße ✓", sender="Jörg <jorg@x.example>"))

    assert (parsed.subject, parsed.from_name) == ("Grüße ✓", "Jörg")


def test_header_injection_through_encoded_words_is_neutralised():
    message = samples.plain(
        subject="=?utf-8?q?Hello=0D=0ABcc:_victim@x.example?=",
        sender="=?utf-8?q?Eve=0D=0ATo:_x@y.example?= <eve@evil.example>",
        extra="In-Reply-To: =?utf-8?q?=0D=0AX-Injected:_1?=\n",
    )

    parsed = parse_message(message)

    assert parsed.subject == "Hello Bcc: victim@x.example"
    assert parsed.from_address == "eve@evil.example"
    assert "\n" not in parsed.from_name
    assert "\r" not in parsed.from_name
    assert_storable(parsed)


def test_a_malformed_address_header_is_kept_raw_and_recorded():
    parsed = parse_message(samples.plain(to='"unterminated <help@crm.example>, @@@, <x@y.example'))

    assert_storable(parsed)
    assert parsed.to  # something, not an exception
    assert parsed.problems


def test_delivery_status_notification_is_a_bounce_of_our_message():
    parsed = parse_message(samples.bounce())

    assert parsed.is_bounce is True
    assert parsed.bounce_of_message_id == "<case42.reply@crm.example>"
    assert parsed.bounced_recipients == ["gone@nordwind.example"]
    assert parsed.body_text.startswith("I'm sorry to have to inform you")
    assert [a.content_type for a in parsed.attachments] == ["message/delivery-status",
                                                            "message/rfc822"]  # fmt: skip
    assert b"Message-ID: <case42.reply@crm.example>" in parsed.attachments[1].content
    assert parsed.headers["auto-submitted"] == "auto-replied"
    fields = parsed.message_fields()
    assert (fields["is_bounce"], fields["bounce_of_message_id"]) == (
        True, "<case42.reply@crm.example>")  # fmt: skip


def test_bounce_returning_only_the_headers():
    parsed = parse_message(samples.bounce(returned="text/rfc822-headers"))

    assert parsed.is_bounce
    assert parsed.bounce_of_message_id == "<case42.reply@crm.example>"


def test_an_attached_message_is_one_attachment_not_a_body():
    forwarded = samples.raw(
        """
From: jon@nordwind.example
To: help@crm.example
Subject: Fwd: the original
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="fw"

--fw
Content-Type: text/plain

See below.
--fw
Content-Type: message/rfc822

From: anna@nordwind.example
Subject: the original
Content-Type: text/html

<p>inner body</p>
--fw--
"""
    )

    parsed = parse_message(forwarded)

    assert parsed.body_text.strip() == "See below."
    assert parsed.body_html == ""
    [attached] = parsed.attachments
    assert (attached.name, attached.content_type) == ("the original.eml", "message/rfc822")
    assert parsed.is_bounce is False


def test_rfc_2231_and_encoded_file_names():
    message = samples.raw(
        """
From: a@b.example
To: help@crm.example
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="x"

--x
Content-Type: application/octet-stream
Content-Disposition: attachment; filename*=utf-8''%E2%82%AC%20invoice.pdf

one
--x
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="=?utf-8?q?R=C3=A9sum=C3=A9.docx?="

two
--x
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="../../etc/passwd"

three
--x--
"""
    )

    names = [a.name for a in parse_message(message).attachments]

    assert names == ["€ invoice.pdf", "Résumé.docx", "../../etc/passwd"]  # shown, never a path


def test_a_thousand_recipients():
    parsed = parse_message(samples.many_recipients(1_000))

    assert len(parsed.to) == 1_000
    assert parsed.to[999] == {"name": "Customer 999", "address": "customer999@nordwind.example"}


def test_date_without_zone_is_utc_and_an_invalid_date_is_ignored():
    utc = parse_message(samples.plain(extra="")).sent_at
    assert utc.utcoffset() == timedelta(hours=1)
    assert utc.tzinfo is not None
    minus = parse_message(samples.raw("Date: Mon, 23 Nov 2026 08:15:00 -0000\n\nx\n")).sent_at
    assert minus == datetime(2026, 11, 23, 8, 15, tzinfo=UTC)
    odd = parse_message(samples.raw("Date: Monday the 32nd\n\nx\n"))
    assert odd.sent_at is None
    assert odd.problems
    east = parse_message(samples.raw("Date: Mon, 23 Nov 2026 08:15:00 +0900\n\nx\n")).sent_at
    assert east.utcoffset() == timezone(timedelta(hours=9)).utcoffset(None)


def test_degenerate_input_still_gives_a_message():
    for data in (b"", b"\r\n", b"no headers at all, just text", b"\x00\xff\xfe" * 100,
                 b"Subject: only a header"):  # fmt: skip
        assert_storable(parse_message(data))


def test_fifty_megabyte_attachment_parses_in_bounded_memory():
    content = os.urandom(50 * 1024 * 1024)
    encoded = base64.encodebytes(content)
    message = (
        samples.raw(
            """
From: a@b.example
To: help@crm.example
Subject: big
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="big"

--big
Content-Type: text/plain

The logs.
--big
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="logs.tar"
Content-Transfer-Encoding: base64

"""
        )
        + encoded.replace(b"\n", b"\r\n")
        + b"\r\n--big--\r\n"
    )
    del encoded
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    parsed = parse_message(message)

    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    [attachment] = parsed.attachments
    assert attachment.size == len(content)
    assert attachment.content == content
    assert parsed.body_text.strip() == "The logs."
    # The raw message is 70 MB; parsing holds a few copies of it at most, never dozens.
    assert grown_mb < 400, f"parsing grew the process by {grown_mb:.0f} MB"


# --- random and malformed input ----------------------------------------------------------------

HEADER_NAMES = ["From", "To", "Cc", "Bcc", "Reply-To", "Sender", "Subject", "Date", "Message-ID",
                "In-Reply-To", "References", "Content-Type", "Content-Transfer-Encoding",
                "Content-Disposition", "Content-ID", "Auto-Submitted", "X-Priority"]  # fmt: skip
NASTY = ["", "<", ">", "\"", "@", ",", ";", ":", "=?", "?=", "=?utf-8?q?", "=?x?b?", "=0D=0A",
         "\r\n", "\n", "\r", "\x00", " ", "\t", "(", ")", "\\", "[", "]", "é", "\udcff",
         "multipart/mixed; boundary=", "text/plain; charset=", "base64", "quoted-printable",
         "a@b.example", "<x@y>", "\xff", "utf-8", "x-unknown", "shift_jis", "'", "*"]  # fmt: skip

header_values = st.lists(st.sampled_from(NASTY) | st.text(max_size=20), max_size=12).map("".join)
headers = st.lists(st.tuples(st.sampled_from(HEADER_NAMES) | st.text(max_size=10), header_values),
                   max_size=12)  # fmt: skip


@st.composite
def mime_trees(draw, depth: int = 0) -> bytes:
    """Multipart trees with random types, charsets, encodings and damage."""
    boundary = draw(st.sampled_from(["b", "==x==", "", "a b", '"q"']))
    if depth < 3 and draw(st.booleans()):
        kind = draw(st.sampled_from(["mixed", "alternative", "related", "report", "digest"]))
        children = draw(st.lists(mime_trees(depth + 1), max_size=4))
        body = b"".join(b"--" + boundary.encode() + b"\r\n" + child + b"\r\n" for child in children)
        if draw(st.booleans()):
            body += b"--" + boundary.encode() + b"--\r\n"
        ctype = f'multipart/{kind}; boundary="{boundary}"; report-type=delivery-status'
        return f"Content-Type: {ctype}\r\n\r\n".encode() + body
    ctype = draw(st.sampled_from(["text/plain", "text/html", "image/png", "message/rfc822",
                                  "message/delivery-status", "text/rfc822-headers",
                                  "application/pdf", "garbage"]))  # fmt: skip
    charset = draw(st.sampled_from(["utf-8", "latin-1", "shift_jis", "x-nope", "base64", "rot13",
                                    "utf-16", "", "unicode_escape", "idna"]))  # fmt: skip
    encoding = draw(st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-uue", ""]))
    extra = draw(headers)
    head = f"Content-Type: {ctype}; charset={charset}\r\nContent-Transfer-Encoding: {encoding}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in extra)
    payload = draw(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
    return head.encode("utf-8", "surrogateescape") + b"\r\n" + payload


@st.composite
def messages(draw) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in draw(headers))
    data = head.encode("utf-8", "surrogateescape") + draw(mime_trees())
    if draw(st.booleans()):  # damage: cut it short, or splice bytes in
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(max_size=20)) + data[cut + 1 :]
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_random_mime_never_raises_and_is_always_storable(data):
    assert_storable(parse_message(data))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2_000))
def test_random_bytes_never_raise(data):
    assert_storable(parse_message(data))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["From", "To", "Cc", "Reply-To", "Sender", "Subject", "Date",
                        "Message-ID"]), header_values)  # fmt: skip
def test_any_single_header_value_is_survived(name, value):
    data = f"{name}: {value}\r\nTo: help@crm.example\r\n\r\nbody\r\n"
    assert_storable(parse_message(data.encode("utf-8", "surrogateescape")))


# --- hostile input: cut and recorded, never a parse that takes minutes -------------------------


def test_header_lines_beyond_a_megabyte_are_dropped_and_the_body_kept():
    data = b"From: a@b.example\r\n" + b"X-Filler: y\r\n" * 200_000 + b"\r\nthe body\r\n"

    parsed = parse_message(data)

    assert parsed.from_address == "a@b.example"
    assert parsed.body_text == "the body\r\n"
    assert any("headers longer than" in p for p in parsed.problems)


def test_a_message_of_countless_parts_is_kept_as_text():
    part = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + part * 20_000 + b"--b--\r\n"

    parsed = parse_message(data)

    assert parsed.attachments == []
    assert parsed.body_text.startswith("--b")
    assert any("boundary lines" in p for p in parsed.problems)


def test_a_long_address_list_is_read_address_by_address():
    hostile = '"a' * 3_000  # the modern parser is quadratic on this; it is cut up instead
    to = ", ".join([*(f"c{n}@nordwind.example" for n in range(2_000)), hostile])

    parsed = parse_message(samples.plain(to=to))

    assert len(parsed.to) >= 2_000
    assert parsed.to[1_999] == {"name": "", "address": "c1999@nordwind.example"}


def test_html_with_unclosed_invisible_elements_keeps_its_text():
    data = (
        samples.raw(
            """
Content-Type: text/html

<style>p {}</style><p>kept</p><script>
"""
        )
        + b"<style" * 10_000
    )

    parsed = parse_message(data)

    assert parsed.body_text.startswith("kept")


@pytest.mark.parametrize("charset", ["unicode-escape", "raw_unicode_escape", "idna", "rot13"])
def test_python_codecs_that_are_no_charsets_are_refused_as_unknown(charset):
    problems: list[str] = []

    class Problems:
        def add(self, text: str) -> None:
            problems.append(text)

    text = mime.decode_bytes(b"caf\\xc3\\xa9 \\u00e9", charset, Problems(), "body")

    assert text == "caf\\xc3\\xa9 \\u00e9"
    assert problems == [f"body: unknown charset {charset!r}, read as UTF-8"]
