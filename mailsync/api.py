"""The mail API under `/api/v1/mail/`: lists with filters and search, a message with its
recipients, body and attachments, attachment bytes, and the writes (send, change, delete).

Field names follow the reference specification (`mail-calendar-api-spec.md`), extended with
what an integrator needs to work with the result (mailbox, folder, read state, flags,
threading ids). Pages are keyset pages, newest first (best match first while searching);
`nextPageToken` is an opaque signed token, and a token that does not verify is a 400 naming
the parameter. Hot pages come from a cache keyed by change numbers (`mailsync.cache`). Writes
go through the mail services, so Microsoft 365 mailboxes change there too.
"""

from __future__ import annotations

import base64
import binascii
import csv
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from django.core import signing
from django.db import transaction
from django.http import FileResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.html import escape, linebreaks
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.api.negotiation import ParameterNamedFormat
from crm.errors import ServiceError
from crm.exports import Echo, spreadsheet_cell, streaming_csv
from crm.graph.auth import GraphAuthError
from crm.graph.errors import GraphError
from mailsync import cache, selectors, services
from mailsync.choices import FlagStatus
from mailsync.models import MIME_TYPE, Attachment, Message
from mailsync.services.attachments import attachment_content_ensure
from mailsync.services.delegated import ReconnectNeeded

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
PAGE_TOKEN_SALT = "mailsync.api.messages.v2"  # noqa: S105 - a signing salt, not a secret
MAX_RECIPIENTS = 500
MAX_ATTACHMENTS = 50
MAX_SEND_BYTES = 35 * 1024 * 1024  # attachments decoded, together; Graph takes up to 150 MB
MAX_BODY_CHARS = 4 * 1024 * 1024
SEND_MODES = {"new": "new", "reply": "reply", "replyAll": "reply_all", "forward": "forward"}
# Quoted filename characters every client parses alike: no quote, backslash or semicolon.
PLAIN_FILENAME = re.compile(r"[^A-Za-z0-9 !#$%&\'()*+,\-.=@\[\]^_`{}~]")


def _addresses(values: list[dict[str, str]]) -> list[str]:
    return [v.get("address", "") for v in values if v.get("address")]


def message_summary(message: Message) -> dict[str, Any]:
    folder = message.folder
    return {
        "id": str(message.pk),
        "mailbox": message.mailbox.address,
        "folder": (folder.well_known or str(folder.pk)) if folder is not None else None,
        "subject": message.subject,
        "from": message.from_address,
        "fromName": message.from_name,
        "to": _addresses(message.to),
        "date": message.received_at,
        "hasAttachments": message.has_attachments,
        "preview": message.preview,
        "isRead": message.is_read,
        "importance": message.importance,
        "flag": message.flag_status,
        "categories": message.categories,
        "conversationId": message.conversation_id,
    }


def attachment_summary(attachment: Attachment) -> dict[str, Any]:
    return {
        "id": str(attachment.pk),
        "name": attachment.name,
        "size": attachment.size,
        "contentType": attachment.content_type,
        "isInline": attachment.is_inline,
        "contentId": attachment.content_id,
    }


def message_detail(message: Message) -> dict[str, Any]:
    return {
        **message_summary(message),
        "cc": _addresses(message.cc),
        "bcc": _addresses(message.bcc),
        "replyTo": _addresses(message.reply_to),
        "sentDate": message.sent_at,
        "body": message.body_html or message.body_text,
        "bodyType": "html" if message.body_html else "text",
        "bodyText": message.body_text,
        "internetMessageId": message.internet_message_id,
        "inReplyTo": message.in_reply_to,
        "references": message.references.split(),
        "attachments": [attachment_summary(a) for a in message.attachments.all()],
    }


