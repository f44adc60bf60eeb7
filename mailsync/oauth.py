"""Connecting an agent's own Microsoft 365 mailbox from the browser: `login` starts MSAL's
authorization code flow and sends the agent to Microsoft, `callback` is where Microsoft sends
them back with a code. The flow (state, PKCE verifier, nonce) waits in the agent's session in
between, so only the browser that started a sign-in can finish it.

Both are pages, not JSON endpoints: whatever happens, the agent lands back where they started
(their profile by default) with a message saying what was connected or why not.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET

from crm.errors import ServiceError
from mailsync import services

FLOW_SESSION_KEY = "mailsync.microsoft_sign_in"


@login_required
@require_GET
def microsoft_login(request: HttpRequest) -> HttpResponse:
    back = _return_to(request)
    try:
        flow = services.connect_begin(
            redirect_uri=_callback_uri(request), login_hint=request.GET.get("login_hint", "")
        )
    except ServiceError as exc:
        messages.error(request, f"Microsoft 365 cannot be reached to connect a mailbox: {exc}")
        return HttpResponseRedirect(back)
    request.session[FLOW_SESSION_KEY] = {"flow": flow, "next": back}
    return HttpResponseRedirect(flow["auth_uri"])


@login_required
@require_GET
def microsoft_callback(request: HttpRequest) -> HttpResponse:
    pending = request.session.pop(FLOW_SESSION_KEY, None)
    if not pending:
        messages.error(
            request,
            "This answer from Microsoft does not belong to a sign-in started in this browser "
            "(or it was used already). Start again from your profile.",
        )
        return HttpResponseRedirect(resolve_url(settings.LOGIN_REDIRECT_URL))
    try:
        mailbox = services.connect_finish(
            user=request.user, flow=pending["flow"], auth_response=request.GET.dict()
        )
    except ServiceError as exc:
        messages.error(request, f"The mailbox was not connected. {exc}")
    else:
        messages.success(request, f"{mailbox.address} is connected; its mail is syncing now.")
    return HttpResponseRedirect(pending["next"])


def _callback_uri(request: HttpRequest) -> str:
    """Must equal a redirect URI of the app registration: the public address when set."""
    path = reverse("oauth-microsoft-callback")
    if settings.PUBLIC_BASE_URL:
        return f"{settings.PUBLIC_BASE_URL}{path}"
    return request.build_absolute_uri(path)


def _return_to(request: HttpRequest) -> str:
    target = request.GET.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return resolve_url(settings.LOGIN_REDIRECT_URL)
