"""The read-only mail API: `/api/v1/mail/messages` and `/api/v1/mail/message/{id}`.

Field names follow the reference specification (`mail-calendar-api-spec.md`), extended with
what an integrator needs to work with the result (mailbox, folder, read state, flags,
threading ids). Pages are keyset pages over (date, id), newest first; `nextPageToken` is an
opaque signed token, and a token that does not verify is a 400 naming the parameter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core import signing
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import FileResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.errors import ServiceError
from mailsync import selectors, services
from mailsync.choices import FlagStatus
from mailsync.models import Attachment, Message
from mailsync.services.attachments import attachment_content_ensure

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
PAGE_TOKEN_SALT = "mailsync.api.messages"  # noqa: S105 - a signing salt, not a secret


def _addresses(values: list[dict[str, str]]) -> list[str]:
    return [v.get("address", "") for v in values if v.get("address")]


def message_summary(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.pk),
        "mailbox": message.mailbox.address,
        "folder": message.folder.well_known or str(message.folder_id),
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
            },
            many=True,
        ),
    },
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


def _position_decode(token: str) -> tuple[datetime, int]:
    try:
        stamp, pk = signing.loads(token, salt=PAGE_TOKEN_SALT)
        return datetime.fromisoformat(stamp), int(pk)
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise exceptions.ValidationError({"pageToken": ["Invalid page token."]}) from exc


def _position_encode(message: Message) -> str:
    return signing.dumps([message.received_at.isoformat(), message.pk], salt=PAGE_TOKEN_SALT)


class MessageListView(APIView):
    """Messages of the mailboxes the caller sees, newest first."""

    @extend_schema(
        operation_id="mail_messages_list",
        parameters=[MessageListParams],
        responses={200: MessagePageSchema},
        tags=["mail"],
    )
    def get(self, request: Request) -> Response:
        params = MessageListParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        messages = self._filtered(request, params.validated_data)
        if token := params.validated_data.get("pageToken"):
            stamp, pk = _position_decode(token)
            messages = messages.filter(Q(received_at__lt=stamp) | Q(received_at=stamp, pk__lt=pk))
        size = params.validated_data["pageSize"]
        page = list(
            messages.select_related("mailbox", "folder")
            .defer("body_html", "body_text", "headers")
            .order_by("-received_at", "-pk")[: size + 1]
        )
        next_token = _position_encode(page[size - 1]) if len(page) > size else None
        return Response(
            {"messages": [message_summary(m) for m in page[:size]], "nextPageToken": next_token}
        )

    def _filtered(self, request: Request, params: dict[str, Any]) -> QuerySet[Message]:
        messages = selectors.message_list(user=request.user)
        if "folder" in params and "mailbox" not in params:
            raise exceptions.ValidationError({"folder": ["A folder needs its mailbox."]})
        if "mailbox" in params:
            mailbox = selectors.mailbox_find(user=request.user, key=params["mailbox"])
            if mailbox is None:
                raise exceptions.ValidationError({"mailbox": ["No such mailbox."]})
            messages = messages.filter(mailbox=mailbox)
            if "folder" in params:
                folder = selectors.folder_find(mailbox=mailbox, key=params["folder"])
                if folder is None:
                    raise exceptions.ValidationError({"folder": ["No such folder."]})
                messages = messages.filter(folder=folder)
        return messages


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


class MessageDetailView(APIView):
    @extend_schema(
        operation_id="mail_message_retrieve",
        responses={200: MessageDetailSchema},
        tags=["mail"],
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(message_detail(self._message(request, pk)))

    @extend_schema(
        operation_id="mail_message_update",
        request=MessageChange,
        responses={200: MessageDetailSchema},
        tags=["mail"],
    )
    def patch(self, request: Request, pk: int) -> Response:
        body = MessageChange(data=request.data)
        body.is_valid(raise_exception=True)
        message, changes, actor = self._message(request, pk), body.validated_data, request.user
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
        return Response(message_detail(self._message(request, pk)))

    @extend_schema(operation_id="mail_message_delete", responses={204: None}, tags=["mail"])
    def delete(self, request: Request, pk: int) -> Response:
        """To Deleted Items; a message already there is deleted for good."""
        services.message_delete(message=self._message(request, pk), actor=request.user)
        return Response(status=204)

    def _message(self, request: Request, pk: int) -> Message:
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


class AttachmentUnavailable(exceptions.APIException):
    status_code = 502
    default_detail = "The attachment could not be fetched from Microsoft 365; try again later."
    default_code = "attachment_unavailable"


class AttachmentContentView(APIView):
    """The attachment's bytes; fetched from Microsoft 365 on first use, then from storage."""

    @extend_schema(
        operation_id="mail_attachment_content",
        responses={(200, "application/octet-stream"): bytes},
        tags=["mail"],
    )
    def get(self, request: Request, pk: int, attachment_pk: int) -> FileResponse:
        attachment = (
            Attachment.objects.filter(
                pk=attachment_pk,
                message_id=pk,
                message__in=selectors.message_list(user=request.user),
            )
            .select_related("message__mailbox")
            .first()
        )
        if attachment is None:
            raise exceptions.NotFound("No such attachment.")
        try:
            attachment = attachment_content_ensure(attachment=attachment)
        except ServiceError as exc:  # Graph refused or is unreachable; MailboxError likewise
            raise AttachmentUnavailable(
                f"The attachment could not be fetched from Microsoft 365: {exc.message}"
            ) from exc
        return FileResponse(
            attachment.content.open("rb"),
            as_attachment=not attachment.is_inline,
            filename=attachment.name or "attachment",
            content_type=attachment.content_type or "application/octet-stream",
        )
