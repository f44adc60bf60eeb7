"""Graph's mail write operations: update, move, delete, drafts, replies, sending, attachments.

Every write goes through the mailbox's own methods (`graphsim.mail`), so it lands in the
folders' change logs like any other change: delta rounds and change notifications see it
(an update as a partial item in the next round, a move as removed here and added there).

Tests steer writes through `WriteSwitches` (on the server): `refuse` makes the next write on a
message (or any write) fail with a given status, and `counts` tallies successful writes by
kind. Sent messages are kept in `sent` as they went out, as a mail relay's log would.

Large attachments go through upload sessions: the session's URL is pre-authenticated (no
bearer token, as Graph's `outlook.office.com` upload URLs) and served by `upload_chunk`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import html
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphsim.mail import Mailbox, immutable_of, message_resource
from graphsim.routes import GraphResponse, graph_error

if TYPE_CHECKING:
    from graphsim.routes import MailRoutes
    from graphsim.server import SimulatorServer

SIMPLE_ATTACHMENT_LIMIT = 3 * 1024 * 1024
UPLOAD_SESSION_MINIMUM = SIMPLE_ATTACHMENT_LIMIT
UPLOAD_SESSION_MAXIMUM = 150 * 1024 * 1024
UPLOAD_SESSION_LIFETIME = datetime.timedelta(minutes=15)
UPLOAD_PATH_PREFIX = "/api/v2.0/"
ANY_MESSAGE = "*"
UPLOAD_SESSION_CONTEXT = "$metadata#microsoft.graph.uploadSession"
CHUNK_CONTEXT = "$metadata#AttachmentSessions/$entity"

# What a PATCH may change on any message, and what only while it is a draft.
ALWAYS_UPDATABLE = frozenset(
    """
    isRead flag categories importance inferenceClassification isDeliveryReceiptRequested
    isReadReceiptRequested
    """.split()
)
DRAFT_UPDATABLE = frozenset(
    """
    subject body toRecipients ccRecipients bccRecipients replyTo from sender
    internetMessageId
    """.split()
)
# Settable when a message is created (not by a later PATCH), as Graph allows custom headers.
CREATE_ONLY = frozenset({"internetMessageHeaders", "attachments"})
READ_ONLY = frozenset(
    """
    id bodyPreview uniqueBody changeKey conversationId conversationIndex createdDateTime
    lastModifiedDateTime receivedDateTime sentDateTime hasAttachments isDraft
    parentFolderId webLink internetMessageHeaders attachments
    """.split()
)
IGNORED_ANNOTATIONS = ("@odata.",)
FLAG_STATUSES = frozenset({"notFlagged", "flagged", "complete"})
IMPORTANCES = frozenset({"low", "normal", "high"})
ERROR_CODES = {
    400: "ErrorInvalidRequest",
    401: "InvalidAuthenticationToken",
    403: "ErrorAccessDenied",
    404: "ErrorItemNotFound",
    409: "ErrorIrresolvableConflict",
    412: "ErrorIrresolvableConflict",
    413: "ErrorRequestEntityTooLarge",
    429: "ApplicationThrottled",
    500: "ErrorInternalServerError",
    503: "ServiceUnavailable",
    507: "ErrorQuotaExceeded",
}
REPLY_PREFIXES = {"createReply": "RE: ", "createReplyAll": "RE: ", "createForward": "FW: "}


class WriteError(Exception):
    """A write Graph refuses: answered with Graph's error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> GraphResponse:
        return graph_error(self.status, self.code, self.message)


