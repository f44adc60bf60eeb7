"""Serializers. Relations are written and read by primary key, with a nested summary for
display; every list's queryset prefetches what these read, so queries do not grow per row."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cases.choices import CaseStatus, LinkKind, TaskStatus
from cases.models import (
    Case,
    CaseLink,
    CaseMessage,
    CaseNote,
    Category,
    ChecklistItem,
    Customer,
    CustomerPhone,
    Organization,
    Task,
    TimelineEvent,
)
from cases.services.sla import sla_summary
from crm.models import Team, User

_TARGET = {
    "type": "object",
    "nullable": True,
    "properties": {
        "due_at": {"type": "string", "format": "date-time", "nullable": True},
        "state": {"type": "string", "enum": ["on_track", "at_risk", "breached", "met", "paused"]},
        "remaining_seconds": {"type": "integer", "nullable": True},
    },
}
SLA_SCHEMA = {
    "type": "object",
    "properties": {
        "policy": {"type": "string", "nullable": True},
        "first_response": _TARGET,
        "next_response": _TARGET,
        "resolution": _TARGET,
    },
}


class RelatedValuesField(serializers.ListField):
    """A to-many relation read as a list of one attribute (tag names, addresses, domains) and
    written as such a list; the service in charge applies it."""

    def __init__(self, attribute: str, **kwargs) -> None:
        self.attribute = attribute
        super().__init__(**kwargs)

    def to_representation(self, manager) -> list:
        return [getattr(item, self.attribute) for item in manager.all()]


class UserSummary(serializers.ModelSerializer):
    name = serializers.CharField(source="get_full_name", read_only=True)

    class Meta:
        model = User
        fields = ["id", "name", "email"]


class TeamSummary(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name"]


class CustomerSummary(serializers.ModelSerializer):
    email = serializers.SerializerMethodField()

    class Meta:
        model = Customer
        fields = ["id", "name", "email", "is_vip"]

    def get_email(self, customer: Customer) -> str | None:
        emails = list(customer.emails.all())
        primary = next((e for e in emails if e.is_primary), emails[0] if emails else None)
        return primary.email if primary else None


class OrganizationSummary(serializers.ModelSerializer):
    class Meta:
        model = Organization
        fields = ["id", "name", "tier"]


class CategorySummary(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "name"]


class TriageSerializer(serializers.Serializer):
    """What triage suggested for a new case (see `cases.services.triage`)."""

    source = serializers.CharField(help_text="Who set the current values: rules or llm.")
    at = serializers.DateTimeField()
    suggestion = serializers.DictField(
        source="fields", help_text="Per field: the value, its source and the rules behind it."
    )
    overridden = serializers.ListField(
        child=serializers.CharField(), help_text="Fields an agent changed since."
    )
    llm = serializers.DictField(required=False, help_text="The model's status, or its error.")

    def to_representation(self, triage: dict) -> dict | None:
        if not triage:
            return None
        data = {key: triage.get(key) for key in ("source", "at", "overridden")}
        data["suggestion"] = triage.get("fields", {})
        if "llm" in triage:
            data["llm"] = triage["llm"]
        return data


class CaseSerializer(serializers.ModelSerializer):
    """A case. `status`, `team` and `assignee` change through the same rules as the dedicated
    endpoints (transitions, team membership); the timeline records every change. Triage sets
    `priority`, `category`, `sentiment` and `summary` on new cases from email; changing one of
    them makes it the agent's (recorded for tuning the rules)."""

    team_summary = TeamSummary(source="team", read_only=True)
    assignee_summary = UserSummary(source="assignee", read_only=True, allow_null=True)
    customer_summary = CustomerSummary(source="customer", read_only=True, allow_null=True)
    organization_summary = OrganizationSummary(
        source="organization", read_only=True, allow_null=True
    )
    tags = RelatedValuesField("name", child=serializers.CharField(max_length=50), required=False)
    watchers = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    category = serializers.PrimaryKeyRelatedField(
        queryset=Category.objects.filter(active=True), allow_null=True, required=False
    )
    category_summary = CategorySummary(source="category", read_only=True, allow_null=True)
    summary = serializers.CharField(max_length=2000, allow_blank=True, required=False)
    triage = TriageSerializer(read_only=True, allow_null=True)
    sla = serializers.SerializerMethodField(
        help_text="The SLA policy and, per target (first_response, next_response, "
        "resolution), {due_at, state, remaining_seconds} or null without such a target. "
        "remaining_seconds counts as the target does (business hours or around the clock), "
        "negative once breached, null when met or paused."
    )

    class Meta:
        model = Case
        fields = [
            "id",
            "number",
            "title",
            "description",
            "type",
            "status",
            "priority",
            "sentiment",
            "category",
            "category_summary",
            "summary",
            "triage",
            "channel",
            "team",
            "team_summary",
            "assignee",
            "assignee_summary",
            "customer",
            "customer_summary",
            "organization",
            "organization_summary",
            "tags",
            "watchers",
            "parent",
            "merged_into",
            "first_response_at",
            "resolved_at",
            "closed_at",
            "sla",
            "sla_due",
            "created_by",
            "updated_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "sla_due",
            "number",
            "merged_into",
            "first_response_at",
            "resolved_at",
            "closed_at",
            "created_by",
            "updated_by",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(SLA_SCHEMA)
    def get_sla(self, case: Case) -> dict:
        return sla_summary(case)


class StatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=CaseStatus.choices)


class TaskStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=TaskStatus.choices)


