"""Typed errors of the cases services, with machine-readable codes (DESIGN.md habit 6).

Every entry point shows `message` as is: the admin as a form error, the API as a 400 body with
`code`.
"""

from __future__ import annotations


class CaseError(Exception):
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidTransition(CaseError):
    code = "invalid_transition"


class InvalidAssignee(CaseError):
    code = "invalid_assignee"


class InvalidMerge(CaseError):
    code = "invalid_merge"


class InvalidLink(CaseError):
    code = "invalid_link"


class DuplicateEmail(CaseError):
    code = "duplicate_email"


class NoAgentAvailable(CaseError):
    code = "no_agent_available"


class ReopenWindowPassed(CaseError):
    code = "reopen_window_passed"
