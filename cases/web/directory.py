"""Customers, organizations and tasks: lists and detail pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path


@login_required
def customers(request: HttpRequest) -> HttpResponse:
    return render(request, "cases/placeholder.html", {"area": "customers", "title": "Customers"})


@login_required
def organizations(request: HttpRequest) -> HttpResponse:
    return render(
        request, "cases/placeholder.html", {"area": "organizations", "title": "Organizations"}
    )


@login_required
def tasks(request: HttpRequest) -> HttpResponse:
    return render(request, "cases/placeholder.html", {"area": "tasks", "title": "Tasks"})


urlpatterns = [
    path("customers/", customers, name="customers"),
    path("organizations/", organizations, name="organizations"),
    path("tasks/", tasks, name="tasks"),
]
