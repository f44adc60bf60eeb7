"""Triage in the admin: categories, the built-in classifier's rules, and the overrides agents
made (read-only), which show which rules to tune.

Every change of a rule or category calls `triage_rules_changed`, so that every process
classifies the next message with the new table.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from cases.admin.common import ServiceErrorsFormMixin
from cases.choices import Priority, Sentiment
from cases.models import Category, TriageOverride, TriageRule
from cases.services.triage import RULE_SENTIMENTS, triage_rule_validate, triage_rules_changed

VALUE_CHOICES = [
    ("", "---------"),
    ("Priority", Priority.choices),
    ("Sentiment", [(value, Sentiment(value).label) for value in RULE_SENTIMENTS]),
]


class RulesChangeAdminMixin:
    """Saving or deleting tells every process to reload the rules."""

    def save_model(self, request: HttpRequest, obj, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        triage_rules_changed()

    def delete_model(self, request: HttpRequest, obj) -> None:
        super().delete_model(request, obj)
        triage_rules_changed()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().delete_queryset(request, queryset)
        triage_rules_changed()


@admin.register(Category)
class CategoryAdmin(RulesChangeAdminMixin, admin.ModelAdmin):
    """Categories cases can have. Deactivate one rather than delete it: its cases keep it, and
    a category that rules suggest cannot be deleted before them."""

    list_display = ["name", "team", "active", "rule_count", "case_count"]
    list_filter = ["active", "team"]
    search_fields = ["name"]
    fields = ["name", "team", "active"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Category]:
        return (
            super()
            .get_queryset(request)
            .select_related("team")
            .annotate(
                rule_count=Count("rules", distinct=True), case_count=Count("cases", distinct=True)
            )
        )

    @admin.display(description="Rules", ordering="rule_count")
    def rule_count(self, category: Category) -> int:
        return category.rule_count

    @admin.display(description="Cases", ordering="case_count")
    def case_count(self, category: Category) -> int:
        return category.case_count


class TriageRuleForm(ServiceErrorsFormMixin, forms.ModelForm):
    value = forms.ChoiceField(
        choices=VALUE_CHOICES,
        required=False,
        help_text="For priority and sentiment rules; category rules choose a category below.",
    )

    class Meta:
        model = TriageRule
        fields = [
            "field",
            "match_type",
            "pattern",
            "where",
            "value",
            "category",
            "weight",
            "order",
            "active",
            "note",
        ]
        widgets = {"pattern": forms.Textarea(attrs={"rows": 3, "cols": 80})}

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        self.validate_with(
            triage_rule_validate,
            field=data.get("field", ""),
            match_type=data.get("match_type", ""),
            pattern=data.get("pattern", ""),
            where=data.get("where", ""),
            value=data.get("value", ""),
            category=data.get("category"),
            weight=data.get("weight") or 0,
        )
        return data


@admin.register(TriageRule)
class TriageRuleAdmin(RulesChangeAdminMixin, admin.ModelAdmin):
    """The built-in classifier's table. Per field, each matching rule votes its weight for its
    value; the most weight wins, a tie goes to the lowest order. "Overridden" counts how often
    agents changed a value this rule had produced."""

    form = TriageRuleForm
    list_display = [
        "field",
        "target",
        "match_type",
        "where",
        "excerpt",
        "weight",
        "order",
        "active",
        "overridden",
    ]
    list_display_links = ["field", "target"]
    list_filter = ["field", "active", "match_type", "where", "category"]
    search_fields = ["pattern", "note", "category__name", "value"]
    ordering = ["field", "order", "pk"]
    actions = ["activate", "deactivate"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TriageRule]:
        return (
            super()
            .get_queryset(request)
            .select_related("category")
            .annotate(override_count=Count("overrides"))
        )

    @admin.display(description="Suggests")
    def target(self, rule: TriageRule) -> str:
        return rule.category.name if rule.category_id else rule.value

    @admin.display(description="Pattern")
    def excerpt(self, rule: TriageRule) -> str:
        return rule.pattern if len(rule.pattern) <= 70 else f"{rule.pattern[:69]}…"

    @admin.display(description="Overridden", ordering="override_count")
    def overridden(self, rule: TriageRule) -> str:
        if not rule.override_count:
            return "0"
        url = reverse("admin:cases_triageoverride_changelist")
        return format_html('<a href="{}?rules__id__exact={}">{}</a>', url, rule.pk,
                           rule.override_count)  # fmt: skip

    @admin.action(description="Activate the selected rules")
    def activate(self, request: HttpRequest, queryset: QuerySet[TriageRule]) -> None:
        queryset.update(active=True)
        triage_rules_changed()

    @admin.action(description="Deactivate the selected rules")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[TriageRule]) -> None:
        queryset.update(active=False)
        triage_rules_changed()


class SuggestedChosenFilter(admin.SimpleListFilter):
    """One entry per field and suggested → chosen pair, most frequent first."""

    title = "suggested → chosen"
    parameter_name = "pair"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        pairs = (
            TriageOverride.objects.values_list("field", "suggested", "chosen")
            .annotate(n=Count("pk"))
            .order_by("-n", "field", "suggested", "chosen")[:50]
        )
        return [
            (json.dumps([f, s, c]), f"{f}: {s or '—'} → {c or '—'} ({n})") for f, s, c, n in pairs
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if not self.value():
            return queryset
        try:
            field, suggested, chosen = json.loads(self.value())
        except (ValueError, TypeError):
            return queryset.none()
        return queryset.filter(field=field, suggested=suggested, chosen=chosen)


@admin.register(TriageOverride)
class TriageOverrideAdmin(admin.ModelAdmin):
    """What agents changed after triage: read-only, filtered by field, rule or pair."""

    list_display = ["at", "case", "field", "suggested", "chosen", "source", "rule_list", "agent"]
    list_filter = ["field", SuggestedChosenFilter, "source", "rules", "chosen"]
    search_fields = ["case__number", "suggested", "chosen"]
    list_select_related = ["case", "agent"]
    date_hierarchy = "at"
    fields = ["case", "field", "suggested", "chosen", "source", "rules", "agent", "at"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[TriageOverride]:
        return super().get_queryset(request).prefetch_related("rules")

    @admin.display(description="Rules")
    def rule_list(self, override: TriageOverride) -> str:
        return ", ".join(f"#{rule.pk}" for rule in override.rules.all()) or "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: TriageOverride | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: TriageOverride | None = None
    ) -> bool:
        return False