@dataclass
class WriteSwitches:
    """Refusals scripted by tests, counters of writes by kind and the log of sent messages."""

    refusals: dict[str, list[int]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    sent: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refuse(self, message_id: str | None, status: int, times: int) -> None:
        key = ANY_MESSAGE if message_id is None else immutable_of(message_id)
        with self.lock:
            self.refusals.setdefault(key, []).extend([status] * times)

    def take_refusal(self, message_id: str | None, kind: str) -> None:
        """Raise the scripted refusal for this message (or for any write), consuming it."""
        with self.lock:
            for key in (message_id, ANY_MESSAGE):
                queued = self.refusals.get(key) if key else None
                if queued:
                    status = queued.pop(0)
                    self.refused[kind] += 1
                    break
            else:
                return
        code = ERROR_CODES.get(status, "ErrorInvalidRequest")
        raise WriteError(status, code, f"Simulated refusal ({status}) of {kind}.")

    def count(self, kind: str) -> None:
        with self.lock:
            self.counts[kind] += 1

    def record_sent(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.sent.append(message)


# Routing


def dispatch_write(routes: MailRoutes) -> GraphResponse | None:
    """Answer a POST, PATCH or DELETE below `/users/{u}/`; None if it is not a write we know."""
    writer = MessageWriter(routes)
    method, rest = routes.request.method, routes.request.parts[2:]
    try:
        match method, rest:
            case "PATCH", ["messages", message] | ["mailFolders", _, "messages", message]:
                return writer.update(message)
            case "DELETE", ["messages", message] | ["mailFolders", _, "messages", message]:
                return writer.delete(message)
            case "POST", ["messages"]:
                return writer.create_draft("drafts")
            case "POST", ["mailFolders", folder, "messages"]:
                return writer.create_draft(folder)
            case "POST", ["messages", message, "move"]:
                return writer.move(message)
            case "POST", ["messages", message, "permanentDelete"]:
                return writer.permanent_delete(message)
            case "POST", ["messages", message, ("createReply" | "createReplyAll") as action]:
                return writer.create_response(message, action)
            case "POST", ["messages", message, "createForward"]:
                return writer.create_response(message, "createForward")
            case "POST", ["messages", message, "send"]:
                return writer.send(message)
            case "POST", ["sendMail"]:
                return writer.send_mail()
            case "POST", ["messages", message, "attachments"]:
                return writer.add_attachment(message)
            case "POST", ["messages", message, "attachments", "createUploadSession"]:
                return writer.create_upload_session(message)
            case "DELETE", ["messages", message, "attachments", attachment]:
                return writer.delete_attachment(message, attachment)
    except WriteError as exc:
        return exc.response()
    return None


class MessageWriter:
    """The write operations for one request, on the mailbox the request names."""

    def __init__(self, routes: MailRoutes) -> None:
        self.routes = routes
        self.server: SimulatorServer = routes.server
        self.mailbox: Mailbox = routes.mailbox
        self.switches: WriteSwitches = routes.server.writes

    # Helpers

    def _body(self) -> dict[str, Any]:
        raw = self.routes.request.body
        try:
            document = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise WriteError(
                400, "RequestBodyRead", "The request body is not valid JSON."
            ) from None
        if not isinstance(document, dict):
            raise WriteError(400, "RequestBodyRead", "The request body must be a JSON object.")
        return document

    def _target(self, public_id: str, kind: str) -> str:
        """The immutable id of the message a write names; refusals apply here, before the
        write changes anything."""
        message_id = self.mailbox.resolve_message_id(public_id)
        self.switches.take_refusal(message_id, kind)
        return message_id

    def _done(self, kind: str, response: GraphResponse) -> GraphResponse:
        self.switches.count(kind)
        return response

    def _resource(self, status: int, message_id: str) -> GraphResponse:
        body = message_resource(
            self.mailbox.messages[message_id],
            public_id=self.mailbox.public_id(message_id, immutable_ids=self.routes.immutable_ids),
            select=self.routes._select(),
        )
        return GraphResponse(status, body)

    def _is_draft(self, message_id: str) -> bool:
        return bool(self.mailbox.messages[message_id].get("isDraft"))

    # Update, move, delete

    def update(self, public_id: str) -> GraphResponse:
        message_id = self._target(public_id, "update")
        changes = checked_changes(self._body(), is_draft=self._is_draft(message_id))
        if changes:
            self.mailbox.update_message(message_id, **changes, lastModifiedDateTime=now_iso())
        return self._done("update", self._resource(200, message_id))

    def move(self, public_id: str) -> GraphResponse:
        message_id = self._target(public_id, "move")
        destination = self._destination(self._body().get("destinationId"))
        if self.mailbox.location[message_id] != destination:
            self.mailbox.move_message(message_id, destination)
        return self._done("move", self._resource(201, message_id))

    def _destination(self, key: Any) -> str:
        """A folder id or well-known name; an id that names no folder is 404, anything that is
        not an id at all 400, as Graph tells a missing folder from a malformed id."""
        if not isinstance(key, str) or not key:
            raise WriteError(400, "ErrorInvalidRequest", "destinationId is required.")
        try:
            return self.mailbox.folder(key).id
        except KeyError:
            if key.startswith(("AAMk", "AQMk")):
                raise WriteError(
                    404, "ErrorItemNotFound", "The specified folder could not be found."
                ) from None
            raise WriteError(400, "ErrorInvalidIdMalformed", "Id is malformed.") from None

    def delete(self, public_id: str) -> GraphResponse:
        """To Deleted Items; from Deleted Items, gone (to the recoverable items, out of view)."""
        message_id = self._target(public_id, "delete")
        deleted_items = self.mailbox.folder("deleteditems").id
        if self.mailbox.location[message_id] == deleted_items:
            self.mailbox.delete_message(message_id)
        else:
            self.mailbox.move_message(message_id, deleted_items)
        return self._done("delete", GraphResponse(204, b""))

    def permanent_delete(self, public_id: str) -> GraphResponse:
        message_id = self._target(public_id, "permanentDelete")
        self.mailbox.delete_message(message_id)
        return self._done("permanentDelete", GraphResponse(204, b""))

    # Drafts, replies and forwards

    def create_draft(self, folder_key: str) -> GraphResponse:
        self.switches.take_refusal(None, "createDraft")
        body = self._body()
        attachments = checked_attachments(body.pop("attachments", []))
        changes = checked_changes(body, is_draft=True, creating=True)
        folder = self.mailbox.folder(folder_key).id
        message_id = self.mailbox.add_message(folder, **new_draft(self.mailbox, changes))
        for attachment in attachments:
            add_file_attachment(self.mailbox, message_id, attachment)
        return self._done("createDraft", self._resource(201, message_id))

    def create_response(self, public_id: str, action: str) -> GraphResponse:
        """createReply / createReplyAll / createForward: a draft in Drafts that threads with
        the original (same conversation, In-Reply-To and References)."""
        message_id = self._target(public_id, action)
        body = self._body()
        comment, overrides = body.get("comment"), body.get("message") or {}
        if not isinstance(overrides, dict):
            raise WriteError(400, "RequestBodyRead", "message must be an object.")
        if comment is not None and "body" in overrides:
            raise WriteError(
                400, "ErrorInvalidRequest", "Specify either a comment or a message body, not both."
            )
        recipients = body.get("toRecipients")
        if recipients is not None:
            overrides = {**overrides, "toRecipients": recipients}
        changes = checked_changes(overrides, is_draft=True)
        original = self.mailbox.messages[message_id]
        draft = response_draft(self.mailbox, original, action, comment=comment or "")
        draft.update(changes)
        new_id = self.mailbox.add_message("drafts", **draft)
        if action == "createForward":
            for attachment in self.mailbox.attachments.get(message_id, []):
                self.mailbox.attachments.setdefault(new_id, []).append(
                    {**attachment, "id": self.mailbox.new_attachment_id()}
                )
            if self.mailbox.attachments.get(new_id):
                self.mailbox.update_message(new_id, hasAttachments=True)
        return self._done(action, self._resource(201, new_id))

    # Sending

    def send(self, public_id: str) -> GraphResponse:
        """202; the draft becomes the Sent Items copy, keeping its immutable id (as Graph
        documents) and its internetMessageId."""
        message_id = self._target(public_id, "send")
        message = self.mailbox.messages[message_id]
        if not message.get("isDraft"):
            raise WriteError(400, "ErrorInvalidOperation", "Only a draft can be sent.")
        require_recipients(message)
        self.mailbox.update_message(message_id, **sent_properties(self.mailbox, message))
        self.mailbox.move_message(message_id, "sentitems")
        self.switches.record_sent(self._outgoing(message_id))
        return self._done("send", GraphResponse(202, b""))

    def send_mail(self) -> GraphResponse:
        self.switches.take_refusal(None, "sendMail")
        body = self._body()
        message = body.get("message")
        if not isinstance(message, dict):
            raise WriteError(400, "ErrorInvalidRequest", "The message parameter is required.")
        message = dict(message)
        attachments = checked_attachments(message.pop("attachments", []))
        changes = checked_changes(message, is_draft=True, creating=True)
        draft = new_draft(self.mailbox, changes)
        require_recipients(draft)
        draft.update(sent_properties(self.mailbox, draft))
        if body.get("saveToSentItems", True) in (False, "false", "False"):
            outgoing = {**draft, "attachments": [public_attachment(a) for a in attachments]}
            self.switches.record_sent(outgoing)
        else:
            message_id = self.mailbox.add_message("sentitems", **draft)
            for attachment in attachments:
                add_file_attachment(self.mailbox, message_id, attachment)
            self.switches.record_sent(self._outgoing(message_id))
        return self._done("sendMail", GraphResponse(202, b""))

    def _outgoing(self, message_id: str) -> dict[str, Any]:
        message = self.mailbox.messages[message_id]
        attachments = self.mailbox.attachments.get(message_id, [])
        return {**message, "attachments": [dict(a) for a in attachments]}

    # Attachments

    def add_attachment(self, public_id: str) -> GraphResponse:
        message_id = self._target(public_id, "addAttachment")
        (attachment,) = checked_attachments([self._body()])
        attachment_id = add_file_attachment(self.mailbox, message_id, attachment)
        stored = next(a for a in self.mailbox.attachments[message_id] if a["id"] == attachment_id)
        return self._done("addAttachment", GraphResponse(201, dict(stored)))

    def delete_attachment(self, public_id: str, attachment_id: str) -> GraphResponse:
        message_id = self._target(public_id, "deleteAttachment")
        self.mailbox.remove_attachment(message_id, attachment_id)
        return self._done("deleteAttachment", GraphResponse(204, b""))

    def create_upload_session(self, public_id: str) -> GraphResponse:
        message_id = self._target(public_id, "createUploadSession")
        item = checked_attachment_item(self._body())
        session = self.server.upload_sessions.open(
            address=self.mailbox.address, message_id=message_id, public_id=public_id, item=item
        )
        body = {
            "@odata.context": f"{self.server.base_url}/v1.0/{UPLOAD_SESSION_CONTEXT}",
            "uploadUrl": session.url(self.server.base_url),
            "expirationDateTime": iso(session.expires),
            "nextExpectedRanges": ["0-"],
        }
        return self._done("createUploadSession", GraphResponse(201, body))


# Validation


def checked_changes(
    body: dict[str, Any], *, is_draft: bool, creating: bool = False
) -> dict[str, Any]:
    """The properties a PATCH (or a new draft) sets, validated as Graph validates them."""
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith(IGNORED_ANNOTATIONS):
            continue
        if creating and name in CREATE_ONLY:
            changes[name] = checked_headers(value) if name == "internetMessageHeaders" else value
            continue
        if name in READ_ONLY:
            raise WriteError(400, "ErrorInvalidPropertySet", "Set action is invalid for property.")
        if name in DRAFT_UPDATABLE and not is_draft:
            raise WriteError(
                400,
                "ErrorInvalidPropertyUpdateSentMessage",
                "Update operation is invalid for property of a sent message.",
            )
        if name not in ALWAYS_UPDATABLE and name not in DRAFT_UPDATABLE:
            raise WriteError(
                400,
                "RequestBodyRead",
                f"The property '{name}' does not exist on type 'microsoft.graph.message'.",
            )
        changes[name] = checked_value(name, value)
    if "body" in changes:
        changes["bodyPreview"] = preview_of(changes["body"])
    return changes


def checked_value(name: str, value: Any) -> Any:
    valid = {
        "isRead": lambda v: isinstance(v, bool),
        "isDeliveryReceiptRequested": lambda v: isinstance(v, bool),
        "isReadReceiptRequested": lambda v: isinstance(v, bool),
        "flag": lambda v: (
            isinstance(v, dict) and v.get("flagStatus", "notFlagged") in FLAG_STATUSES
        ),
        "categories": lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
        "importance": lambda v: v in IMPORTANCES,
        "inferenceClassification": lambda v: v in ("focused", "other"),
        "subject": lambda v: v is None or isinstance(v, str),
        "body": _valid_body,
        "from": lambda v: v is None or _valid_recipient(v),
        "sender": lambda v: v is None or _valid_recipient(v),
        "internetMessageId": lambda v: isinstance(v, str) and v.startswith("<") and "@" in v,
    }
    check = valid.get(name, lambda v: isinstance(v, list) and all(map(_valid_recipient, v)))
    if not check(value):
        raise WriteError(400, "RequestBodyRead", f"Invalid value for property '{name}'.")
    if name == "flag":
        return {"flagStatus": "notFlagged", **value}
    if name == "body":
        return {
            "contentType": value.get("contentType", "text").lower(),
            "content": value["content"],
        }
    return value


def _valid_body(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("content"), str)
        and str(value.get("contentType", "text")).lower() in ("text", "html")
    )


def _valid_recipient(value: Any) -> bool:
    email = value.get("emailAddress") if isinstance(value, dict) else None
    return (
        isinstance(email, dict)
        and isinstance(email.get("address"), str)
        and "@" in email["address"]
    )


def checked_headers(value: Any) -> list[dict[str, str]]:
    """Graph takes custom headers only, named `x-...`, when a message is created."""
    if not isinstance(value, list) or not all(
        isinstance(h, dict) and isinstance(h.get("name"), str) and isinstance(h.get("value"), str)
        for h in value
    ):
        raise WriteError(400, "RequestBodyRead", "Invalid internetMessageHeaders.")
    if any(not h["name"].lower().startswith("x-") for h in value):
        raise WriteError(
            400,
            "InvalidInternetMessageHeader",
            "The internet message header name should start with 'x-' or 'X-'.",
        )
    return [{"name": h["name"], "value": h["value"]} for h in value]


def require_recipients(message: dict[str, Any]) -> None:
    if not any(message.get(name) for name in ("toRecipients", "ccRecipients", "bccRecipients")):
        raise WriteError(
            400, "ErrorInvalidRecipients", "At least one recipient isn't valid: none given."
        )


@dataclass(frozen=True)
class NewAttachment:
    name: str
    content: bytes
    content_type: str
    inline: bool
    content_id: str | None


def checked_attachments(items: Any) -> list[NewAttachment]:
    """File attachments sent inline (base64 `contentBytes`), each under Graph's 3 MB."""
    if not isinstance(items, list):
        raise WriteError(400, "RequestBodyRead", "attachments must be a list.")
    return [_checked_attachment(item) for item in items]


def _checked_attachment(item: Any) -> NewAttachment:
    if not isinstance(item, dict):
        raise WriteError(400, "RequestBodyRead", "An attachment must be an object.")
    if item.get("@odata.type", "").lower() != "#microsoft.graph.fileattachment":
        raise WriteError(400, "ErrorInvalidRequest", "Only file attachments are supported.")
    name, encoded = item.get("name"), item.get("contentBytes")
    if not isinstance(name, str) or not name or not isinstance(encoded, str):
        raise WriteError(
            400, "ErrorInvalidRequest", "A file attachment needs name and contentBytes."
        )
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise WriteError(400, "RequestBodyRead", "contentBytes is not valid base64.") from None
    if len(content) > SIMPLE_ATTACHMENT_LIMIT:
        raise WriteError(
            413,
            "ErrorRequestEntityTooLarge",
            "The attachment is too large for a simple upload; use an upload session.",
        )
    return NewAttachment(
        name=name,
        content=content,
        content_type=item.get("contentType") or "application/octet-stream",
        inline=bool(item.get("isInline")),
        content_id=item.get("contentId"),
    )


def add_file_attachment(mailbox: Mailbox, message_id: str, attachment: NewAttachment) -> str:
    return mailbox.add_attachment(
        message_id,
        name=attachment.name,
        content=attachment.content,
        content_type=attachment.content_type,
        inline=attachment.inline,
        content_id=attachment.content_id,
    )


def public_attachment(attachment: NewAttachment) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": attachment.name,
        "contentType": attachment.content_type,
        "size": len(attachment.content),
        "isInline": attachment.inline,
        "contentBytes": base64.b64encode(attachment.content).decode(),
    }


