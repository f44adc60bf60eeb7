"""Admin of what the CRM sends by itself: each team's automatic acknowledgement (with a
preview) and the record of acknowledgements sent."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from cases.models import AutoAcknowledgement, AutoAckSent, Case
from cases.services.replies import auto_ack_template_problem, render_auto_ack
from crm.admin import ScopedAdminMixin
from crm.selectors import user_is_admin, user_team_ids


class AutoAcknowledgementForm(forms.ModelForm):
    class Meta:
        model = AutoAcknowledgement
        fields = ["team", "enabled", "subject", "body"]
        help_texts = {
            "subject": "Django template syntax; variables: case, customer, team. The case "
            "number is added when the subject does not name it.",
            "body": "Plain text; blank lines separate paragraphs. Variables: {{ case.number }}, "
            "{{ case.title }}, {{ customer.name }}, {{ team.name }}.",
        }

    def clean_subject(self) -> str:
        return self._checked("subject")

    def clean_body(self) -> str:
        return self._checked("body")

    def _checked(self, name: str) -> str:
        value = self.cleaned_data[name]
        problem = auto_ack_template_problem(value)
        if problem:
            raise forms.ValidationError(f"This template does not parse: {problem}")
        return value


@admin.register(AutoAcknowledgement)
class AutoAcknowledgementAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """Per team: on or off, and what it says. Leads edit their teams' own."""

    form = AutoAcknowledgementForm
    list_display = ["team", "enabled", "subject", "updated_at"]
    list_filter = ["enabled"]
    readonly_fields = ["preview"]

    def visible(self, request: HttpRequest):
        queryset = AutoAcknowledgement.objects.select_related("team")
        if user_is_admin(request.user):
            return queryset
        return queryset.filter(team_id__in=user_team_ids(request.user))

    @admin.display(description="Preview with the team's latest case")
    def preview(self, config: AutoAcknowledgement) -> str:
        case = (
            Case.objects.filter(team=config.team_id).select_related("customer", "team").last()
            if config.pk
            else None
        )
        if case is None:
            return "Save, and the preview shows it for the team's latest case."
        subject, body = render_auto_ack(config, case)
        return format_html("<strong>{}</strong><div>{}</div>", subject, body)


@admin.register(AutoAckSent)
class AutoAckSentAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["sent_at", "case", "recipient"]
    search_fields = ["recipient", "case__number"]
    list_select_related = ["case"]
    readonly_fields = ["case", "recipient", "message", "sent_at"]

    def visible(self, request: HttpRequest):
        queryset = AutoAckSent.objects.all()
        if user_is_admin(request.user):
            return queryset
        return queryset.filter(case__team_id__in=user_team_ids(request.user))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
