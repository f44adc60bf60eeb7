"""The agent's own settings: signature, time zone, notification preferences."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    return render(request, "cases/placeholder.html", {"title": "Profile"})


urlpatterns = [
    path("profile/", profile, name="profile"),
]
