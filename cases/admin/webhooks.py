"""Admin of outgoing webhooks: the endpoints rules post to, and the record of deliveries.

Both are for superusers only, whatever model permissions a group holds: an endpoint's URL and
secret decide where case data goes, and delivery bodies carry cases of every team. The secret
is write-only, like an SMTP relay's password (`mailsync.admin.SmtpRelayForm`): the form never
shows it, and left empty it keeps the stored one.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from cases.choices import DeliveryState
from cases.models import WebhookDelivery, WebhookEndpoint
from cases.workflow.fields import RuleError
from cases.workflow.webhooks import webhook_redeliver

MAX_TIMEOUT_SECONDS = 60
MAX_ATTEMPTS = 30


class SuperuserOnlyAdminMixin:
    """Only active superusers see or touch the model (the admin index hides it from others)."""

    def _superuser(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._superuser(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._superuser(request)


class WebhookEndpointForm(forms.ModelForm):
    """The secret is write-only: left empty, the stored one stays."""

    url = forms.URLField(
        max_length=1000, assume_scheme="https", help_text="Where the rules' webhooks post."
    )
    secret = forms.CharField(
        label="Secret",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted; the receiver checks X-CRM-Signature with it. "
        "Leave empty to keep the current secret.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["name", "url", "secret", "active", "timeout_seconds", "max_attempts"]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # Not even as the form's initial value: an empty field then means "unchanged", and the
        # change history does not claim a new secret on every save.
        self.initial.pop("secret", None)

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        if not url.lower().startswith(("https://", "http://")):
            raise forms.ValidationError("Enter an http:// or https:// address.")
        return url

    def clean_secret(self) -> str:
        return self.cleaned_data["secret"] or (self.instance.secret if self.instance else "") or ""

    def clean_timeout_seconds(self) -> int:
        value = self.cleaned_data["timeout_seconds"]
        if not 1 <= value <= MAX_TIMEOUT_SECONDS:
            raise forms.ValidationError(f"Between 1 and {MAX_TIMEOUT_SECONDS} seconds.")
        return value

    def clean_max_attempts(self) -> int:
        value = self.cleaned_data["max_attempts"]
        if not 1 <= value <= MAX_ATTEMPTS:
            raise forms.ValidationError(f"Between 1 and {MAX_ATTEMPTS} attempts.")
        return value


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(SuperuserOnlyAdminMixin, admin.ModelAdmin):
    """Where rules' webhook actions post (Workflow → Outgoing webhooks)."""

    form = WebhookEndpointForm
    list_display = ["name", "url", "active", "secret_set", "timeout_seconds", "max_attempts",
                    "created_at"]  # fmt: skip
    list_filter = ["active"]
    search_fields = ["name", "url"]

    @admin.display(description="Secret", boolean=True)
    def secret_set(self, endpoint: WebhookEndpoint) -> bool:
        return bool(endpoint.secret)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(SuperuserOnlyAdminMixin, admin.ModelAdmin):
    """The outbox of webhook deliveries: read-only, with "Send again now" for the pending and
    the failed ones."""

    list_display = ["pk", "endpoint", "case", "state", "attempts", "last_status", "last_error",
                    "next_attempt_at", "created_at"]  # fmt: skip
    list_display_links = ["pk", "endpoint"]
    list_filter = ["state", "endpoint", "created_at"]
    list_select_related = ["endpoint", "case"]
    search_fields = ["case__number"]
    date_hierarchy = "created_at"
    fields = ["endpoint", "case", "run", "state", "attempts", "last_status", "last_error",
              "next_attempt_at", "created_at", "delivered_at", "pretty_body"]  # fmt: skip
    readonly_fields = fields
    actions = ["send_again_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request)

    @admin.display(description="Body")
    def pretty_body(self, delivery: WebhookDelivery) -> str:
        try:
            text = json.dumps(json.loads(delivery.body), indent=2, ensure_ascii=False)
        except ValueError:
            text = delivery.body
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)

    @admin.action(description="Send again now", permissions=["redeliver"])
    def send_again_now(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        sent, refused = 0, []
        for delivery in queryset.exclude(state=DeliveryState.DELIVERED).order_by("pk"):
            try:
                webhook_redeliver(delivery=delivery)
            except RuleError as error:
                refused.append(error.message)
            else:
                sent += 1
        skipped = queryset.filter(state=DeliveryState.DELIVERED).count()
        self.message_user(request, f"{sent} delivery(ies) queued to be sent now.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} delivered one(s) left alone.", messages.WARNING)
        for message in refused:
            self.message_user(request, message, messages.ERROR)
