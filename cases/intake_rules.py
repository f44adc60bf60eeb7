"""The rules of email intake that need no database: what a message is (customer mail, an
auto-reply, a bounce) and which threading keys it carries.

Kept pure so that property-based tests can throw anything at them; `cases.services.intake`
applies them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

CASE_NUMBER = re.compile(r"\bCASE-(\d{6,12})\b", re.IGNORECASE)
MESSAGE_ID = re.compile(r"<[^<>\s]{1,900}>")
ORIGINAL_MESSAGE_ID = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]{1,900}>)", re.IGNORECASE | re.M)

AUTO_REPLY_SUBJECTS = re.compile(
    r"^\s*(?:"
    r"auto(?:matic|matische)?[\s-]*(?:reply|response|antwort)"
    r"|out of (?:the )?office|ooo\b|abwesenheitsnotiz|r[ée]ponse automatique"
    r"|respuesta autom[áa]tica|risposta automatica|autosvar|automatisch antwoord"
    r")",
    re.IGNORECASE,
)
BOUNCE_SUBJECTS = re.compile(
    r"^\s*(?:undeliverable|undelivered mail|delivery status notification \(failure\)"
    r"|mail delivery (?:failed|failure|subsystem)|returned mail|failure notice"
    r"|unzustellbar|non remis)",
    re.IGNORECASE,
)
BOUNCE_SENDERS = re.compile(r"^(?:mailer-daemon|postmaster|microsoftexchange[0-9a-f]*)@", re.I)
BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
SUPPRESS_VALUES = frozenset({"all", "oof", "autoreply"})


@dataclass(frozen=True)
class Kind:
    """What a message is, for intake: `customer` mail opens and threads cases."""

    kind: str  # "customer", "auto_reply" or "bounce"
    reason: str = ""


CUSTOMER = Kind("customer")


def classify(*, headers: Mapping[str, str], subject: str, sender: str) -> Kind:
    """Bounce, auto-reply or customer mail, from the kept headers (lowercased names)."""
    content_type = (headers.get("content-type") or "").lower()
    if "multipart/report" in content_type and "delivery-status" in content_type:
        return Kind("bounce", "delivery status report")
    if headers.get("x-failed-recipients"):
        return Kind("bounce", "X-Failed-Recipients")
    if BOUNCE_SENDERS.match(sender or "") and BOUNCE_SUBJECTS.match(subject or ""):
        return Kind("bounce", f"from {sender}")
    submitted = (headers.get("auto-submitted") or "").strip().lower()
    if submitted and submitted != "no":
        return Kind("auto_reply", f"Auto-Submitted: {submitted[:50]}")
    suppress = {
        v.strip().lower() for v in (headers.get("x-auto-response-suppress") or "").split(",")
    }
    if suppress & SUPPRESS_VALUES:
        return Kind("auto_reply", "X-Auto-Response-Suppress")
    precedence = (headers.get("precedence") or "").strip().lower()
    if precedence in BULK_PRECEDENCE:
        return Kind("auto_reply", f"Precedence: {precedence}")
    if _present(headers, "list-id"):
        return Kind("auto_reply", "mailing list")
    if _present(headers, "x-autoreply") or _present(headers, "x-autorespond"):
        return Kind("auto_reply", "X-Autoreply")
    if AUTO_REPLY_SUBJECTS.match(subject or ""):
        return Kind("auto_reply", "auto-reply subject")
    return CUSTOMER


def _present(headers: Mapping[str, str], name: str) -> bool:
    """A header with a value: one of only spaces says nothing."""
    return bool((headers.get(name) or "").strip())


def case_numbers(subject: str) -> list[str]:
    """Case numbers named in a subject (`[CASE-000123]`, `RE: CASE-000123 …`), in order."""
    return [f"CASE-{digits}" for digits in CASE_NUMBER.findall(subject or "")]


def thread_ids(*, in_reply_to: str, references: str) -> list[str]:
    """Message-IDs to look a reply up by: In-Reply-To first, then References newest first."""
    ids = MESSAGE_ID.findall(in_reply_to or "") + MESSAGE_ID.findall(references or "")[::-1]
    return list(dict.fromkeys(ids))


def bounced_message_ids(*, in_reply_to: str, references: str, body: str) -> list[str]:
    """Where a bounce says which of our messages failed: its threading headers, or the
    `Message-ID:` line of the original's headers quoted in the report."""
    quoted = ORIGINAL_MESSAGE_ID.findall(body or "")
    return list(dict.fromkeys([*thread_ids(in_reply_to=in_reply_to, references=references),
                               *quoted]))  # fmt: skip