def checked_attachment_item(body: dict[str, Any]) -> dict[str, Any]:
    """createUploadSession's `AttachmentItem`: a file of 3 MB to 150 MB."""
    item = body.get("AttachmentItem", body.get("attachmentItem"))
    if not isinstance(item, dict):
        raise WriteError(400, "ErrorInvalidRequest", "AttachmentItem is required.")
    if str(item.get("attachmentType", "file")).lower() != "file":
        raise WriteError(400, "ErrorInvalidRequest", "Only file attachments can be uploaded.")
    name, size = item.get("name"), item.get("size")
    if not isinstance(name, str) or not name or not isinstance(size, int) or size <= 0:
        raise WriteError(400, "ErrorInvalidRequest", "AttachmentItem needs a name and a size.")
    if size < UPLOAD_SESSION_MINIMUM:
        raise WriteError(
            400,
            "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
            "Attachment size must be greater than the minimum size.",
        )
    if size > UPLOAD_SESSION_MAXIMUM:
        raise WriteError(413, "ErrorRequestEntityTooLarge", "The attachment exceeds 150 MB.")
    return item


# Building messages


def now_iso() -> str:
    return iso(datetime.datetime.now(datetime.UTC))


def iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_internet_message_id() -> str:
    """Exchange Online's shape: a random local part at the sending server."""
    local = secrets.token_hex(12).upper()
    return f"<SIM{local}@SIM0PR01MB0001.eurprd01.prod.outlook.com>"


