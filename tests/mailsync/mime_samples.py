"""Messages as real mail programs and servers write them, byte for byte, for the MIME and
local delivery tests."""

from __future__ import annotations

import base64

CRLF = "\r\n"


def raw(text: str, encoding: str = "utf-8") -> bytes:
    """A message written with LF for readability, sent with CRLF as SMTP does."""
    return text.lstrip("\n").replace("\r\n", "\n").replace("\n", CRLF).encode(encoding)


def plain(
    *,
    subject: str = "Invoice 1043 is wrong",
    sender: str = "Anna Berg <anna.berg@nordwind.example>",
    to: str = "Support <help@crm.example>",
    body: str = "Hello,\nthe invoice lists two licences.\n",
    message_id: str = "<q1@nordwind.example>",
    extra: str = "",
) -> bytes:
    return raw(
        f"""
From: {sender}
To: {to}
Subject: {subject}
Date: Mon, 23 Nov 2026 08:15:00 +0100
Message-ID: {message_id}
MIME-Version: 1.0
{extra}Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

{body}"""
    )


ALTERNATIVE = raw(
    """
From: "Berg, Anna" <Anna.Berg@Nordwind.example>
Sender: mailer@nordwind.example
To: help@crm.example, "Jon Ek" <jon@nordwind.example>
Cc: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <jorg@nordwind.example>
Reply-To: tickets@nordwind.example
Subject: Re: Invoice 1043
Date: Mon, 23 Nov 2026 08:15:00 +0100
Message-ID: <reply2@nordwind.example>
In-Reply-To: <ours1@crm.example>
References: <first@nordwind.example>
 <ours1@crm.example>
X-Priority: 1 (Highest)
Auto-Submitted: no
X-Mailer: Outlook 16
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt-1"

--alt-1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Hello,=0Athe invoice lists two licences =E2=80=93 we have one.
--alt-1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<html><body><p>Hello,</p><p>the invoice lists two licences =E2=80=93 we have=
 one.</p></body></html>
--alt-1--
"""
)


def mixed_with_pdf(pdf: bytes = b"%PDF-1.4\n% an invoice\n") -> bytes:
    encoded = base64.encodebytes(pdf).decode()
    return raw(
        f"""
From: anna.berg@nordwind.example
To: help@crm.example
Subject: Invoice attached
Message-ID: <pdf1@nordwind.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mix"

--mix
Content-Type: text/plain; charset=us-ascii

See the attached invoice.
--mix
Content-Type: application/pdf; name="invoice 1043.pdf"
Content-Disposition: attachment; filename="invoice 1043.pdf"
Content-Transfer-Encoding: base64

{encoded}
--mix--
"""
    )


PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)

RELATED_INLINE_IMAGE = raw(
    f"""
From: anna.berg@nordwind.example
To: help@crm.example
Subject: Screenshot of the error
Message-ID: <img1@nordwind.example>
MIME-Version: 1.0
Content-Type: multipart/related; boundary="rel"; type="text/html"

--rel
Content-Type: text/html; charset=utf-8

<p>The error:</p><img src="cid:shot1@nordwind.example">
--rel
Content-Type: image/png; name="image001.png"
Content-Disposition: inline; filename="image001.png"
Content-ID: <shot1@nordwind.example>
Content-Transfer-Encoding: base64

{base64.encodebytes(PNG).decode()}
--rel--
"""
)

LATIN_1 = raw(
    """
From: =?iso-8859-1?q?J=F6rg_M=FCller?= <jorg@muenchen.example>
To: help@crm.example
Subject: =?ISO-8859-1?Q?Gr=FC=DFe_aus_M=FCnchen?=
Message-ID: <latin@muenchen.example>
MIME-Version: 1.0
Content-Type: text/plain; charset="ISO-8859-1"
Content-Transfer-Encoding: 8bit

Grüße aus München, die Rechnung ist falsch.
""",
    encoding="latin-1",
)


def _encoded_word(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


SHIFT_JIS_SUBJECT = "請求書が間違っています"
SHIFT_JIS_BODY = "請求が間違っています。山田"
SHIFT_JIS = (
    raw(
        f"""
From: {_encoded_word("山田", "iso-2022-jp")} <yamada@tokyo.example>
To: help@crm.example
Subject: {_encoded_word(SHIFT_JIS_SUBJECT, "shift_jis")}
Message-ID: <sjis@tokyo.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=Shift_JIS
Content-Transfer-Encoding: 8bit

"""
    )
    + SHIFT_JIS_BODY.encode("shift_jis")
    + b"\r\n"
)

BROKEN_CHARSETS = raw(
    """
From: someone@broken.example
To: help@crm.example
Subject: broken
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b"

--b
Content-Type: text/plain; charset="x-no-such-charset"

caf\xc3\xa9 ok
--b
Content-Type: text/html; charset=utf-8

<p>invalid \xff\xfe bytes</p>
--b--
""",
    encoding="latin-1",
)


def bounce(*, returned: str = "message/rfc822") -> bytes:
    """A DSN as Postfix writes it; the original comes back whole or as its headers only."""
    if returned == "message/rfc822":
        original = """Content-Type: message/rfc822

From: help@crm.example
To: gone@nordwind.example
Subject: Re: [CASE-000042] Invoice 1043
Message-ID: <case42.reply@crm.example>

Our answer.
"""
    else:
        original = """Content-Type: text/rfc822-headers

From: help@crm.example
To: gone@nordwind.example
Subject: Re: [CASE-000042] Invoice 1043
Message-ID: <case42.reply@crm.example>
"""
    return raw(
        f"""
Return-Path: <>
From: MAILER-DAEMON@mx.nordwind.example (Mail Delivery System)
To: help@crm.example
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
Message-ID: <dsn1@mx.nordwind.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
 boundary="dsn"

--dsn
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<gone@nordwind.example>: host mx.nordwind.example said: 550 5.1.1 User unknown

--dsn
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.nordwind.example
Arrival-Date: Mon, 23 Nov 2026 08:15:00 +0100

Final-Recipient: rfc822; Gone@Nordwind.example
Original-Recipient: rfc822;gone@nordwind.example
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--dsn
Content-Description: Undelivered Message
{original}
--dsn--
"""
    )


def many_recipients(count: int) -> bytes:
    to = ",\n ".join(f'"Customer {n}" <customer{n}@nordwind.example>' for n in range(count))
    return plain(to=to, subject=f"To {count} people")
