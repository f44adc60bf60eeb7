"""The `case:` term of the mail list's filter (`GET /api/v1/mail/messages?filter=case:…`).

The mail app may not import cases (DESIGN.md), so it offers a registry of extra message
filters and this module adds one when the app is ready (`CasesConfig.ready`). What it selects
depends on intake's `CaseMessage` rows, which do not move a mailbox's change number, so it is
registered as not cacheable: lists using it are always computed.
"""

from __future__ import annotations

from django.db.models import QuerySet

from cases import selectors as case_selectors
from cases.models import CaseMessage
from crm.models import User
from mailsync.models import Message
from mailsync.selectors import register_message_filter


def messages_of_case(messages: QuerySet[Message], value: str, user: User) -> QuerySet[Message]:
    """The messages intake joined to a case the user sees, by number (`CASE-000123`, a merged
    case's number leads to the case it went into) or id. Raises ValueError for a case the
    user cannot see, exactly as for one that does not exist."""
    value = value.strip()
    if value.isascii() and value.isdigit() and len(value) <= 18:
        case = case_selectors.case_list(user=user).filter(pk=int(value)).first()
    else:
        case = case_selectors.case_get_by_number(user=user, number=value)
    if case is None:
        raise ValueError(f"no case '{value}'.")
    return messages.filter(pk__in=CaseMessage.objects.filter(case=case).values("message_id"))


register_message_filter(
    "case",
    messages_of_case,
    cacheable=False,
    help_text="Messages of a case, by number or id.",
)
