"""The workflow tables. Imported by `cases.models`; see `cases.workflow` for the moving parts."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from cases.choices import (
    ActionKind,
    AgentRecipients,
    ConditionGroup,
    DeliveryState,
    Operator,
    Priority,
    RuleTrigger,
    TimeAnchor,
)
from crm.fields import EncryptedTextField

USER = settings.AUTH_USER_MODEL


class WorkflowRule(models.Model):
    """When `trigger` happens to a case and the conditions hold, run the actions in order.

    Rules run by `order`, then id; one with `stop_processing` ends the round for that event
    when it fires. A time-based rule fires once per case and anchor moment (the case entering
    its status, say): it fires again only when the anchor moves.
    """

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True)
    trigger = models.CharField(max_length=20, choices=RuleTrigger.choices)
    order = models.PositiveIntegerField(default=100, help_text="Lower runs first.")
    stop_processing = models.BooleanField(
        default=False, help_text="When this rule fires, later rules do not run for the event."
    )
    time_anchor = models.CharField(
        max_length=30, choices=TimeAnchor.choices, blank=True, help_text="Time-based rules only."
    )
    time_hours = models.DecimalField(
        max_digits=8,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Time-based rules only: fire once this many hours have passed.",
    )
    time_business = models.BooleanField(
        "count business hours",
        default=False,
        help_text="Count only the business hours of the calendar (default: the default one).",
    )
    calendar = models.ForeignKey(
        "cases.BusinessCalendar",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["order", "pk"]
        verbose_name = "workflow rule"
        indexes = [models.Index(fields=["trigger", "active"], name="wfrule_trigger")]

    def __str__(self) -> str:
        return self.name


class RuleCondition(models.Model):
    """One comparison. A rule matches when every "all" condition holds and, if it has "any"
    conditions, at least one of those does. `value` is text: a list is comma-separated, a
    team is its name, an agent their email, a tag its name (checked when the rule is saved)."""

    rule = models.ForeignKey(WorkflowRule, on_delete=models.CASCADE, related_name="conditions")
    group = models.CharField(max_length=3, choices=ConditionGroup.choices, default="all")
    field = models.CharField(max_length=40)
    operator = models.CharField(max_length=20, choices=Operator.choices)
    value = models.CharField(max_length=500, blank=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return f"{self.field} {self.operator} {self.value}".strip()


class RuleAction(models.Model):
    """One step of a rule, run in `position` order. Which columns an action uses depends on
    its kind (`cases.workflow.actions` validates them): `value` holds a status, priority, type
    or tag; templates go in `subject`/`body`; the foreign keys name what the action uses."""

    rule = models.ForeignKey(WorkflowRule, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(max_length=20, choices=ActionKind.choices)
    position = models.PositiveSmallIntegerField(default=0)
    value = models.CharField(max_length=200, blank=True)
    team = models.ForeignKey(
        "crm.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    agent = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    recipients = models.CharField(
        max_length=10, choices=AgentRecipients.choices, blank=True, help_text="Email agents."
    )
    task_template = models.ForeignKey(
        "cases.TaskTemplate", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    canned_response = models.ForeignKey(
        "cases.CannedResponse",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Email the customer: send this canned response (or write subject and body).",
    )
    webhook = models.ForeignKey(
        "cases.WebhookEndpoint", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    subject = models.CharField(max_length=300, blank=True)
    body = models.TextField(
        blank=True, help_text="Template with the canned-response variables ({{ case.number }}…)."
    )

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return self.get_kind_display()


class TaskTemplate(models.Model):
    """A task a rule creates on a case: subject and description are templates with the case's
    variables; the due time counts from when the rule fires."""

    name = models.CharField(max_length=100, unique=True)
    subject = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    due_in_hours = models.PositiveIntegerField(null=True, blank=True)
    assign_to_case_assignee = models.BooleanField(default=True)
    checklist = models.TextField(blank=True, help_text="One item per line.")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def checklist_items(self) -> list[str]:
        return [line.strip() for line in self.checklist.splitlines() if line.strip()][:50]


class WebhookEndpoint(models.Model):
    """Where a rule's webhook action posts. Bodies are signed with the secret (HMAC-SHA256
    over "<timestamp>.<body>", sent as `X-CRM-Signature: sha256=<hex>`)."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=1000)
    secret = EncryptedTextField(blank=True, help_text="Shared secret for the signature.")
    active = models.BooleanField(default=True)
    timeout_seconds = models.PositiveSmallIntegerField(default=10)
    max_attempts = models.PositiveSmallIntegerField(
        default=8, help_text="Attempts before giving up (backoff from 30 s, doubling, ≤ 2 h)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "outgoing webhook"

    def __str__(self) -> str:
        return self.name


class WebhookDelivery(models.Model):
    """One body to deliver to one endpoint, written in the rule's transaction (an outbox):
    retried until a 2xx answer or `max_attempts`. The body is fixed when it is written, so
    every attempt sends the same bytes; `X-CRM-Delivery` carries this row's id so that a
    receiver can drop repeats."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="+")
    case = models.ForeignKey(
        "cases.Case", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    run = models.ForeignKey(
        "cases.WorkflowRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    body = models.TextField()
    state = models.CharField(
        max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(state="pending"),
                name="webhookdelivery_due",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} to {self.endpoint_id} ({self.state})"


class WorkflowEvent(models.Model):
    """Something that happened to a case that rules may answer, written in the transaction of
    the change (so a crash after commit loses nothing: the worker's sweep runs what the
    request did not) and processed once (`processed_at`).

    `root` and `depth` tie events caused by rules' actions to the change that started it all:
    each rule fires at most once per chain and chains stop after `MAX_DEPTH` rounds. A
    time-based event names its `rule` and `anchor_at`; an overdue event its `task`; both are
    unique, so the worker cannot make the same one twice.
    """

    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="+")
    trigger = models.CharField(max_length=20, choices=RuleTrigger.choices)
    data = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.ForeignKey(
        "mailsync.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    task = models.ForeignKey(
        "cases.Task", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    rule = models.ForeignKey(
        WorkflowRule, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    anchor_at = models.DateTimeField(null=True, blank=True)
    root = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    depth = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(processed_at__isnull=True),
                name="wfevent_pending",
            ),
            models.Index(fields=["root"], name="wfevent_root"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "case", "anchor_at"],
                condition=Q(rule__isnull=False),
                name="wfevent_time_once",
            ),
            models.UniqueConstraint(
                fields=["task", "anchor_at"],
                condition=Q(task__isnull=False, trigger="task_overdue"),
                name="wfevent_overdue_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.trigger} on case {self.case_id}"


class WorkflowRun(models.Model):
    """The execution log: a rule fired for an event (or was cut as a loop). `actions` lists
    each action's outcome: {"kind", "summary", "ok", "error"}."""

    rule = models.ForeignKey(
        WorkflowRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    rule_name = models.CharField(max_length=120)
    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="workflow_runs")
    event = models.ForeignKey(
        WorkflowEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    trigger = models.CharField(max_length=20, choices=RuleTrigger.choices)
    actions = models.JSONField(default=list, blank=True)
    errors = models.PositiveSmallIntegerField(default=0)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name = "workflow execution"
        indexes = [
            models.Index(fields=["case", "-at"], name="wfrun_case"),
            models.Index(fields=["rule", "-at"], name="wfrun_rule"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "event"],
                condition=Q(rule__isnull=False, event__isnull=False),
                name="wfrun_once_per_event",
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule_name} on case {self.case_id}"
