"""Workflow rules in the admin: a rule with its condition and action rows, checked before save.

Every condition row is compiled exactly as the engine will compile it, and every action row
goes through `action_problems`, so a rule that saves is a rule that runs; problems appear on the
row and column they concern. The rule form checks what only the whole rule can tell (a time-
based rule needs its hours, message fields need a message trigger, "changed" needs an update).
Saving bumps the rules' snapshot, so every process uses the new rules within a second.

The dry run (a button on the rule list) shows, for a chosen case and trigger, which rules would
fire and what they would change, without changing anything.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Max, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from cases.admin.macros import VARIABLES_HELP
from cases.choices import CHANGE_TRIGGERS, MESSAGE_TRIGGERS, Operator, RuleTrigger
from cases.models import (
    Case,
    RuleAction,
    RuleCondition,
    TaskTemplate,
    WebhookDelivery,
    WorkflowRule,
    WorkflowRun,
)
from cases.selectors import case_latest_message_id, case_manageable
from cases.services.macros import macro_template_problem
from cases.workflow.actions import action_problems
from cases.workflow.compiled import active_rules, rules_changed
from cases.workflow.engine import workflow_dry_run
from cases.workflow.fields import FIELD_CHOICES, RuleError, compile_condition, operators_by_field

CHANGE_OPERATORS = (Operator.CHANGED, Operator.CHANGED_FROM, Operator.CHANGED_TO)


# --- the rule and its rows -------------------------------------------------------------------


class RuleConditionForm(forms.ModelForm):
    field = forms.ChoiceField(choices=FIELD_CHOICES)

    class Meta:
        model = RuleCondition
        fields = ["group", "field", "operator", "value", "position"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors or data.get("DELETE"):
            return data
        try:
            compile_condition(
                field_key=data["field"], operator=data["operator"], value=data.get("value", "")
            )
        except RuleError as exc:
            self.add_error(exc.field if exc.field in ("operator", "value", "field") else None,
                           exc.message)  # fmt: skip
        return data


class RuleConditionInline(admin.TabularInline):
    model = RuleCondition
    form = RuleConditionForm
    extra = 0
    verbose_name = "condition"


class RuleActionForm(forms.ModelForm):
    class Meta:
        model = RuleAction
        fields = ["position", "kind", "value", "team", "agent", "recipients", "task_template",
                  "canned_response", "webhook", "subject", "body"]  # fmt: skip
        widgets = {"body": forms.Textarea(attrs={"rows": 4, "cols": 70})}
        help_texts = {
            "value": "Set status/priority/type: the value (e.g. resolved, urgent); tags: the tag.",
            "body": "Note, email or notification text. " + VARIABLES_HELP,
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors or data.get("DELETE") or not data.get("kind"):
            return data
        action = RuleAction(**{k: v for k, v in data.items() if k in self.Meta.fields})
        for column, problem in action_problems(action).items():
            self.add_error(column if column in self.fields else None, problem)
        if not self.errors and "value" in data:
            data["value"] = action.value  # normalised (a tag as cases store it)
        return data


class RuleActionInline(admin.StackedInline):
    model = RuleAction
    form = RuleActionForm
    extra = 0
    verbose_name = "action"


class WorkflowRuleForm(forms.ModelForm):
    class Meta:
        model = WorkflowRule
        fields = ["name", "description", "active", "trigger", "order", "stop_processing",
                  "time_anchor", "time_hours", "time_business", "calendar"]  # fmt: skip

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        timed = data.get("trigger") == RuleTrigger.TIME
        if timed:
            if not data.get("time_anchor"):
                self.add_error("time_anchor", "A time-based rule needs what it measures from.")
            hours = data.get("time_hours")
            if hours is None or hours <= 0:
                self.add_error("time_hours", "A time-based rule needs its hours (more than 0).")
        else:
            for column in ("time_anchor", "time_hours", "calendar"):
                if data.get(column):
                    self.add_error(column, "Only time-based rules use this.")
            if data.get("time_business"):
                self.add_error("time_business", "Only time-based rules use this.")
        if data.get("calendar") and not data.get("time_business"):
            self.add_error("calendar", "A calendar counts only with business hours switched on.")
        return data


class RowsFormSet(forms.BaseInlineFormSet):
    """The rows checked against the rule's trigger, which no single row knows."""

    def live_rows(self) -> list[dict[str, Any]]:
        return [
            form.cleaned_data
            for form in self.forms
            if getattr(form, "cleaned_data", None) and not form.cleaned_data.get("DELETE")
        ]