def preview_of(body: dict[str, Any]) -> str:
    text = body.get("content") or ""
    if body.get("contentType") == "html":
        text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    return " ".join(text.split())[:255]


def new_draft(mailbox: Mailbox, changes: dict[str, Any]) -> dict[str, Any]:
    """A new draft's properties as Graph shows them, with what the request set on top."""
    stamp = now_iso()
    message_id = changes.get("internetMessageId") or new_internet_message_id()
    draft: dict[str, Any] = {
        "createdDateTime": stamp,
        "lastModifiedDateTime": stamp,
        "receivedDateTime": stamp,
        "sentDateTime": stamp,
        "hasAttachments": False,
        "internetMessageId": message_id,
        "subject": "",
        "bodyPreview": "",
        "importance": "normal",
        "conversationId": new_conversation_id(),
        "conversationIndex": base64.b64encode(secrets.token_bytes(22)).decode(),
        "isDeliveryReceiptRequested": False,
        "isReadReceiptRequested": False,
        "isRead": True,
        "isDraft": True,
        "inferenceClassification": "focused",
        "body": {"contentType": "text", "content": ""},
        "toRecipients": [],
        "ccRecipients": [],
        "bccRecipients": [],
        "replyTo": [],
        "flag": {"flagStatus": "notFlagged"},
        "categories": [],
    }
    custom = changes.pop("internetMessageHeaders", [])
    draft.update(changes)
    draft["internetMessageHeaders"] = [{"name": "Message-ID", "value": message_id}, *custom]
    return draft


