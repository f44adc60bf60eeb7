"""Page parts for live updates: what `static/js/live.js` fetches when a case changed.

The socket (`cases.consumers`) only says "this case changed"; the page then asks here for the
parts that may have changed, rendered by the workspace's own templates and context builders
(`cases.web.workspace`), so a refreshed part is exactly what a reload would show. The
composer is never among them: what the agent is typing stays where it is.

One request answers with every part, each in a `<template data-part="…">`: one round trip
per change, and the script decides per part whether it can be replaced now (it waits while
the agent is editing a field in it).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_GET

from cases.web import workspace


@login_required
@require_GET
def case_parts(request: HttpRequest, number: str) -> HttpResponse:
    """The header, conversation, notes, tasks and timeline of a visible case (else 404)."""
    case = workspace.case_or_404(request, number)
    context = workspace.case_parts_context(request, case)
    response = render(request, "cases/live/case_parts.html", context)
    response["Cache-Control"] = "private, no-store"
    return response


urlpatterns = [
    path("cases/<str:number>/live", case_parts, name="case-live"),
]
