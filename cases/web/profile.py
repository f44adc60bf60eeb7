"""The agent's own settings: signature, time zone, availability, notification preferences,
and their own Microsoft 365 mailboxes (connect, reconnect, remove; mailsync.oauth signs in).

Role, pause and capacity are a lead's to set (Django admin), so the page does not offer them;
password, two-factor and addresses are allauth's pages, linked from here.
"""

from __future__ import annotations

import zoneinfo
from functools import cache

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_http_methods, require_POST

from crm import services as crm_services
from crm.choices import Availability
from crm.errors import ServiceError
from crm.graph.auth import microsoft_configured
from crm.models import AgentProfile, User
from mailsync import selectors as mail_selectors
from mailsync import services as mail_services

NOTIFICATIONS = ("notify_assigned", "notify_mentioned", "notify_customer_reply", "notify_sla_risk")


@cache
def timezone_choices() -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """Every IANA zone, grouped by region ("Europe", "America", ...) for a long select."""
    regions: dict[str, list[tuple[str, str]]] = {}
    for name in sorted(zoneinfo.available_timezones()):
        region = name.split("/", 1)[0] if "/" in name else "Other"
        regions.setdefault(region, []).append((name, name.replace("_", " ")))
    return tuple((region, tuple(zones)) for region, zones in sorted(regions.items()))


class ProfileForm(forms.Form):
    signature = forms.CharField(
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="Added below your replies to customers.",
    )
    timezone = forms.ChoiceField(
        label="Time zone", help_text="Dates and due times are shown in this zone."
    )
    availability = forms.ChoiceField(
        choices=Availability.choices,
        help_text="Round-robin gives new cases only to available agents.",
    )
    notify_assigned = forms.BooleanField(required=False)
    notify_mentioned = forms.BooleanField(required=False)
    notify_customer_reply = forms.BooleanField(required=False)
    notify_sla_risk = forms.BooleanField(required=False)

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.fields["timezone"].choices = timezone_choices()
        for name in NOTIFICATIONS:
            label = str(AgentProfile._meta.get_field(name).verbose_name)
            self.fields[name].label = label[0].upper() + label[1:]

    def clean_signature(self) -> str:
        """Browsers send a textarea's lines with CRLF; store them as the rest of the app does."""
        return self.cleaned_data["signature"].replace("\r\n", "\n")

    def notification_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in NOTIFICATIONS]


def profile_of(user: User) -> AgentProfile:
    """The agent's profile; an unsaved default one if they have none yet (the first save
    creates it), so that merely looking at the page writes nothing."""
    try:
        return user.profile
    except AgentProfile.DoesNotExist:
        return AgentProfile(user=user)


def profile_initial(profile: AgentProfile) -> dict[str, object]:
    fields = ("signature", "timezone", "availability", *NOTIFICATIONS)
    return {name: getattr(profile, name) for name in fields}


@login_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    agent_profile = profile_of(request.user)
    if request.method == "POST":
        form = ProfileForm(request.POST)
        if form.is_valid() and profile_saved(agent_profile, form):
            messages.success(request, "Your profile is saved.")
            return redirect("web:profile")
        status = 400
    else:
        form = ProfileForm(initial=profile_initial(agent_profile))
        status = 200
    memberships = request.user.memberships.select_related("team").order_by("team__name")
    context = {
        "form": form,
        "profile": agent_profile,
        "memberships": memberships,
        "mailboxes": mail_selectors.mailboxes_owned(user=request.user),
        "microsoft_configured": microsoft_configured(),
    }
    return render(request, "cases/profile.html", context, status=status)


@login_required
@require_POST
def mailbox_remove(request: HttpRequest, pk: int) -> HttpResponse:
    """Remove one of the agent's own mailboxes with what was synced from it; Microsoft 365
    keeps the mail, and connecting again brings it back."""
    mailbox = get_object_or_404(mail_selectors.mailboxes_owned(user=request.user), pk=pk)
    mail_services.mailbox_disconnect(mailbox=mailbox)
    messages.success(request, f"{mailbox.address} is removed from the CRM.")
    return redirect("web:profile")


def profile_saved(agent_profile: AgentProfile, form: ProfileForm) -> bool:
    """Apply the form through the service; its refusal becomes a form error."""
    try:
        crm_services.agent_profile_update(profile=agent_profile, **form.cleaned_data)
    except ServiceError as error:
        form.add_error(error.field if error.field in form.fields else None, error.message)
        return False
    return True


urlpatterns = [
    path("profile/", profile, name="profile"),
    path("profile/mailboxes/<int:pk>/remove", mailbox_remove, name="profile-mailbox-remove"),
]