def new_conversation_id() -> str:
    return "AAQk" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def response_draft(
    mailbox: Mailbox, original: dict[str, Any], action: str, *, comment: str
) -> dict[str, Any]:
    """The draft createReply / createReplyAll / createForward makes from `original`."""
    draft = new_draft(mailbox, {})
    draft["subject"] = prefixed_subject(REPLY_PREFIXES[action], original.get("subject") or "")
    draft["conversationId"] = original.get("conversationId") or draft["conversationId"]
    if original.get("conversationIndex"):
        child = base64.b64decode(original["conversationIndex"]) + secrets.token_bytes(5)
        draft["conversationIndex"] = base64.b64encode(child).decode()
    to, cc = response_recipients(mailbox.address, original, action)
    draft["toRecipients"], draft["ccRecipients"] = to, cc
    draft["body"] = quoted_body(original, comment)
    draft["bodyPreview"] = preview_of(draft["body"])
    if action != "createForward":
        draft["internetMessageHeaders"] += threading_headers(original)
    return draft


def prefixed_subject(prefix: str, subject: str) -> str:
    """Exchange does not stack prefixes: a reply to "RE: x" is "RE: x"."""
    if subject.lower().startswith(prefix.lower()):
        return prefix + subject[len(prefix) :]
    return prefix + subject