MESSAGE_FIELDS = {
    "id": serializers.CharField(),
    "mailbox": serializers.EmailField(),
    "folder": serializers.CharField(help_text="Well-known name, or the folder's id."),
    "subject": serializers.CharField(),
    "from": serializers.CharField(),
    "fromName": serializers.CharField(),
    "to": serializers.ListField(child=serializers.CharField()),
    "date": serializers.DateTimeField(),
    "hasAttachments": serializers.BooleanField(),
    "preview": serializers.CharField(),
    "isRead": serializers.BooleanField(),
    "importance": serializers.CharField(),
    "flag": serializers.CharField(),
    "categories": serializers.ListField(child=serializers.CharField()),
    "conversationId": serializers.CharField(),
}
MessagePageSchema = inline_serializer(
    "MailMessagePage",
    {
        "messages": inline_serializer("MailMessageSummary", MESSAGE_FIELDS, many=True),
        "nextPageToken": serializers.CharField(allow_null=True),
    },
)
MessageDetailSchema = inline_serializer(
    "MailMessage",
    {
        **MESSAGE_FIELDS,
        "cc": serializers.ListField(child=serializers.CharField()),
        "bcc": serializers.ListField(child=serializers.CharField()),
        "replyTo": serializers.ListField(child=serializers.CharField()),
        "sentDate": serializers.DateTimeField(allow_null=True),
        "body": serializers.CharField(),
        "bodyType": serializers.ChoiceField(choices=["html", "text"]),
        "bodyText": serializers.CharField(),
        "internetMessageId": serializers.CharField(),
        "inReplyTo": serializers.CharField(),
        "references": serializers.ListField(child=serializers.CharField()),
        "attachments": inline_serializer(
            "MailAttachment",
            {
                "id": serializers.CharField(),
                "name": serializers.CharField(),
                "size": serializers.IntegerField(),
                "contentType": serializers.CharField(),
                "isInline": serializers.BooleanField(),
                "contentId": serializers.CharField(),
            },
            many=True,
        ),
    },
)

FILTER_HELP = (
    "Comma-separated terms that must all hold: `unread`, `read`, `flagged`, `hasAttachments`, "
    "`from:anna@example.com` or `from:@example.com` (a domain), `to:` likewise (To or Cc), "
    "`since:2026-11-01` and `until:2026-11-30` (days in your time zone, `until` inclusive; or "
    "ISO 8601 instants with an offset, `until` exclusive), `importance:high`, "
    "`case:CASE-000123` (messages of a case you see, by number or id). Example: "
    "`filter=unread,from:@nordwind.example,since:2026-11-01`. An unusable term is a 400 "
    "naming `filter`."
)
SEARCH_HELP = (
    'Full-text search over subject, sender and body (websearch syntax: `"exact phrase"`, '
    "`or`, `-exclude`), best match first among the 1,000 newest matches (more words or "
    "`filter` terms reach older mail); a misspelled search that matches nothing falls back "
    "to similar subjects."
)


class MessageListParams(serializers.Serializer):
    mailbox = serializers.CharField(required=False, help_text="Address or id.")
    folder = serializers.CharField(
        required=False, help_text="Id or well-known name (inbox, sentitems...); needs mailbox."
    )
    pageSize = serializers.IntegerField(  # noqa: N815 - the API's published name
        required=False, min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE
    )
    pageToken = serializers.CharField(required=False)  # noqa: N815
    filter = serializers.CharField(
        required=False, allow_blank=True, max_length=2000, help_text=FILTER_HELP
    )
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=selectors.MAX_SEARCH_LENGTH,
        help_text=SEARCH_HELP,
    )


def _position_decode(token: str) -> selectors.PagePosition:
    try:
        mode, stamp, pk, rank = signing.loads(token, salt=PAGE_TOKEN_SALT)
        return selectors.PagePosition(
            mode=str(mode),
            received_at=datetime.fromisoformat(stamp),
            pk=int(pk),
            rank=None if rank is None else float(rank),
        )
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise exceptions.ValidationError({"pageToken": ["Invalid page token."]}) from exc


def _position_encode(position: selectors.PagePosition | None) -> str | None:
    if position is None:
        return None
    stamp = position.received_at.isoformat()
    return signing.dumps([position.mode, stamp, position.pk, position.rank], salt=PAGE_TOKEN_SALT)


