"""The base of every app's typed service errors.

Services raise a subclass with a human message (shown as is), the field it concerns, and a
machine-readable `code`; the API turns it into a 400 (crm.api.exceptions), the admin into a
form error.
"""

from __future__ import annotations


class ServiceError(Exception):
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
