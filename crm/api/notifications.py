"""`/api/v1/notifications`: the signed-in user's own notifications (crm.notifications).

Nobody lists or marks another's: every query starts from `notifications_for(request.user)`.
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from crm import notifications
from crm.models import Notification


class NotificationSerializer(serializers.ModelSerializer):
    unread = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = ["id", "kind", "title", "body", "url", "created_at", "read_at", "unread"]
        read_only_fields = fields

    def get_unread(self, notification: Notification) -> bool:
        return notification.read_at is None


class NotificationListQuery(serializers.Serializer):
    unread = serializers.BooleanField(required=False, default=False)


class MarkReadSerializer(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, max_length=1000
    )
    all = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs: dict) -> dict:
        if attrs["all"] == ("ids" in attrs):
            raise serializers.ValidationError('Send either "ids": [...] or "all": true.')
        return attrs


COUNT = inline_serializer("NotificationCount", {"count": serializers.IntegerField()})
MARKED = inline_serializer("NotificationsMarked", {"marked": serializers.IntegerField()})


@extend_schema(tags=["notifications"])
class NotificationViewSet(viewsets.GenericViewSet):
    """The bell's contents: assignments, mentions, customer replies and SLA warnings."""

    serializer_class = NotificationSerializer
    # The only filter is `unread`, validated in `list`; the cursor's default order, -pk, is
    # newest first (pk grows with created_at) and stable.
    filter_backends: list[type] = []

    def get_queryset(self) -> QuerySet[Notification]:
        return notifications.notifications_for(self.request.user)

    @extend_schema(
        parameters=[OpenApiParameter("unread", OpenApiTypes.BOOL, description="Only unread ones.")]
    )
    def list(self, request: Request) -> Response:
        """Your notifications, newest first; `unread=true` for the unread ones only."""
        query = NotificationListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = notifications.notifications_for(
            request.user, unread_only=query.validated_data["unread"]
        )
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=None, responses=COUNT)
    @action(detail=False, methods=["get"], url_path="unread-count")
    def unread_count(self, request: Request) -> Response:
        """How many of your notifications are unread: the number on the bell."""
        return Response({"count": notifications.unread_count(request.user)})

    @extend_schema(
        request=MarkReadSerializer,
        responses=MARKED,
        examples=[
            OpenApiExample("Some", value={"ids": [12, 13]}, request_only=True),
            OpenApiExample("All", value={"all": True}, request_only=True),
        ],
    )
    @action(detail=False, methods=["post"], url_path="read")
    def read(self, request: Request) -> Response:
        """Mark your own notifications read; ids of others' are ignored."""
        body = MarkReadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ids = "all" if body.validated_data["all"] else body.validated_data["ids"]
        marked = notifications.notifications_mark_read(user=request.user, ids=ids)
        return Response({"marked": marked})
