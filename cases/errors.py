"""Typed errors of the cases services, with machine-readable codes (DESIGN.md habit 6).

Every entry point shows `message` as is: the admin as a form error, the API as a 400 body with
`code`.
"""

from __future__ import annotations

from crm.errors import ServiceError


class CaseError(ServiceError):
    code = "invalid"


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