def response_recipients(
    own: str, original: dict[str, Any], action: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Reply: Reply-To if set, else the sender (our own sent message: its recipients). Reply
    all: that plus the other To and Cc, never the mailbox itself. Forward: nobody."""
    if action == "createForward":
        return [], []
    author = original.get("from") or original.get("sender")
    if original.get("replyTo"):
        to = list(original["replyTo"])
    elif author and _address(author) != own.lower():
        to = [author]
    else:
        to = list(original.get("toRecipients") or [])
    cc: list[dict[str, Any]] = []
    if action == "createReplyAll":
        to += original.get("toRecipients") or []
        cc = list(original.get("ccRecipients") or [])
    to = _without(_unique(to), {own.lower()})
    cc = _without(_unique(cc), {own.lower(), *(_address(r) for r in to)})
    return to, cc


def _address(recipient: dict[str, Any]) -> str:
    return str((recipient.get("emailAddress") or {}).get("address") or "").lower()


def _unique(recipients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({_address(r): r for r in reversed(recipients)}.values())[::-1]


def _without(recipients: list[dict[str, Any]], addresses: set[str]) -> list[dict[str, Any]]:
    return [r for r in recipients if _address(r) not in addresses]


def threading_headers(original: dict[str, Any]) -> list[dict[str, str]]:
    """In-Reply-To the original, References its references plus the original itself."""
    parent = original.get("internetMessageId")
    if not parent:
        return []
    headers = {h["name"].lower(): h["value"] for h in original.get("internetMessageHeaders") or []}
    references = " ".join(filter(None, [headers.get("references"), parent]))
    return [{"name": "In-Reply-To", "value": parent}, {"name": "References", "value": references}]


def quoted_body(original: dict[str, Any], comment: str) -> dict[str, str]:
    """Outlook's quote: the comment, a separator with the original's header, its body."""
    body = original.get("body") or {}
    content = body.get("content") or ""
    if body.get("contentType") != "html":
        content = f"<pre>{html.escape(content)}</pre>"
    author = original.get("from") or {}
    names = "; ".join(_display(r) for r in original.get("toRecipients") or [])
    header = (
        f'<hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg" dir="ltr">'
        f"<b>From:</b> {html.escape(_display(author))}<br>"
        f"<b>Sent:</b> {html.escape(str(original.get('sentDateTime') or ''))}<br>"
        f"<b>To:</b> {html.escape(names)}<br>"
        f"<b>Subject:</b> {html.escape(original.get('subject') or '')}</div>"
    )
    return {
        "contentType": "html",
        "content": f"<html><body><div>{html.escape(comment)}</div>{header}{content}</body></html>",
    }


def _display(recipient: dict[str, Any]) -> str:
    email = recipient.get("emailAddress") or {}
    name, address = email.get("name"), email.get("address") or ""
    return f"{name} <{address}>" if name and name != address else address


def sent_properties(mailbox: Mailbox, message: dict[str, Any]) -> dict[str, Any]:
    """What sending sets: no longer a draft, sent now, from the mailbox, with the headers the
    transport writes (threading headers of a reply kept)."""
    stamp = now_iso()
    own = {"emailAddress": {"name": mailbox.address.partition("@")[0], "address": mailbox.address}}
    author = message.get("from") or own
    kept = [
        h
        for h in message.get("internetMessageHeaders") or []
        if h["name"].lower() in ("in-reply-to", "references") or h["name"].lower().startswith("x-")
    ]
    headers = [
        {"name": "From", "value": _display(author)},
        {"name": "To", "value": ", ".join(_display(r) for r in message.get("toRecipients") or [])},
        *(
            [{"name": "CC", "value": ", ".join(_display(r) for r in message["ccRecipients"])}]
            if message.get("ccRecipients")
            else []
        ),
        {"name": "Subject", "value": message.get("subject") or ""},
        {"name": "Date", "value": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())},
        {"name": "Message-ID", "value": message["internetMessageId"]},
        *kept,
        {"name": "MIME-Version", "value": "1.0"},
    ]
    return {
        "isDraft": False,
        "isRead": True,
        "sentDateTime": stamp,
        "receivedDateTime": stamp,
        "lastModifiedDateTime": stamp,
        "from": author,
        "sender": message.get("sender") or author,
        "internetMessageHeaders": headers,
    }


# Upload sessions


@dataclass
class UploadSession:
    id: str
    token: str
    address: str
    message_id: str
    public_id: str
    name: str
    size: int
    content_type: str
    inline: bool
    content_id: str | None
    expires: datetime.datetime
    received: bytearray = field(default_factory=bytearray)

    def url(self, base_url: str) -> str:
        """Shaped like Graph's outlook.office.com upload URL, authorised by its query."""
        user = urllib.parse.quote(self.address)
        message = urllib.parse.quote(self.public_id)
        return (
            f"{base_url}{UPLOAD_PATH_PREFIX}Users('{user}')/Messages('{message}')"
            f"/AttachmentSessions('{self.id}')?authtoken={self.token}"
        )


class UploadSessions:
    """Open upload sessions, by id; thread-safe."""

    def __init__(self) -> None:
        self._sessions: dict[str, UploadSession] = {}
        self._lock = threading.Lock()

    def open(
        self, *, address: str, message_id: str, public_id: str, item: dict[str, Any]
    ) -> UploadSession:
        session = UploadSession(
            id="AAMk" + secrets.token_urlsafe(18),
            token=secrets.token_urlsafe(32),
            address=address,
            message_id=message_id,
            public_id=public_id,
            name=item["name"],
            size=item["size"],
            content_type=item.get("contentType") or "application/octet-stream",
            inline=bool(item.get("isInline")),
            content_id=item.get("contentId"),
            expires=datetime.datetime.now(datetime.UTC) + UPLOAD_SESSION_LIFETIME,
        )
        with self._lock:
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> UploadSession | None:
        with self._lock:
            return self._sessions.get(session_id)

    def close(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def expire_all(self) -> None:
        """As if every session's time had run out (tests)."""
        with self._lock:
            for session in self._sessions.values():
                session.expires = datetime.datetime.now(datetime.UTC) - datetime.timedelta(1)


SESSION_PATH = re.compile(r"AttachmentSessions\('([^']+)'\)")
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def upload_session_of(server: SimulatorServer, target: str) -> UploadSession | None:
    """The session a pre-authenticated upload URL names, if its token matches."""
    split = urllib.parse.urlsplit(target)
    found = SESSION_PATH.search(urllib.parse.unquote(split.path))
    session = server.upload_sessions.get(found.group(1)) if found else None
    token = urllib.parse.parse_qs(split.query).get("authtoken", [""])[0]
    if session is None or not secrets.compare_digest(session.token, token):
        return None
    return session


def upload_chunk(
    server: SimulatorServer, session: UploadSession, content_range: str | None, chunk: bytes
) -> GraphResponse:
    """One PUT of an upload session: the bytes must continue exactly where the last ended;
    the last one attaches the file (201 with its URL in `Location`, no body)."""
    if session.expires < datetime.datetime.now(datetime.UTC):
        server.upload_sessions.close(session.id)
        return graph_error(404, "ErrorItemNotFound", "The upload session has expired.")
    mailbox = server.mailboxes.get(session.address.lower())
    if mailbox is None:
        return graph_error(404, "ErrorItemNotFound", "The upload session is gone.")
    with mailbox.lock:
        if session.message_id not in mailbox.messages:
            server.upload_sessions.close(session.id)
            return graph_error(404, "ErrorItemNotFound", "The message no longer exists.")
        return _apply_chunk(server, mailbox, session, content_range, chunk)


def _apply_chunk(
    server: SimulatorServer,
    mailbox: Mailbox,
    session: UploadSession,
    content_range: str | None,
    chunk: bytes,
) -> GraphResponse:
    parsed = CONTENT_RANGE.match((content_range or "").strip())
    if parsed is None:
        return graph_error(400, "InvalidContentRange", "Content-Range must be bytes a-b/total.")
    start, end, total = (int(g) for g in parsed.groups())
    if total != session.size or end < start or end - start + 1 != len(chunk):
        return graph_error(
            400, "InvalidContentRange", "Content-Range does not match the body or the size."
        )
    if start != len(session.received) or end >= session.size:
        response = graph_error(
            416, "RequestedRangeNotSatisfiable", "The range does not follow the uploaded bytes."
        )
        response.body["nextExpectedRanges"] = [str(len(session.received))]  # type: ignore[index]
        return response
    session.received += chunk
    server.writes.count("uploadChunk")
    if len(session.received) < session.size:
        return GraphResponse(
            200,
            {
                "@odata.context": f"{server.base_url}{UPLOAD_PATH_PREFIX}{CHUNK_CONTEXT}",
                "ExpirationDateTime": iso(session.expires),
                "nextExpectedRanges": [str(len(session.received))],
            },
        )
    attachment_id = mailbox.add_attachment(
        session.message_id,
        name=session.name,
        content=bytes(session.received),
        content_type=session.content_type,
        inline=session.inline,
        content_id=session.content_id,
    )
    server.upload_sessions.close(session.id)
    server.writes.count("uploadedAttachment")
    location = session.url(server.base_url).partition("/AttachmentSessions(")[0]
    headers = {"Location": f"{location}/Attachments('{attachment_id}')"}
    return GraphResponse(201, b"", headers)
