"""Pieces the cases app's admin modules share."""

from __future__ import annotations

from collections.abc import Callable

from cases.errors import CaseError
from cases.models import (
    Case,
)


class ServiceErrorsFormMixin:
    """Turns a service's typed error into a form error on the field it names."""

    def validate_with(self, validate: Callable[..., None], **kwargs: object) -> None:
        """Run one of the services' validation functions; its error lands on its field."""
        try:
            validate(**kwargs)
        except CaseError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)


def parse_tags(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def refuse_if_own_ancestor(*, case: Case, parent: Case | None) -> None:
    """The cycle check of `case_set_parent`, so the form can show it before saving."""
    ancestor, seen = parent, set()
    while ancestor is not None and ancestor.pk not in seen:
        if ancestor.pk == case.pk:
            raise CaseError("A case cannot be its own ancestor.", field="parent")
        seen.add(ancestor.pk)
        ancestor = ancestor.parent
