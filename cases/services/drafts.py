"""What an agent is writing on a case, kept as they type (issue 13's composer).

One `ReplyDraft` per agent and case: the composer posts it a second after the agent stops
typing and when they switch between reply, reply all, forward and note, so a reload, a crash
or a closed tab finds it again. Sending and discarding delete it. Files picked for a reply are
not kept (a draft is a few kilobytes of text; a 30 MB attachment saved every second is not).

A draft is the agent's own: nobody else reads or changes it, so it writes no timeline event
and sends no live update.
"""

from __future__ import annotations

from django.db import transaction

from cases.errors import CaseError
from cases.models import Case, CaseMessage, ReplyDraft
from crm.models import User
from mailsync.models import Message

DRAFT_MODES = tuple(value for value, _ in ReplyDraft._meta.get_field("mode").choices)
# A draft is text typed by a person; anything longer is not a reply being written.
MAX_BODY_CHARS = 200_000
MAX_ADDRESS_CHARS = ReplyDraft._meta.get_field("to").max_length


class DraftRefused(CaseError):
    code = "draft_invalid"


def draft_get(*, agent: User, case: Case) -> ReplyDraft | None:
    """The agent's draft on the case, or None. (A read, kept next to the writes it pairs with
    because nothing else reads drafts.)"""
    return ReplyDraft.objects.filter(case=case, agent=agent).select_related("message").first()


def _checked(mode: str, to: str, cc: str, bcc: str, body: str) -> None:
    if mode not in DRAFT_MODES:
        raise DraftRefused(
            f"“{mode}” is not a way to answer ({', '.join(DRAFT_MODES)}).", field="mode"
        )
    for field, value in (("to", to), ("cc", cc), ("bcc", bcc)):
        if len(value) > MAX_ADDRESS_CHARS:
            raise DraftRefused(
                f"{field.capitalize()} is too long ({MAX_ADDRESS_CHARS} characters at most).",
                field=field,
            )
    if len(body) > MAX_BODY_CHARS:
        raise DraftRefused(
            f"The text is too long ({MAX_BODY_CHARS} characters at most).", field="body"
        )


@transaction.atomic
def draft_save(
    *,
    agent: User,
    case: Case,
    mode: str,
    body: str,
    to: str = "",
    cc: str = "",
    bcc: str = "",
    message: Message | None = None,
) -> ReplyDraft | None:
    """Keep what the agent is writing; returns the draft, or None when there is nothing to
    keep (no text and no recipients: the draft is deleted, so an emptied composer does not
    come back as a "draft" after a reload).

    Addresses are kept as typed (a draft holds half-written work); they are checked on send.
    `message` must belong to the case."""
    _checked(mode, to, cc, bcc, body)
    if message is not None and not CaseMessage.objects.filter(case=case, message=message).exists():
        raise DraftRefused("That message is not part of this case.", field="message")
    if not body.strip() and not (to.strip() or cc.strip() or bcc.strip()):
        ReplyDraft.objects.filter(case=case, agent=agent).delete()
        return None
    draft, _ = ReplyDraft.objects.update_or_create(
        case=case,
        agent=agent,
        defaults={"mode": mode, "to": to, "cc": cc, "bcc": bcc, "body": body, "message": message},
    )
    return draft


def draft_discard(*, agent: User, case: Case) -> bool:
    """Delete the agent's draft on the case (after sending, or when they throw it away).
    Returns whether there was one; discarding twice is not an error."""
    deleted, _ = ReplyDraft.objects.filter(case=case, agent=agent).delete()
    return deleted > 0
