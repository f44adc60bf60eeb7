"""Canned responses (macros) in the admin: written, checked and previewed.

The form runs `macro_validate`, so a template that does not parse, uses what the sandbox does
not offer or fails on sample values, a status that does not exist and a name that is no tag
are form errors, never a macro that breaks in front of an agent. Admins manage every macro;
leads (once their group holds the model's permissions) the macros of the teams they lead, and
see the global ones.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from cases.admin.common import parse_tags
from cases.models import CannedResponse
from cases.services.macros import (
    ALLOWED_TAGS,
    MacroError,
    macro_clean_tags,
    macro_preview,
    macro_validate,
)
from crm.admin import ScopedAdminMixin, is_admin, led_team_ids
from crm.models import Team
from crm.selectors import user_team_ids

VARIABLES_HELP = (
    "Django template syntax. Variables: {{ case.number }}, {{ case.title }}, {{ case.status }}, "
    "{{ case.priority }}, {{ case.type }}, {{ customer.name }}, {{ customer.first_name }}, "
    "{{ customer.email }}, {{ customer.organization }}, {{ agent.name }}, "
    "{{ agent.first_name }}, {{ agent.email }}, {{ signature }} (the agent's profile "
    "signature), {{ team.name }}, {{ team.email }}. Values are escaped. Tags: "
    + ", ".join(sorted(ALLOWED_TAGS))
    + "."
)


class CannedResponseForm(forms.ModelForm):
    add_tags = forms.CharField(
        required=False,
        help_text="Comma-separated tags that applying the macro adds to the case.",
    )

    class Meta:
        model = CannedResponse
        fields = ["name", "team", "active", "subject", "body", "set_status", "add_tags"]
        widgets = {"body": forms.Textarea(attrs={"rows": 12, "cols": 90})}
        help_texts = {
            "body": "HTML, or plain text whose blank lines separate paragraphs. " + VARIABLES_HELP,
        }

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.initial["add_tags"] = ", ".join(self.instance.add_tags or [])

    def clean_add_tags(self) -> list[str]:
        """Stored as the cases will carry them (slugs), so the list shows what happens."""
        try:
            return macro_clean_tags(parse_tags(self.cleaned_data.get("add_tags") or ""))
        except MacroError as exc:
            raise forms.ValidationError(exc.message) from exc

    def clean(self) -> dict:
        data = super().clean()
        problems = macro_validate(
            body=data.get("body") or "",
            subject=data.get("subject") or "",
            set_status=data.get("set_status") or "",
            add_tags=data.get("add_tags") or [],
        )
        for field, problem in problems.items():
            if field in data:  # not yet refused by its own field's check
                self.add_error(field, problem)
        return data


@admin.register(CannedResponse)
class CannedResponseAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """Macros agents use in the composer and rules apply; a team's, or global (no team)."""

    form = CannedResponseForm
    list_display = ["name", "team_or_global", "set_status", "tag_list", "active", "updated_at"]
    list_filter = ["active", "team", "set_status"]
    list_select_related = ["team"]
    search_fields = ["name", "subject", "body"]
    readonly_fields = ["preview", "created_by", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "team", "active"]}),
        ("Message", {"fields": ["subject", "body", "preview"]}),
        ("Actions when applied", {"fields": ["set_status", "add_tags"]}),
        ("History", {"fields": ["created_by", "updated_at"]}),
    ]

    def visible(self, request: HttpRequest) -> QuerySet[CannedResponse]:
        macros = CannedResponse.objects.select_related("team", "created_by")
        if is_admin(request):
            return macros
        return macros.filter(Q(team__isnull=True) | Q(team_id__in=user_team_ids(request.user)))

    def manageable(self, request: HttpRequest) -> QuerySet[CannedResponse]:
        if is_admin(request):
            return self.visible(request)
        return self.visible(request).filter(team_id__in=led_team_ids(request))

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs: object):
        """A lead writes macros for the teams they lead, never global ones."""
        if db_field.name == "team" and not is_admin(request):
            kwargs["queryset"] = Team.objects.filter(pk__in=led_team_ids(request))
            kwargs["required"] = True
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: CannedResponse, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.display(description="Team", ordering="team__name")
    def team_or_global(self, macro: CannedResponse) -> str:
        return str(macro.team) if macro.team_id else "Global"

    @admin.display(description="Adds tags")
    def tag_list(self, macro: CannedResponse) -> str:
        return ", ".join(macro.add_tags or [])

    @admin.display(description="Preview with sample values")
    def preview(self, macro: CannedResponse) -> str:
        if not macro.pk:
            return "Save, and the preview shows the macro with sample values."
        try:
            subject, body = macro_preview(macro=macro)
        except MacroError as exc:
            return exc.message
        return format_html(
            '<div class="canned-preview"><strong>{}</strong><div>{}</div></div>',
            subject,
            mark_safe(body),  # noqa: S308 - values escaped by the sandbox, then nh3-cleaned
        )
