"""The Airtable client: pyairtable with our retry policy, the per-base rate limit shared by
every process (`cases.airtable.limits`) and typed errors with messages an admin can act on.

Every HTTP attempt, retries included, first takes its turn from the base's limiter: urllib3
retries below `requests`, so the turn is taken in two places, the adapter (first attempt) and
the retry's `sleep` (each further attempt); the turn ends when the answer is in (see `limits`
for why it counts until then). A 429 locks the base out for every process for
`AIRTABLE_LOCKOUT_SECONDS` (Airtable refuses the base for 30 s; pyairtable's default retry
would give up after about 3 s). Dropped connections, timeouts and 5xx answers are retried
with exponential backoff; writes are retried too, which is safe because every write is an
upsert on the merge key: resending one that did arrive updates the same records again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from pyairtable import Api
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from cases.airtable.limits import BaseRateLimiter, base_key

MAX_RECORDS_PER_REQUEST = 10
RETRIED_STATUSES = (429, 500, 502, 503, 504)


class AirtableError(Exception):
    """Airtable refused or could not be reached; `message` is for the admin."""

    code = "airtable_error"

    def __init__(self, message: str, *, status: int | None = None, error_type: str = "") -> None:
        super().__init__(message)
        self.message, self.status, self.error_type = message, status, error_type


class AirtableAuthFailed(AirtableError):
    code = "airtable_auth_failed"


class AirtableNoAccess(AirtableError):
    code = "airtable_no_access"


class AirtableRejected(AirtableError):
    code = "airtable_rejected"


class AirtableThrottled(AirtableError):
    code = "airtable_throttled"


class AirtableUnavailable(AirtableError):
    code = "airtable_unavailable"


@dataclass
class RequestStats:
    """What one client did: HTTP attempts (retries included), 429s, failed attempts."""

    requests: int = 0
    throttled: int = 0
    errors: int = 0


@dataclass(frozen=True)
class UpsertResult:
    created: int
    updated: int


class _Retry(Retry):
    """urllib3's retry with Airtable's lockout after a 429, a turn from the rate limiter
    before every further attempt, and the attempts counted."""

    limiter: BaseRateLimiter | None = None
    stats: RequestStats | None = None
    lockout: float = 30.0

    def new(self, **kw: Any) -> _Retry:
        retry = super().new(**kw)
        retry.limiter, retry.stats, retry.lockout = self.limiter, self.stats, self.lockout
        return retry

    def increment(self, method=None, url=None, response=None, error=None, _pool=None,
                  _stacktrace=None) -> Retry:  # fmt: skip  # noqa: ANN001 - urllib3's signature
        if self.stats is not None:
            if response is not None and response.status == 429:
                self.stats.throttled += 1
            else:
                self.stats.errors += 1
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def sleep(self, response=None) -> None:  # noqa: ANN001 - urllib3's signature
        if response is not None and response.status == 429:
            lockout = max(self.lockout, self.get_retry_after(response) or 0.0)
            if self.limiter is not None:
                self.limiter.lock_out(lockout)  # every process stops for it, not only us
            else:
                time.sleep(lockout)
        else:
            super().sleep(response)
        _take_turn(self.limiter, self.stats)


def _take_turn(limiter: BaseRateLimiter | None, stats: RequestStats | None) -> None:
    if limiter is not None:
        limiter.wait_turn()
    if stats is not None:
        stats.requests += 1


class _LimitedAdapter(HTTPAdapter):
    """Takes the first attempt's turn; the retry takes the others'."""

    def __init__(self, *, limiter: BaseRateLimiter, stats: RequestStats, retry: _Retry) -> None:
        self.limiter, self.stats = limiter, stats
        super().__init__(max_retries=retry)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        _take_turn(self.limiter, self.stats)
        try:
            return super().send(request, *args, **kwargs)
        finally:
            self.limiter.release()


def _retry_policy(limiter: BaseRateLimiter, stats: RequestStats) -> _Retry:
    retry = _Retry(
        total=int(settings.AIRTABLE_MAX_RETRIES),
        backoff_factor=float(settings.AIRTABLE_BACKOFF_SECONDS),
        status_forcelist=RETRIED_STATUSES,
        allowed_methods=None,  # writes too: they are upserts (see the module's docstring)
        raise_on_status=False,  # the last answer comes back, with Airtable's error body
        respect_retry_after_header=True,
    )
    retry.limiter, retry.stats = limiter, stats
    retry.lockout = float(settings.AIRTABLE_LOCKOUT_SECONDS)
    return retry


class AirtableClient:
    """One table of one base, as one export run uses it."""

    def __init__(
        self,
        *,
        token: str,
        base_id: str,
        table_name: str,
        limiter: BaseRateLimiter | None = None,
    ) -> None:
        api_url = settings.AIRTABLE_API_URL
        self.base_id, self.table_name = base_id, table_name
        self.stats = RequestStats()
        self.limiter = limiter or BaseRateLimiter(base_key(base_id, api_url))
        timeout = (
            float(settings.AIRTABLE_CONNECT_TIMEOUT_SECONDS),
            float(settings.AIRTABLE_READ_TIMEOUT_SECONDS),
        )
        self.api = Api(token, timeout=timeout, retry_strategy=None, endpoint_url=api_url)
        adapter = _LimitedAdapter(
            limiter=self.limiter, stats=self.stats, retry=_retry_policy(self.limiter, self.stats)
        )
        self.api.session.mount("https://", adapter)
        self.api.session.mount("http://", adapter)
        self.table = self.api.table(base_id, table_name)

    def close(self) -> None:
        self.api.session.close()

    def upsert(self, fields: list[dict[str, Any]], *, merge_on: str) -> UpsertResult:
        """Create or update up to ten records in one request, matched on `merge_on`."""
        if not 1 <= len(fields) <= MAX_RECORDS_PER_REQUEST:
            raise ValueError(f"1 to {MAX_RECORDS_PER_REQUEST} records per request")
        try:
            answer = self.table.batch_upsert(
                [{"fields": record} for record in fields], key_fields=[merge_on], typecast=True
            )
        except requests.RequestException as exc:
            raise self._translate(exc) from exc
        return UpsertResult(len(answer["createdRecords"]), len(answer["updatedRecords"]))

    def first_page(self, *, page_size: int = 10) -> list[dict[str, Any]]:
        """The table's first records: proves the token, base and table (one request)."""
        try:
            return next(self.table.iterate(page_size=page_size), [])
        except requests.RequestException as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: requests.RequestException) -> AirtableError:
        where = f"base {self.base_id}, table “{self.table_name}”"
        response = getattr(exc, "response", None)
        if response is None:
            return AirtableUnavailable(
                f"Airtable could not be reached ({type(exc).__name__}) after "
                f"{settings.AIRTABLE_MAX_RETRIES} retries: {exc}"
            )
        status = response.status_code
        error_type, detail = _error_of(response)
        said = f"Airtable answered {status} {error_type}: {detail}".rstrip(": ")
        if status not in RETRIED_STATUSES:
            self.stats.errors += 1  # retried ones were counted as they were retried
        if status == 401:
            return AirtableAuthFailed(
                f"{said}. Check the export's personal access token.", status=status,
                error_type=error_type,
            )  # fmt: skip
        if status in (403, 404):
            return AirtableNoAccess(
                f"{said}. Check the base id and the table name ({where}), and that the token "
                "was given this base and the scopes data.records:read and data.records:write.",
                status=status,
                error_type=error_type,
            )
        if status == 429:
            return AirtableThrottled(
                f"{said}. Still rate limited after the allowed retries ({where}).",
                status=status, error_type=error_type,
            )  # fmt: skip
        if status >= 500:
            return AirtableUnavailable(
                f"{said}. Airtable kept failing after the allowed retries.", status=status,
                error_type=error_type,
            )  # fmt: skip
        hint = ""
        if error_type == "UNKNOWN_FIELD_NAME":
            hint = (
                f". A column of the export's mapping does not exist in {where}: add it in "
                "Airtable or change the mapping"
            )
        return AirtableRejected(f"{said}{hint}.", status=status, error_type=error_type)


def _error_of(response: requests.Response) -> tuple[str, str]:
    """Airtable's `{"error": {"type", "message"}}` (or `{"error": "TYPE"}`)."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return "", response.text[:200]
    if isinstance(error, dict):
        return str(error.get("type", "")), str(error.get("message", ""))
    return str(error or ""), ""