class ConditionFormSet(RowsFormSet):
    def clean(self) -> None:
        super().clean()
        trigger = self.instance.trigger
        for row in self.live_rows():
            if row.get("field", "").startswith("message.") and trigger not in MESSAGE_TRIGGERS:
                raise ValidationError(
                    "Message fields need a message trigger (message received from the "
                    "customer, or agent replied)."
                )
            if row.get("operator") in CHANGE_OPERATORS and trigger not in CHANGE_TRIGGERS:
                raise ValidationError(
                    "“changed”, “changed from” and “changed to” need a trigger that changes the "
                    "case (case updated, status changed, assigned)."
                )
            if row.get("field") == "sla.metric" and trigger not in (
                RuleTrigger.SLA_AT_RISK,
                RuleTrigger.SLA_BREACHED,
            ):
                raise ValidationError("The SLA target field needs an SLA trigger.")


class ActionFormSet(RowsFormSet):
    def clean(self) -> None:
        super().clean()
        rows = self.live_rows()
        if not rows and not any(form.errors for form in self.forms):
            raise ValidationError("A rule needs at least one action.")
        if self.instance.trigger not in MESSAGE_TRIGGERS and any(
            row.get("kind") == "message_to_task" for row in rows
        ):
            raise ValidationError("“Turn the message into a task” needs a message trigger.")


RuleConditionInline.formset = ConditionFormSet
RuleActionInline.formset = ActionFormSet


@admin.register(WorkflowRule)
class WorkflowRuleAdmin(admin.ModelAdmin):
    form = WorkflowRuleForm
    inlines = [RuleConditionInline, RuleActionInline]
    list_display = ["name", "trigger", "active", "order", "stop_processing", "state",
                    "fired_7_days", "last_fired"]  # fmt: skip
    list_filter = ["trigger", "active"]
    search_fields = ["name", "description"]
    ordering = ["order", "pk"]
    change_list_template = "admin/cases/workflowrule/change_list.html"
    change_form_template = "admin/cases/workflowrule/change_form.html"
    fieldsets = [
        (None, {"fields": ["name", "description", "active", "trigger", "order",
                           "stop_processing"]}),
        ("Time-based rules", {
            "fields": ["time_anchor", "time_hours", "time_business", "calendar"],
            "description": "Checked by the worker every minute; a case fires once per "
            "anchor moment (entering the status again starts over).",
        }),
    ]  # fmt: skip

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkflowRule]:
        week = timezone.now() - timezone.timedelta(days=7)
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_run=Max("runs__at"),
                recent=Count("runs", filter=Q(runs__at__gte=week)),
            )
        )

    @admin.display(description="state")
    def state(self, rule: WorkflowRule) -> str:
        if not rule.active:
            return "inactive"
        broken = active_rules().broken.get(rule.pk)
        return f"not running: {broken}" if broken else "running"

    @admin.display(description="fired (7 days)", ordering="recent")
    def fired_7_days(self, rule: WorkflowRule) -> str:
        url = reverse("admin:cases_workflowrun_changelist") + f"?rule__id__exact={rule.pk}"
        return format_html('<a href="{}">{}</a>', url, rule.recent)

    @admin.display(description="last fired", ordering="last_run")
    def last_fired(self, rule: WorkflowRule) -> object:
        return rule.last_run or "—"

    def save_model(self, request: HttpRequest, obj: WorkflowRule, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        rules_changed()

    def delete_model(self, request: HttpRequest, obj: WorkflowRule) -> None:
        super().delete_model(request, obj)
        rules_changed()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[WorkflowRule]) -> None:
        super().delete_queryset(request, queryset)
        rules_changed()

    def get_urls(self) -> list:
        dry_run = self.admin_site.admin_view(self.dry_run_view)
        return [
            path("dry-run/", dry_run, name="cases_workflowrule_dry_run"),
            *super().get_urls(),
        ]

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        """With the fields conditions can use and the comparisons each takes, as help."""
        operators = operators_by_field()
        fields = [
            (key, label, ", ".join(Operator(o).label for o in operators[key]))
            for key, label in FIELD_CHOICES
        ]
        extra_context = {**(extra_context or {}), "condition_fields": fields}
        return super().changeform_view(request, object_id, form_url, extra_context)

    def dry_run_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        # Leads an admin lets see the rules dry-run what the API lets them: their teams' cases.
        form = DryRunForm(request.POST or None, cases=case_manageable(user=request.user))
        result = None
        if request.method == "POST" and form.is_valid():
            result = workflow_dry_run(
                case=form.cleaned_data["case"],
                trigger=form.cleaned_data["trigger"],
                message_id=form.cleaned_data.get("message_id"),
            )
            if not result.fired:
                messages.info(request, "No rule would fire.")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Dry run of the workflow rules",
            "form": form,
            "result": result,
        }
        return TemplateResponse(request, "admin/cases/workflowrule/dry_run.html", context)


