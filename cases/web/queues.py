"""Case queues: built-in and saved views, filters, search, keyset pages, bulk changes, CSV."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path


@login_required
def queue(request: HttpRequest) -> HttpResponse:
    return render(request, "cases/placeholder.html", {"area": "queues", "title": "Cases"})


urlpatterns = [
    path("cases/", queue, name="queue"),
]
