"""Sending mail from a mailbox: `send_message` chooses the transport by the mailbox's kind.

Microsoft 365 mailboxes send through Graph the way Outlook does, so that Outlook threads the
result: a reply, reply-all or forward starts from `createReply` / `createReplyAll` /
`createForward` (Graph sets the recipients, the subject prefix and the threading headers),
a new message from a draft; then the draft is completed (`PATCH` body and recipients, files
attached, large ones through an upload session) and sent. `sendMail` is not used: it
accepts only `X-` headers and returns no id, so it cannot thread.

The sent message is stored at once in Sent Items under the draft's immutable id, which the
sent copy keeps; the next delta round therefore merges into that row instead of ingesting the
message as new mail.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests
from django.db import transaction
from django.utils import timezone

from crm.changes import item_touch
from crm.graph.auth import trusted_ca_bundle
from crm.graph.client import GraphClient
from crm.models import User
from mailsync.choices import MailboxKind, WellKnownFolder
from mailsync.errors import MailboxError
from mailsync.graph_mapping import message_fields
from mailsync.models import Mailbox, Message
from mailsync.services.relay import relay_submit

SIMPLE_ATTACHMENT_LIMIT = 3 * 1024 * 1024  # Graph: larger files need an upload session
UPLOAD_CHUNK = 4 * 320 * 1024  # a multiple of 320 KiB, as Graph asks
MODES = ("new", "reply", "reply_all", "forward")
# Ids as the sync stores them: the sent copy keeps the draft's immutable id.
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}
DRAFT_ACTIONS = {"reply": "createReply", "reply_all": "createReplyAll", "forward": "createForward"}


@dataclass(frozen=True)
class OutgoingFile:
    name: str
    content: bytes
    content_type: str = "application/octet-stream"


def send_message(
    *,
    mailbox: Mailbox,
    body_html: str,
    subject: str = "",
    to: Sequence[str] = (),
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    mode: str = "new",
    original: Message | None = None,
    attachments: Sequence[OutgoingFile] = (),
    actor: User | None = None,
    client: GraphClient | None = None,
    auto_submitted: bool = False,
) -> Message:
    """Send, and return the stored Sent Items copy (its `internet_message_id` is what a
    customer's answer will name in In-Reply-To). Local mailboxes send through the outbound
    queue and the SMTP relay (`relay.relay_submit`), Microsoft 365 ones through Graph.

    `auto_submitted` marks an automatic message (RFC 3834 `Auto-Submitted: auto-replied`, so
    that the customer's own autoresponder stays quiet); Graph accepts only `X-` headers, so
    there it is `X-Auto-Response-Suppress` and the like that Exchange adds itself."""
    if mailbox.kind == MailboxKind.LOCAL:
        _check(mailbox, mode, original, to)
        return relay_submit(
            mailbox=mailbox, subject=subject, body_html=body_html, to=to, cc=cc, bcc=bcc,
            original=original, mode=mode, attachments=attachments, actor=actor,
            auto_submitted=auto_submitted,
        )  # fmt: skip
    draft = draft_save(
        mailbox=mailbox, body_html=body_html, subject=subject, to=to, cc=cc, bcc=bcc,
        mode=mode, original=original, actor=actor, client=client,
    )  # fmt: skip
    return draft_send(draft=draft, attachments=attachments, actor=actor, client=client)


def draft_save(
    *,
    mailbox: Mailbox,
    body_html: str,
    subject: str = "",
    to: Sequence[str] = (),
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    mode: str = "new",
    original: Message | None = None,
    draft: Message | None = None,
    actor: User | None = None,
    client: GraphClient | None = None,
) -> Message:
    """Create or update a draft; in a Microsoft 365 mailbox it is an Outlook draft (Drafts
    folder), so an agent can finish it in Outlook as well."""
    _sendable(mailbox)
    client = client or GraphClient(mailbox=mailbox.address)
    base = f"users/{mailbox.address}/messages"
    if draft is None:
        _check(mailbox, mode, original, to)
        remote = _draft(client, base, mode, original, subject, body_html, to, cc, bcc)
    else:
        if not draft.is_draft or draft.mailbox_id != mailbox.pk:
            raise MailboxError("Only a draft of this mailbox can be edited.", field="draft")
        remote = client.request_json(
            "PATCH",
            f"{base}/{draft.graph_id}",
            json=_draft_changes(subject, body_html, to, cc, bcc),
            headers=IMMUTABLE,
        )
    return _store(mailbox, remote, draft, WellKnownFolder.DRAFTS)


def draft_send(
    *,
    draft: Message,
    attachments: Sequence[OutgoingFile] = (),
    actor: User | None = None,
    client: GraphClient | None = None,
) -> Message:
    """Attach the files and send the draft; the same row becomes the Sent Items copy."""
    mailbox = draft.mailbox
    _sendable(mailbox)
    if not draft.is_draft:
        raise MailboxError("This message was sent already.", field="draft")
    if not (draft.to or draft.cc or draft.bcc):
        raise MailboxError("Give at least one recipient.", field="to")
    client = client or GraphClient(mailbox=mailbox.address)
    path = f"users/{mailbox.address}/messages/{draft.graph_id}"
    for file in attachments:
        _attach(client, path, file)
    client.request("POST", f"{path}/send")
    return _sent(draft, has_files=bool(attachments))


def _sendable(mailbox: Mailbox) -> None:
    if mailbox.kind != MailboxKind.M365:
        raise MailboxError(
            "Drafts are kept in Microsoft 365 mailboxes only; a local mailbox sends at once.",
            field="mailbox",
        )


def _check(mailbox: Mailbox, mode: str, original: Message | None, to: Sequence[str]) -> None:
    if mode not in MODES:
        raise MailboxError(f"“{mode}” is not a way to send ({', '.join(MODES)}).", field="mode")
    if mode != "new" and (original is None or original.mailbox_id != mailbox.pk):
        raise MailboxError("A reply or forward needs a message of this mailbox.", field="original")
    if mode in ("new", "forward") and not to:
        raise MailboxError("Give at least one recipient.", field="to")


def _recipients(addresses: Sequence[str]) -> list[dict[str, Any]]:
    return [{"emailAddress": {"address": address}} for address in addresses]


def _draft(client, base, mode, original, subject, body_html, to, cc, bcc) -> dict[str, Any]:
    """The draft, complete but for attachments."""
    if mode == "new":
        return client.request_json(
            "POST", base, json=_draft_changes(subject, body_html, to, cc, bcc), headers=IMMUTABLE
        )
    draft = client.request_json(
        "POST", f"{base}/{original.graph_id}/{DRAFT_ACTIONS[mode]}", headers=IMMUTABLE
    )
    quoted = (draft.get("body") or {}).get("content", "")
    changes = _draft_changes(subject, body_html + quoted, to, cc, bcc)
    return client.request_json("PATCH", f"{base}/{draft['id']}", json=changes, headers=IMMUTABLE)


def _draft_changes(subject, body_html, to, cc, bcc) -> dict[str, Any]:
    """What a draft is set to: the body always, the rest when given (a reply keeps the
    subject and recipients Graph chose unless the agent changed them)."""
    changes: dict[str, Any] = {"body": {"contentType": "HTML", "content": body_html}}
    if subject:
        changes["subject"] = subject
    for field, addresses in (("toRecipients", to), ("ccRecipients", cc), ("bccRecipients", bcc)):
        if addresses:
            changes[field] = _recipients(addresses)
    return changes


def _attach(client: GraphClient, draft_path: str, file: OutgoingFile) -> None:
    if len(file.content) <= SIMPLE_ATTACHMENT_LIMIT:
        client.request_json(
            "POST",
            f"{draft_path}/attachments",
            json={
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": file.name,
                "contentType": file.content_type,
                "contentBytes": base64.b64encode(file.content).decode(),
            },
        )
        return
    session = client.request_json(
        "POST",
        f"{draft_path}/attachments/createUploadSession",
        json={"AttachmentItem": {"attachmentType": "file", "name": file.name,
                                 "size": len(file.content), "contentType": file.content_type}},
    )  # fmt: skip
    _upload(session["uploadUrl"], file.content)


def _upload(url: str, content: bytes) -> None:
    """PUT the bytes in chunks to the upload URL (it carries its own authorization: no
    bearer token may be sent to it)."""
    with requests.Session() as session:
        session.trust_env = False
        session.verify = trusted_ca_bundle()
        total = len(content)
        for start in range(0, total, UPLOAD_CHUNK):
            chunk = content[start : start + UPLOAD_CHUNK]
            end = start + len(chunk) - 1
            response = session.put(
                url,
                data=chunk,
                headers={"Content-Range": f"bytes {start}-{end}/{total}",
                         "Content-Length": str(len(chunk))},
                timeout=60,
            )  # fmt: skip
            if response.status_code not in (200, 201):
                raise MailboxError(
                    f"Microsoft 365 refused the upload of an attachment ({response.status_code}).",
                    field="attachments",
                )


@transaction.atomic
def _store(mailbox: Mailbox, remote: dict[str, Any], draft: Message | None, role: str) -> Message:
    """The draft's row, under the immutable id the sent copy will keep."""
    folder = mailbox.folders.filter(well_known=role).first()
    message = draft or Message(mailbox=mailbox, graph_id=remote["id"])
    for name, value in message_fields(remote).items():
        setattr(message, name, value)
    message.folder, message.is_draft = folder, True
    item_touch(message, mailbox.container)
    message.save()
    return message


@transaction.atomic
def _sent(draft: Message, *, has_files: bool) -> Message:
    """The draft's row becomes the Sent Items copy (the next delta round merges into it)."""
    message = Message.objects.select_for_update().get(pk=draft.pk)
    message.folder = message.mailbox.folders.filter(well_known=WellKnownFolder.SENT).first()
    message.is_draft, message.sent_at = False, timezone.now()
    message.has_attachments = message.has_attachments or has_files
    item_touch(message, message.mailbox.container)
    message.save()
    return message
