"""Project wiring and the shared kernel every app may use (see DESIGN.md)."""

from crm.celery import app as celery_app

__all__ = ("celery_app",)