@dataclass(frozen=True)
class ListQuery:
    """A validated list request."""

    scope: selectors.MessageScope
    filters: list[selectors.MessageFilter]
    search: str
    position: selectors.PagePosition | None
    size: int

    @property
    def cacheable(self) -> bool:
        return all(f.cacheable for f in self.filters)

    def identity(self) -> dict[str, Any]:
        """Everything besides the scope that decides the page, canonical (for its cache key)."""
        return {
            "filters": [f.term for f in self.filters],
            "q": self.search,
            "size": self.size,
            "after": _position_encode(self.position),
        }


def _list_query(request: Request) -> ListQuery:
    params = MessageListParams(data=request.query_params)
    params.is_valid(raise_exception=True)
    data = params.validated_data
    try:
        scope = selectors.message_scope(
            user=request.user, mailbox=data.get("mailbox", ""), folder=data.get("folder", "")
        )
        filters = selectors.message_filters_parse(data.get("filter", ""), user=request.user)
    except selectors.MessageQueryError as exc:
        raise exceptions.ValidationError({exc.field: [exc.message]}) from None
    search = " ".join(data.get("q", "").split())
    position = _position_decode(data["pageToken"]) if data.get("pageToken") else None
    if position is not None and not selectors.message_search_mode_fits(position.mode, search):
        raise exceptions.ValidationError(
            {"pageToken": ["This page token belongs to another search."]}
        )
    return ListQuery(scope, filters, search, position, data["pageSize"])


def _list_page(query: ListQuery) -> dict[str, Any]:
    mode = query.position.mode if query.position else None
    page = selectors.message_page(
        scope=query.scope, filters=query.filters, search=query.search, mode=mode,
        position=query.position, size=query.size,
    )  # fmt: skip
    return {
        "messages": [message_summary(m) for m in page.messages],
        "nextPageToken": _position_encode(page.next_position),
    }


class MessageListView(APIView):
    """Messages of the mailboxes the caller sees, newest first (best match first when
    searching), filtered; hot pages come from the change-number cache (`mailsync.cache`)."""

    @extend_schema(
        operation_id="mail_messages_list",
        parameters=[MessageListParams],
        responses={200: MessagePageSchema},
        tags=["mail"],
    )
    def get(self, request: Request) -> Response:
        query = _list_query(request)
        if not query.cacheable:
            cache.page_bypass()
            return Response(_list_page(query))
        key = cache.page_key(scope=query.scope, request=query.identity())
        if (cached := cache.page_get(key)) is not None:
            return Response(cached)
        body = _list_page(query)
        cache.page_set(key, body)
        return Response(body)


class MessageChange(serializers.Serializer):
    """What an agent may change on a message (Microsoft 365 messages change there too)."""

    isRead = serializers.BooleanField(required=False)  # noqa: N815 - the API's field names
    flag = serializers.ChoiceField(choices=FlagStatus.values, required=False)
    categories = serializers.ListField(
        child=serializers.CharField(max_length=255), max_length=25, required=False
    )
    folder = serializers.CharField(
        required=False, help_text="A folder id or well-known name (inbox, archive, …)."
    )


def _visible_message(request: Request, pk: int) -> Message:
    message = (
        selectors.message_list(user=request.user)
        .select_related("mailbox", "folder")
        .prefetch_related("attachments")
        .filter(pk=pk)
        .first()
    )
    if message is None:
        raise exceptions.NotFound("No such message.")
    return message