class AssignSerializer(serializers.Serializer):
    assignee = serializers.PrimaryKeyRelatedField(
        queryset=User.objects.filter(is_active=True), allow_null=True, required=False
    )
    team = serializers.PrimaryKeyRelatedField(queryset=Team.objects.all(), required=False)
    round_robin = serializers.BooleanField(
        default=False, help_text="Pick the next available team member instead of `assignee`."
    )


class TaskAssignSerializer(serializers.Serializer):
    assignee = serializers.PrimaryKeyRelatedField(
        queryset=User.objects.filter(is_active=True), allow_null=True
    )


class MergeSerializer(serializers.Serializer):
    target = serializers.PrimaryKeyRelatedField(
        queryset=Case.objects.all(), help_text="The case this one is merged into."
    )


class LinkSerializer(serializers.ModelSerializer):
    other = serializers.PrimaryKeyRelatedField(queryset=Case.objects.all(), write_only=True)
    kind = serializers.ChoiceField(choices=LinkKind.choices, default=LinkKind.RELATED)

    class Meta:
        model = CaseLink
        fields = ["id", "from_case", "to_case", "kind", "other", "created_at"]
        read_only_fields = ["from_case", "to_case", "created_at"]


class NoteSerializer(serializers.ModelSerializer):
    author_summary = UserSummary(source="author", read_only=True, allow_null=True)
    mentions = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = CaseNote
        fields = ["id", "case", "author", "author_summary", "body", "mentions", "created_at"]
        read_only_fields = ["case", "author", "created_at"]


class TimelineEventSerializer(serializers.ModelSerializer):
    actor_summary = UserSummary(source="actor", read_only=True, allow_null=True)

    class Meta:
        model = TimelineEvent
        fields = ["id", "case", "kind", "actor", "actor_summary", "summary", "data", "created_at"]


class ChecklistItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = ChecklistItem
        fields = ["text", "done"]


class TaskSerializer(serializers.ModelSerializer):
    assignee_summary = UserSummary(source="assignee", read_only=True, allow_null=True)
    case_number = serializers.CharField(source="case.number", read_only=True, allow_null=True)
    checklist = ChecklistItemSerializer(many=True, required=False)

    class Meta:
        model = Task
        fields = [
            "id",
            "case",
            "case_number",
            "subject",
            "description",
            "status",
            "priority",
            "category",
            "assignee",
            "assignee_summary",
            "due_at",
            "remind_at",
            "summary",
            "action_required",
            "checklist",
            "completed_at",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["completed_at", "created_by", "created_at", "updated_at"]


class PhoneSerializer(serializers.ModelSerializer):
    class Meta:
        model = CustomerPhone
        fields = ["number", "kind"]


class CustomerSerializer(serializers.ModelSerializer):
    emails = RelatedValuesField("email", child=serializers.EmailField(), required=False)
    phones = PhoneSerializer(many=True, required=False)
    organization_summary = OrganizationSummary(
        source="organization", read_only=True, allow_null=True
    )

    class Meta:
        model = Customer
        fields = [
            "id",
            "name",
            "emails",
            "phones",
            "organization",
            "organization_summary",
            "is_vip",
            "notes",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class OrganizationSerializer(serializers.ModelSerializer):
    domains = RelatedValuesField(
        "domain", child=serializers.CharField(max_length=253), required=False
    )

    class Meta:
        model = Organization
        fields = ["id", "name", "domains", "tier", "notes", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]


class BulkSerializer(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), min_length=1, max_length=500
    )
    atomic = serializers.BooleanField(
        default=False, help_text="All or nothing; otherwise each item stands on its own."
    )


class BulkStatusSerializer(BulkSerializer):
    status = serializers.ChoiceField(choices=CaseStatus.choices)


class BulkAssignSerializer(BulkSerializer):
    assignee = serializers.PrimaryKeyRelatedField(
        queryset=User.objects.filter(is_active=True), allow_null=True, required=False
    )
    team = serializers.PrimaryKeyRelatedField(queryset=Team.objects.all(), required=False)


class CaseMessageSerializer(serializers.ModelSerializer):
    """A message in a case's conversation: the mail itself, and what intake decided."""

    id = serializers.IntegerField(source="message.pk", read_only=True)
    subject = serializers.CharField(source="message.subject", read_only=True)
    from_address = serializers.CharField(source="message.from_address", read_only=True)
    from_name = serializers.CharField(source="message.from_name", read_only=True)
    to = serializers.SerializerMethodField()
    cc = serializers.SerializerMethodField()
    date = serializers.DateTimeField(source="message.received_at", read_only=True)
    preview = serializers.CharField(source="message.preview", read_only=True)
    body_html = serializers.CharField(source="message.body_html", read_only=True)
    body_text = serializers.CharField(source="message.body_text", read_only=True)
    mailbox = serializers.CharField(source="message.mailbox.address", read_only=True)
    attachments = serializers.SerializerMethodField()

    class Meta:
        model = CaseMessage
        fields = ["id", "direction", "outcome", "mailbox", "subject", "from_address",
                  "from_name", "to", "cc", "date", "preview", "body_html", "body_text",
                  "attachments", "created_at"]  # fmt: skip

    def get_to(self, link: CaseMessage) -> list[str]:
        return [a.get("address", "") for a in link.message.to]

    def get_cc(self, link: CaseMessage) -> list[str]:
        return [a.get("address", "") for a in link.message.cc]

    def get_attachments(self, link: CaseMessage) -> list[dict]:
        return [
            {"id": a.pk, "name": a.name, "size": a.size, "content_type": a.content_type,
             "is_inline": a.is_inline}
            for a in link.message.attachments.all()
        ]  # fmt: skip
