"""Kernel endpoints under /api/v1/: teams and agents.

Everyone signed in reads them (agents need them to assign work). Writes: admins everything;
a lead edits the teams they lead and their members' workload settings (availability, pause,
capacity); every agent edits their own profile (time zone, signature, availability).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, permissions, serializers, viewsets

from crm import selectors, services
from crm.choices import Availability, Role
from crm.models import AgentProfile, Team, TeamMembership, User, validate_timezone


class MembershipSerializer(serializers.ModelSerializer):
    class Meta:
        model = TeamMembership
        fields = ["user", "is_lead"]


class TeamSerializer(serializers.ModelSerializer):
    members = MembershipSerializer(source="memberships", many=True, read_only=True)

    class Meta:
        model = Team
        fields = ["id", "name", "email", "reopen_window_days", "members", "created_at"]
        read_only_fields = ["created_at"]


class TeamPermission(permissions.BasePermission):
    message = "Only admins, and leads for the teams they lead, change teams."

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        if view.action in ("create", "destroy"):
            return selectors.user_is_admin(request.user)
        return True

    def has_object_permission(self, request, view, team: Team) -> bool:
        if request.method in permissions.SAFE_METHODS or selectors.user_is_admin(request.user):
            return True
        return team.pk in selectors.user_led_team_ids(request.user)


class TeamViewSet(viewsets.ModelViewSet):
    """Teams (queues) and their members."""

    serializer_class = TeamSerializer
    permission_classes = [permissions.IsAuthenticated, TeamPermission]
    filterset_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Team]:
        return selectors.team_list(user=self.request.user).prefetch_related(
            Prefetch("memberships", queryset=TeamMembership.objects.order_by("user_id"))
        )

    def perform_destroy(self, team: Team) -> None:
        if team.cases.exists():
            raise exceptions.ValidationError(
                {"team": [f"{team} still owns cases; move them to another team first."]}
            )
        team.delete()


class AgentTeamSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    is_lead = serializers.BooleanField()


class AgentSerializer(serializers.ModelSerializer):
    role = serializers.ChoiceField(source="profile.role", choices=Role.choices, required=False)
    timezone = serializers.CharField(source="profile.timezone", required=False)
    signature = serializers.CharField(source="profile.signature", required=False, allow_blank=True)
    availability = serializers.CharField(source="profile.availability", required=False)
    paused = serializers.BooleanField(source="profile.paused", required=False)
    capacity = serializers.IntegerField(source="profile.capacity", required=False, min_value=0)
    teams = serializers.SerializerMethodField()
    password = serializers.CharField(write_only=True, required=False, min_length=10)
    team = serializers.PrimaryKeyRelatedField(
        queryset=Team.objects.all(), write_only=True, required=False
    )

    class Meta:
        model = User
        fields = [
            "id",
            "email",
            "first_name",
            "last_name",
            "is_active",
            "role",
            "timezone",
            "signature",
            "availability",
            "paused",
            "capacity",
            "teams",
            "password",
            "team",
        ]

    @extend_schema_field(AgentTeamSerializer(many=True))
    def get_teams(self, user: User) -> list[dict[str, object]]:
        return [
            {"id": m.team_id, "name": m.team.name, "is_lead": m.is_lead}
            for m in user.memberships.all()
        ]

    def validate(self, attrs: dict) -> dict:
        profile = attrs.get("profile", {})
        if "availability" in profile and profile["availability"] not in Availability.values:
            raise serializers.ValidationError({"availability": ["Not a valid choice."]})
        if "timezone" in profile:
            try:
                validate_timezone(profile["timezone"])
            except DjangoValidationError as exc:
                raise serializers.ValidationError({"timezone": exc.messages}) from exc
        return attrs


SELF_FIELDS = {"timezone", "signature", "availability", "first_name", "last_name"}
LEAD_FIELDS = {"availability", "paused", "capacity"}


class AgentViewSet(viewsets.ModelViewSet):
    """Agents: the people who work cases."""

    serializer_class = AgentSerializer
    filterset_fields = ["is_active", "memberships__team"]
    ordering_fields = ["email", "first_name", "last_name"]
    ordering = ["email"]
    http_method_names = ["get", "post", "put", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[User]:
        return (
            User.objects.filter(profile__isnull=False)
            .select_related("profile")
            .prefetch_related("memberships__team")
        )

    def perform_create(self, serializer: AgentSerializer) -> None:
        if not selectors.user_is_admin(self.request.user):
            raise exceptions.PermissionDenied("Only admins create agents.")
        data = serializer.validated_data
        user, _ = services.agent_upsert(
            email=data["email"],
            password=data.get("password"),
            team=data.get("team"),
            role=data.get("profile", {}).get("role", Role.AGENT),
            first_name=data.get("first_name", ""),
            last_name=data.get("last_name", ""),
        )
        serializer.instance = self.get_queryset().get(pk=user.pk)

    def perform_update(self, serializer: AgentSerializer) -> None:
        agent, data, actor = serializer.instance, serializer.validated_data, self.request.user
        profile_changes = data.pop("profile", {})
        changed = set(data) | set(profile_changes)
        self._check_may_change(actor, agent, changed)
        with transaction.atomic():
            if "role" in profile_changes or "password" in data:
                services.agent_upsert(
                    email=agent.email,
                    password=data.pop("password", None),
                    role=profile_changes.pop("role", agent.profile.role),
                )
            for field in ("first_name", "last_name", "is_active"):
                if field in data:
                    setattr(agent, field, data[field])
            agent.save()
            AgentProfile.objects.filter(user=agent).update(**profile_changes)
        serializer.instance = self.get_queryset().get(pk=agent.pk)

    @staticmethod
    def _check_may_change(actor: User, agent: User, fields: set[str]) -> None:
        if selectors.user_is_admin(actor):
            return
        if actor.pk == agent.pk and fields <= SELF_FIELDS:
            return
        shares_led_team = bool(selectors.user_led_team_ids(actor) & selectors.user_team_ids(agent))
        if shares_led_team and fields <= LEAD_FIELDS | SELF_FIELDS - {"first_name", "last_name"}:
            return
        raise exceptions.PermissionDenied(
            "You may change your own profile; leads their members' availability, pause and "
            "capacity; admins everything."
        )