class MessageDetailView(APIView):
    @extend_schema(
        operation_id="mail_message_retrieve",
        responses={200: MessageDetailSchema},
        tags=["mail"],
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(message_detail(_visible_message(request, pk)))

    @extend_schema(
        operation_id="mail_message_update",
        request=MessageChange,
        responses={200: MessageDetailSchema},
        tags=["mail"],
    )
    def patch(self, request: Request, pk: int) -> Response:
        body = MessageChange(data=request.data)
        body.is_valid(raise_exception=True)
        message, changes, actor = _visible_message(request, pk), body.validated_data, request.user
        with transaction.atomic():
            if "isRead" in changes:
                message = services.message_set_read(
                    message=message, read=changes["isRead"], actor=actor
                )
            if "flag" in changes:
                message = services.message_set_flag(
                    message=message, status=changes["flag"], actor=actor
                )
            if "categories" in changes:
                message = services.message_set_categories(
                    message=message, categories=changes["categories"], actor=actor
                )
            if "folder" in changes:
                folder = selectors.folder_find(mailbox=message.mailbox, key=changes["folder"])
                if folder is None:
                    raise exceptions.ValidationError({"folder": ["No such folder."]})
                message = services.message_move(message=message, folder=folder, actor=actor)
        return Response(message_detail(_visible_message(request, pk)))

    @extend_schema(operation_id="mail_message_delete", responses={204: None}, tags=["mail"])
    def delete(self, request: Request, pk: int) -> Response:
        """To Deleted Items; a message already there is deleted for good."""
        services.message_delete(message=_visible_message(request, pk), actor=request.user)
        return Response(status=204)


class Microsoft365Unavailable(exceptions.APIException):
    status_code = 502
    default_detail = "Microsoft 365 did not answer; try again later."
    default_code = "microsoft365_unavailable"


# --- attachments -------------------------------------------------------------------------------


def content_disposition(name: str) -> str:
    """`attachment` with a filename no client can misread: the last path segment only, no
    control characters; quoted as plain ASCII, plus RFC 5987's UTF-8 form when the name has
    characters the quoted form cannot carry."""
    last = re.split(r"[/\\]", name)[-1]
    cleaned = "".join(ch for ch in last if not unicodedata.category(ch).startswith("C"))
    cleaned = cleaned.strip(" .")[:200] or "attachment"
    ascii_name = unicodedata.normalize("NFKD", cleaned).encode("ascii", "ignore").decode()
    fallback = PLAIN_FILENAME.sub("_", ascii_name).strip(" .") or "attachment"
    if fallback == cleaned:
        return f'attachment; filename="{fallback}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(cleaned, safe='')}"


def _attachment_response(attachment: Attachment) -> FileResponse:
    """The bytes, always as a download: a browser must never render a customer's HTML or SVG
    on our origin, whatever type it claims (nosniff, and a sandbox if it tried)."""
    try:
        attachment = attachment_content_ensure(attachment=attachment)
        content = attachment.content.open("rb")
    except ServiceError as exc:  # Graph refused or is unreachable; MailboxError likewise
        raise Microsoft365Unavailable(
            f"The attachment could not be fetched from Microsoft 365: {exc.message}"
        ) from exc
    except OSError as exc:
        raise exceptions.NotFound("The attachment's file is missing from storage.") from exc
    response = FileResponse(content, content_type=attachment.served_content_type())
    response["Content-Disposition"] = content_disposition(attachment.name)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _visible_attachment(request: Request, pk: int, message_pk: int | None = None) -> Attachment:
    attachments = Attachment.objects.filter(
        pk=pk, message__in=selectors.message_list(user=request.user)
    )
    if message_pk is not None:
        attachments = attachments.filter(message_id=message_pk)
    attachment = attachments.select_related("message__mailbox").first()
    if attachment is None:
        raise exceptions.NotFound("No such attachment.")
    return attachment


ATTACHMENT_SCHEMA = {
    "responses": {(200, "application/octet-stream"): OpenApiTypes.BINARY},
    "tags": ["mail"],
    "description": (
        "The attachment's bytes with its content type, always as a download "
        "(`Content-Disposition: attachment`, `X-Content-Type-Options: nosniff`). Microsoft 365 "
        "attachments are fetched on first use, then served from storage; 502 when Microsoft "
        "365 cannot deliver one."
    ),
}


class AttachmentView(APIView):
    """`/api/v1/mail/attachments/{id}`."""

    @extend_schema(operation_id="mail_attachment_download", **ATTACHMENT_SCHEMA)
    def get(self, request: Request, pk: int) -> FileResponse:
        return _attachment_response(_visible_attachment(request, pk))


class AttachmentContentView(APIView):
    """`/api/v1/mail/message/{id}/attachments/{attachment_id}` (the earlier address)."""

    @extend_schema(operation_id="mail_attachment_content", **ATTACHMENT_SCHEMA)
    def get(self, request: Request, pk: int, attachment_pk: int) -> FileResponse:
        return _attachment_response(_visible_attachment(request, attachment_pk, pk))


# --- sending -------------------------------------------------------------------------------------


class OutgoingAttachmentSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    contentType = serializers.CharField(  # noqa: N815 - Graph's and the API's field name
        max_length=255, required=False, default="application/octet-stream"
    )
    contentBytes = serializers.CharField(  # noqa: N815
        help_text="The file, base64-encoded.", trim_whitespace=True
    )

    def validate_contentBytes(self, value: str) -> bytes:  # noqa: N802 - DRF's naming rule
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError("Not valid base64.") from None

    def validate_contentType(self, value: str) -> str:  # noqa: N802
        value = value.split(";")[0].strip().lower()
        if not MIME_TYPE.match(value):
            raise serializers.ValidationError("Not a content type (type/subtype).")
        return value


def _recipients() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.EmailField(), required=False, default=list, max_length=MAX_RECIPIENTS
    )