class DryRunForm(forms.Form):
    case = forms.CharField(help_text="The case number, e.g. CASE-000123.")
    trigger = forms.ChoiceField(choices=RuleTrigger.choices, initial=RuleTrigger.CASE_UPDATED)

    def __init__(self, *args: Any, cases: QuerySet[Case], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cases = cases

    def clean_case(self) -> Case:
        number = self.cleaned_data["case"].strip().upper()
        case = self.cases.filter(number=number).first()
        if case is None:
            raise ValidationError(f"There is no case {number}.")
        return case

    def clean(self) -> dict[str, Any]:
        """A message trigger looks at the case's latest message, as the API's dry run does
        (without one, every message condition would fail and no rule would seem to fire)."""
        data = super().clean()
        case = data.get("case")
        if case is not None and data.get("trigger") in MESSAGE_TRIGGERS:
            latest = case_latest_message_id(case=case)
            if latest is None:
                raise ValidationError("This case has no message.")
            data["message_id"] = latest
        return data


# --- the execution log -----------------------------------------------------------------------


class FailedFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "failed"

    def lookups(self, request: HttpRequest, model_admin: object) -> list[tuple[str, str]]:
        return [("yes", "with failed actions"), ("no", "all actions done")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(errors__gt=0)
        if self.value() == "no":
            return queryset.filter(errors=0)
        return queryset


@admin.register(WorkflowRun)
class WorkflowRunAdmin(admin.ModelAdmin):
    list_display = ["at", "rule_name", "case_link", "trigger", "errors", "done"]
    list_filter = ["trigger", FailedFilter, "rule"]
    search_fields = ["rule_name", "case__number"]
    list_select_related = ["case"]
    date_hierarchy = "at"
    fields = ["at", "rule_name", "rule", "case_link", "trigger", "event", "errors", "outcomes",
              "deliveries"]  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="case", ordering="case__number")
    def case_link(self, run: WorkflowRun) -> str:
        url = reverse("admin:cases_case_change", args=[run.case_id])
        return format_html('<a href="{}">{}</a>', url, run.case.number)

    @admin.display(description="actions")
    def done(self, run: WorkflowRun) -> str:
        return "; ".join(
            a["summary"] if a.get("ok") else f"{a['summary']} FAILED: {a.get('error', '')}"
            for a in run.actions
        )

    @admin.display(description="actions")
    def outcomes(self, run: WorkflowRun) -> str:
        return format_html(
            "<ol>{}</ol>",
            format_html_join(
                "",
                "<li>{}{}</li>",
                (
                    (a["summary"], f" — failed: {a.get('error', '')}" if not a.get("ok") else "")
                    for a in run.actions
                ),
            ),
        )

    @admin.display(description="webhook deliveries")
    def deliveries(self, run: WorkflowRun) -> str:
        """Where each webhook of this firing stands (its retries happen after the run)."""
        rows = WebhookDelivery.objects.filter(run=run).select_related("endpoint").order_by("pk")
        if not rows:
            return "—"
        return format_html_join(
            format_html("<br>"),
            '<a href="{}">#{}</a> to {}: {}, {} attempt(s){}',
            (
                (
                    reverse("admin:cases_webhookdelivery_change", args=[d.pk]),
                    d.pk,
                    d.endpoint,
                    d.get_state_display(),
                    d.attempts,
                    f" — {d.last_error}" if d.last_error else "",
                )
                for d in rows
            ),
        )


# --- task templates --------------------------------------------------------------------------


class TaskTemplateForm(forms.ModelForm):
    class Meta:
        model = TaskTemplate
        fields = ["name", "active", "subject", "description", "priority", "due_in_hours",
                  "assign_to_case_assignee", "checklist"]  # fmt: skip
        help_texts = {"subject": VARIABLES_HELP}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for column in ("subject", "description"):
            problem = macro_template_problem(data.get(column) or "")
            if problem:
                self.add_error(column, problem)
        return data


@admin.register(TaskTemplate)
class TaskTemplateAdmin(admin.ModelAdmin):
    form = TaskTemplateForm
    list_display = ["name", "subject", "priority", "due_in_hours", "active"]
    list_filter = ["active", "priority"]
    search_fields = ["name", "subject"]
