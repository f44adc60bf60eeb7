"""The notifications page (`/notifications/`) the bell in the top bar links to.

Server-rendered; the bell's live count arrives with the UI's live updates. Only the signed-in
agent's own notifications are read or marked (crm.notifications selectors).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from crm import notifications

PAGE_SIZE = 100  # the newest; older ones stay reachable through the API's cursor


@login_required
def notification_list(request: HttpRequest) -> HttpResponse:
    rows = list(notifications.notifications_for(request.user)[:PAGE_SIZE])
    context = {
        "area": "notifications",
        "notifications": rows,
        "has_unread": any(row.read_at is None for row in rows),
    }
    return render(request, "crm/notifications.html", context)


@login_required
@require_POST
def notification_mark_all_read(request: HttpRequest) -> HttpResponse:
    """POST (with the CSRF token) so that a link or a prefetch never marks anything read."""
    notifications.notifications_mark_read(user=request.user, ids="all")
    return redirect("notifications")


urlpatterns = [
    path("notifications/", notification_list, name="notifications"),
    path("notifications/read", notification_mark_all_read, name="notifications-read-all"),
]