class SendRequest(serializers.Serializer):
    """A message to send from a mailbox the caller sees."""

    mailbox = serializers.CharField(help_text="The sending mailbox: address or id.")
    to = _recipients()
    cc = _recipients()
    bcc = _recipients()
    subject = serializers.CharField(required=False, allow_blank=True, default="", max_length=998)
    body = serializers.CharField(
        required=False, allow_blank=True, default="", trim_whitespace=False,
        max_length=MAX_BODY_CHARS,
    )  # fmt: skip
    bodyType = serializers.ChoiceField(  # noqa: N815
        choices=["html", "text"], default="html", required=False
    )
    mode = serializers.ChoiceField(
        choices=list(SEND_MODES), default="new", required=False,
        help_text="reply, replyAll and forward need `original`; Microsoft 365 then sets the "
        "recipients and subject unless given, and threads the answer.",
    )  # fmt: skip
    original = serializers.IntegerField(
        required=False, min_value=1, help_text="The id of the message answered or forwarded."
    )
    attachments = OutgoingAttachmentSerializer(many=True, required=False, default=list)

    def validate_attachments(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(value) > MAX_ATTACHMENTS:
            raise serializers.ValidationError(f"At most {MAX_ATTACHMENTS} attachments.")
        if sum(len(a["contentBytes"]) for a in value) > MAX_SEND_BYTES:
            raise serializers.ValidationError(
                f"Attachments may add up to {MAX_SEND_BYTES // (1024 * 1024)} MB."
            )
        return value


class SendView(APIView):
    """`POST /api/v1/mail/send`: through Graph for Microsoft 365 mailboxes (Outlook threads
    it, Sent Items keeps it), through the SMTP relay for the CRM's own."""

    @extend_schema(
        operation_id="mail_send",
        request=SendRequest,
        responses={201: MessageDetailSchema},
        tags=["mail"],
    )
    def post(self, request: Request) -> Response:
        body = SendRequest(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        mailbox = selectors.mailbox_find(user=request.user, key=data["mailbox"])
        if mailbox is None:
            raise exceptions.ValidationError({"mailbox": ["No such mailbox."]})
        original = None
        if "original" in data:
            original = (
                selectors.message_list(user=request.user)
                .filter(pk=data["original"], mailbox=mailbox)
                .first()
            )
            if original is None:
                raise exceptions.ValidationError({"original": ["No such message in this mailbox."]})
        html = data["body"] if data["bodyType"] == "html" else linebreaks(escape(data["body"]))
        files = [
            services.OutgoingFile(a["name"], a["contentBytes"], a["contentType"])
            for a in data["attachments"]
        ]
        try:
            sent = services.send_message(
                mailbox=mailbox, body_html=html, subject=data["subject"], to=data["to"],
                cc=data["cc"], bcc=data["bcc"], mode=SEND_MODES[data["mode"]],
                original=original, attachments=files, actor=request.user,
            )  # fmt: skip
        except ReconnectNeeded:
            raise  # the owner must sign in again: a 400 that says so
        except (GraphError, GraphAuthError) as exc:
            raise Microsoft365Unavailable(
                f"Microsoft 365 did not take the message: {exc.message}"
            ) from exc
        stored = (
            Message.objects.select_related("mailbox", "folder")
            .prefetch_related("attachments")
            .get(pk=sent.pk)
        )
        return Response(message_detail(stored), status=201)


# --- sent-mail recipient statistics -------------------------------------------------------------

RECIPIENT_PAGE_TOKEN_SALT = "mailsync.api.recipient_stats.v1"  # noqa: S105 - a signing salt
RECIPIENT_ORDERINGS = [
    name for field in selectors.RECIPIENT_STAT_FIELDS for name in (field, f"-{field}")
]
RECIPIENT_INTEGER_KEYS = {"sent_to", "sent_cc", "sent_bcc", "sent_total"}
RECIPIENT_TIME_KEYS = {"first_sent_at", "last_sent_at"}


class RecipientStatsParams(serializers.Serializer):
    mailbox = serializers.ListField(
        child=serializers.CharField(max_length=320),
        required=False,
        max_length=100,
        help_text="A mailbox's id or address; repeat it for several (`mailbox=3&mailbox=7`). "
        "Default: every mailbox you see. The counts are summed over them.",
    )
    domain = serializers.CharField(
        required=False, allow_blank=True, max_length=320, help_text="Recipients of this domain."
    )
    q = serializers.CharField(
        required=False, allow_blank=True, max_length=320, help_text="The address contains this."
    )
    min_total = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=2**31 - 1,
        help_text="At least this many mails sent (to, cc and bcc).",
    )
    last_sent_after = serializers.CharField(
        required=False,
        max_length=40,
        help_text="Last mail sent at or after this: a day (from its start, in your time zone) "
        "or an ISO 8601 time.",
    )
    last_sent_before = serializers.CharField(
        required=False,
        max_length=40,
        help_text="Last mail sent before this: a day (before its start, in your time zone) or "
        "an ISO 8601 time.",
    )
    ordering = serializers.ChoiceField(
        choices=RECIPIENT_ORDERINGS,
        default="address",
        help_text="A field, `-` first for descending; ties go by address.",
    )
    pageSize = serializers.IntegerField(  # noqa: N815 - as in the message list
        required=False, min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE
    )
    pageToken = serializers.CharField(required=False)  # noqa: N815
    format = serializers.ChoiceField(
        choices=[("json", "JSON"), ("csv", "CSV")],
        default="json",
        help_text="`csv`: every matching row (no pages) as a `text/csv` download.",
    )

    def validate_domain(self, value: str) -> str:
        return value.strip().lower().removeprefix("@")

    def validate_q(self, value: str) -> str:
        return value.strip().lower()

    def _instant(self, value: str) -> datetime:
        try:
            return selectors.recipient_instant(value, user=self.context["user"])
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_last_sent_after(self, value: str) -> datetime:
        return self._instant(value)

    def validate_last_sent_before(self, value: str) -> datetime:
        return self._instant(value)


class RecipientStatSerializer(serializers.Serializer):
    address = serializers.CharField()
    domain = serializers.CharField()
    sent_to = serializers.IntegerField()
    sent_cc = serializers.IntegerField()
    sent_bcc = serializers.IntegerField()
    sent_total = serializers.IntegerField()
    first_sent_at = serializers.DateTimeField()
    last_sent_at = serializers.DateTimeField()


RecipientStatsPageSchema = inline_serializer(
    "MailRecipientStatsPage",
    {
        "recipients": RecipientStatSerializer(many=True),
        "nextPageToken": serializers.CharField(allow_null=True),
    },
)


def _recipient_token(ordering: str, row: dict[str, Any]) -> str:
    key = ordering.removeprefix("-")
    value = row[key].isoformat() if key in RECIPIENT_TIME_KEYS else row[key]
    return signing.dumps([ordering, value, row["address"]], salt=RECIPIENT_PAGE_TOKEN_SALT)


def _recipient_position(token: str, ordering: str) -> tuple[Any, str]:
    try:
        token_ordering, value, address = signing.loads(token, salt=RECIPIENT_PAGE_TOKEN_SALT)
        key = str(token_ordering).removeprefix("-")
        if key in RECIPIENT_TIME_KEYS:
            value = datetime.fromisoformat(value)
        elif key in RECIPIENT_INTEGER_KEYS:
            value = int(value)
        else:
            value = str(value)
        address = str(address)
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise exceptions.ValidationError({"pageToken": ["Invalid page token."]}) from exc
    if token_ordering != ordering:
        raise exceptions.ValidationError(
            {"pageToken": ["This page token is for another ordering."]}
        )
    return value, address


def _csv_cell(value: Any) -> Any:
    return spreadsheet_cell(value.isoformat() if isinstance(value, datetime) else value)


def _recipient_csv_lines(rows: Any) -> Any:
    writer = csv.writer(Echo())
    yield writer.writerow(selectors.RECIPIENT_STAT_FIELDS)
    for row in rows.iterator(chunk_size=2000):
        yield writer.writerow([_csv_cell(row[name]) for name in selectors.RECIPIENT_STAT_FIELDS])


class RecipientStatsView(APIView):
    """Who the mailboxes you see sent mail to: per recipient address, how many mails went
    to it (To, Cc and Bcc apart and together) and the first and last time, summed over the
    chosen mailboxes. Kept current from the mailboxes' Sent Items after each sync round."""

    renderer_classes = [JSONRenderer]
    content_negotiation_class = ParameterNamedFormat

    @extend_schema(
        operation_id="mail_recipient_stats_list",
        parameters=[RecipientStatsParams],
        responses={
            (200, "application/json"): RecipientStatsPageSchema,
            (200, "text/csv"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description="With `format=csv`: a header row "
                f"({', '.join(selectors.RECIPIENT_STAT_FIELDS)}), then every matching "
                "recipient in the chosen order; sent as an attachment.",
            ),
            400: OpenApiResponse(description="A parameter that cannot be used, named."),
        },
        tags=["mail"],
    )
    def get(self, request: Request) -> Response | StreamingHttpResponse:
        params = RecipientStatsParams(data=request.query_params, context={"user": request.user})
        params.is_valid(raise_exception=True)
        data = params.validated_data
        mailbox_ids = None
        if data.get("mailbox"):
            try:
                mailbox_ids = selectors.recipient_mailbox_ids(
                    user=request.user, keys=data["mailbox"]
                )
            except selectors.MessageQueryError as exc:
                raise exceptions.ValidationError({exc.field: [exc.message]}) from None
        filters = selectors.RecipientStatFilters(
            domain=data.get("domain", ""),
            q=data.get("q", ""),
            min_total=data.get("min_total"),
            last_sent_after=data.get("last_sent_after"),
            last_sent_before=data.get("last_sent_before"),
        )
        ordering = data["ordering"]
        rows = selectors.recipient_stats_for_user(user=request.user, mailbox_ids=mailbox_ids)
        rows = selectors.recipient_stats_ordered(
            selectors.recipient_stats_filter(rows, filters), ordering=ordering
        )
        if data["format"] == "csv":
            stamp = timezone.now().strftime("%Y%m%dT%H%M")
            lines = _recipient_csv_lines(rows)
            return streaming_csv(request, lines, filename=f"recipient-stats-{stamp}.csv")
        if data.get("pageToken"):
            value, address = _recipient_position(data["pageToken"], ordering)
            rows = selectors.recipient_stats_after(
                rows, ordering=ordering, value=value, address=address
            )
        size = data["pageSize"]
        page = list(rows[: size + 1])
        more = len(page) > size
        page = page[:size]
        return Response(
            {
                "recipients": RecipientStatSerializer(page, many=True).data,
                "nextPageToken": _recipient_token(ordering, page[-1]) if more else None,
            }
        )
