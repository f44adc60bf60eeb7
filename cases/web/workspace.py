"""The case workspace: one case, its conversation, notes, tasks and timeline."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from cases import selectors


@login_required
def case_detail(request: HttpRequest, number: str) -> HttpResponse:
    case = selectors.case_get_by_number(user=request.user, number=number)
    if case is None:
        raise Http404("No such case.")
    return render(request, "cases/case_detail.html", {"case": case, "area": "queues"})


urlpatterns = [
    path("cases/<str:number>/", case_detail, name="case"),
]
