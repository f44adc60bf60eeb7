"""Kernel endpoints under /api/v1/."""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import serializers, viewsets

from crm import selectors
from crm.models import Team


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name", "email", "created_at"]


class TeamViewSet(viewsets.ReadOnlyModelViewSet):
    """Teams (queues). Read-only here; admins manage teams in Django admin."""

    serializer_class = TeamSerializer
    filterset_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]

    def get_queryset(self) -> QuerySet[Team]:
        return selectors.team_list(user=self.request.user)
