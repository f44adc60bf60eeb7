"""Sending from a case through the API: `POST /api/v1/cases/{id}/reply` and `/forward`.

JSON, or multipart/form-data when files are attached (`attachments`, repeated). The body is
HTML (`body`, cleaned of scripts and event handlers) or plain text (`text`); what was sent
answers 201 as one message of the case's conversation.
"""

from __future__ import annotations

import nh3
from django.conf import settings
from django.utils.html import linebreaks
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from cases import selectors, services
from cases.api.serializers import CaseMessageSerializer
from cases.models import Case
from crm.errors import ServiceError
from mailsync.services import OutgoingFile


class AddressListField(serializers.ListField):
    """A list of addresses; a multipart form may also give one comma-separated value."""

    child = serializers.EmailField()

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = [part.strip() for part in data.split(",") if part.strip()]
        elif isinstance(data, list) and len(data) == 1 and isinstance(data[0], str):
            data = [part.strip() for part in data[0].split(",") if part.strip()]
        return super().to_internal_value(data)


class SendSerializer(serializers.Serializer):
    body = serializers.CharField(required=False, allow_blank=True, help_text="HTML.")
    text = serializers.CharField(
        required=False, allow_blank=True, help_text="Plain text, instead of `body`."
    )
    message = serializers.IntegerField(
        required=False, help_text="The case's message to answer (default: the customer's latest)."
    )
    to = AddressListField(required=False, default=list)
    cc = AddressListField(required=False, default=list)
    bcc = AddressListField(required=False, default=list)
    signature = serializers.BooleanField(required=False, default=True)

    def validate(self, data: dict) -> dict:
        if not (data.get("body") or "").strip() and not (data.get("text") or "").strip():
            raise serializers.ValidationError({"body": ["Write something to send."]})
        return data


class ReplySerializer(SendSerializer):
    mode = serializers.ChoiceField(choices=["reply", "reply_all"], default="reply")


class ForwardSerializer(SendSerializer):
    to = AddressListField(min_length=1)


def body_html(data: dict) -> str:
    if (data.get("body") or "").strip():
        return nh3.clean(data["body"])
    return linebreaks(data["text"].strip(), autoescape=True)


def uploaded_files(request: Request) -> list[OutgoingFile]:
    files = request.FILES.getlist("attachments") if hasattr(request, "FILES") else []
    total = sum(f.size for f in files)
    if total > settings.MAIL_SEND_MAX_BYTES:
        limit = settings.MAIL_SEND_MAX_BYTES // (1024 * 1024)
        raise exceptions.ValidationError(
            {"attachments": [f"Attachments may add up to {limit} MB; these are larger."]}
        )
    return [
        OutgoingFile(
            name=f.name or "attachment",
            content=f.read(),
            content_type=f.content_type or "application/octet-stream",
        )
        for f in files
    ]


def _case_message(case: Case, message_id: int | None):
    if message_id is None:
        return None
    link = selectors.case_messages(case=case).filter(message_id=message_id).first()
    if link is None:
        raise exceptions.ValidationError({"message": ["No such message in this case."]})
    return link.message


def send_from_case(request: Request, case: Case, *, forward: bool) -> Response:
    body = (ForwardSerializer if forward else ReplySerializer)(data=request.data)
    body.is_valid(raise_exception=True)
    data = body.validated_data
    common = {
        "actor": request.user,
        "case": case,
        "body_html": body_html(data),
        "message": _case_message(case, data.get("message")),
        "to": data["to"],
        "cc": data["cc"],
        "bcc": data["bcc"],
        "attachments": uploaded_files(request),
        "signature": data["signature"],
    }
    try:
        if forward:
            link = services.case_forward(**common)
        else:
            link = services.case_reply(mode=data["mode"], **common)
    except ServiceError as exc:
        raise exceptions.ValidationError({exc.field or "non_field_errors": [exc.message]}) from exc
    return Response(CaseMessageSerializer(link).data, status=status.HTTP_201_CREATED)


reply_schema = extend_schema(request=ReplySerializer, responses={201: CaseMessageSerializer})
forward_schema = extend_schema(request=ForwardSerializer, responses={201: CaseMessageSerializer})
