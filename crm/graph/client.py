"""The one Microsoft Graph client: timeouts, bounded retries that honour Retry-After, token
refetch on 401, and typed errors.

Retries cover what is transient: 429 and 503/504 (waiting as long as `Retry-After` says, whole
or decimal seconds, else exponential backoff with full jitter) and dropped connections. Other
errors are raised at once as a `GraphError` subclass carrying Graph's own error code. Still to
come (issue 5): the per-mailbox limiter across processes, the circuit breaker and `$batch`.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import requests
from django.conf import settings

from crm.errors import ServiceError
from crm.graph.auth import TokenProvider, token_provider, trusted_ca_bundle

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503, 504})
SYNC_STATE_CODES = frozenset(
    {"syncstatenotfound", "resyncrequired", "syncstateinvalid", "invaliddeltatoken"}
)


class GraphError(ServiceError):
    code = "graph_error"

    def __init__(self, message: str, *, status: int | None = None, graph_code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.graph_code = graph_code


class GraphThrottled(GraphError):
    """Still throttled (429) after the allowed retries."""

    code = "graph_throttled"


class GraphUnavailable(GraphError):
    """503/504 or dropped connections after the allowed retries."""

    code = "graph_unavailable"


class GraphSyncStateExpired(GraphError):
    """The delta state is gone (410 and its codes): the folder needs a full resync."""

    code = "graph_sync_state_expired"


class GraphNotFound(GraphError):
    code = "graph_not_found"


def retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class GraphClient:
    def __init__(
        self,
        *,
        tokens: TokenProvider | None = None,
        base_url: str | None = None,
        max_retries: int | None = None,
    ) -> None:
        self.tokens = tokens or token_provider()
        self.base_url = (base_url or settings.GRAPH_API_URL).rstrip("/")
        self.max_retries = settings.GRAPH_MAX_RETRIES if max_retries is None else max_retries
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = trusted_ca_bundle()
        self.stats = {"requests": 0, "retries": 0, "throttled": 0}

    def url(self, path_or_url: str) -> str:
        return path_or_url if "://" in path_or_url else f"{self.base_url}/{path_or_url.lstrip('/')}"

    def get(self, path_or_url: str, **kwargs: Any) -> dict[str, Any]:
        return self.request("GET", path_or_url, **kwargs).json()

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        url = self.url(path_or_url)
        refreshed = False
        attempt = 0
        while True:
            headers = {
                **kwargs.pop("headers", {}),
                "Authorization": f"Bearer {self.tokens.token()}",
            }
            kwargs["headers"] = headers
            self.stats["requests"] += 1
            try:
                response = self.session.request(
                    method, url, timeout=settings.GRAPH_TIMEOUT_SECONDS, **kwargs
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                failure: Exception | requests.Response = exc
            else:
                if response.status_code == 401 and not refreshed:
                    self.tokens.invalidate()
                    refreshed = True
                    continue
                if response.status_code not in RETRY_STATUSES:
                    return self._checked(response)
                failure = response
            if attempt >= self.max_retries:
                raise self._exhausted(failure)
            self._wait(failure, attempt)
            attempt += 1

    def _wait(self, failure: Exception | requests.Response, attempt: int) -> None:
        delay = None
        if isinstance(failure, requests.Response):
            delay = retry_after_seconds(failure)
            if failure.status_code == 429:
                self.stats["throttled"] += 1
        if delay is None:
            cap = settings.GRAPH_RETRY_BASE_SECONDS * 2**attempt
            delay = random.uniform(0, min(cap, settings.GRAPH_RETRY_MAX_SECONDS))  # noqa: S311
        self.stats["retries"] += 1
        logger.info("graph: retrying in %.2f s after %s", delay, _describe(failure))
        time.sleep(delay)

    def _exhausted(self, failure: Exception | requests.Response) -> GraphError:
        text = f"Microsoft Graph: {_describe(failure)} after {self.max_retries} retries"
        if isinstance(failure, requests.Response) and failure.status_code == 429:
            return GraphThrottled(text, status=429, graph_code="TooManyRequests")
        status = failure.status_code if isinstance(failure, requests.Response) else None
        return GraphUnavailable(text, status=status)

    def _checked(self, response: requests.Response) -> requests.Response:
        if response.ok:
            return response
        try:
            error = response.json().get("error", {})
        except ValueError:
            error = {}
        code, message = error.get("code", ""), error.get("message", response.reason)
        text = f"Microsoft Graph {response.status_code} {code}: {message}"
        if response.status_code == 410 or code.lower() in SYNC_STATE_CODES:
            raise GraphSyncStateExpired(text, status=response.status_code, graph_code=code)
        if response.status_code == 404:
            raise GraphNotFound(text, status=404, graph_code=code)
        raise GraphError(text, status=response.status_code, graph_code=code)


def _describe(failure: Exception | requests.Response) -> str:
    if isinstance(failure, requests.Response):
        return f"HTTP {failure.status_code}"
    return type(failure).__name__
