"""The one Microsoft Graph client: timeouts, bounded retries that honour Retry-After, token
refetch on 401, typed errors, the per-mailbox limiter and circuit breaker, and JSON batching.

Retries cover what is transient: 429 and 503/504 (waiting as long as `Retry-After` says, whole
or decimal seconds, else exponential backoff with full jitter), dropped connections, and answers
whose body was lost on the way: a connection dropped mid-body, or a 2xx body that does not
parse as JSON (a truncated page). A lost body means Graph did act, so it is retried only when
the request is safe to repeat (GET and other idempotent methods, a $batch of them); otherwise,
and once the retries are spent, it is raised as `GraphBadResponse`. Other errors are raised at
once as a `GraphError` subclass carrying Graph's own error code.

A client made with `mailbox=` shares that mailbox's limits with every other process:

- each attempt holds a slot of the mailbox's limiter (`crm.graph.limits`) while it is on the
  wire, never while sleeping before a retry, so that all workers together keep at most
  `GRAPH_MAILBOX_CONCURRENCY` requests in flight for it;
- each request, with its retries, goes through the mailbox's circuit breaker
  (`crm.graph.breaker`), which refuses at once with `GraphCircuitOpen` while the mailbox keeps
  failing.

`batch()` sends any number of requests through Graph's JSON batching in chunks of 20,
re-sending only the sub-requests answered 429/503/504; `get_many()` is the common case of many
GETs. `stats` counts what happened, for the sync engine to record per round.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import Any

import requests
from django.conf import settings

from crm.graph.auth import Tokens, tokens_for, trusted_ca_bundle
from crm.graph.breaker import CircuitBreaker, Outcome
from crm.graph.errors import (
    GraphBadResponse,
    GraphBusy,
    GraphCircuitOpen,
    GraphError,
    GraphNotFound,
    GraphSyncStateExpired,
    GraphThrottled,
    GraphUnavailable,
)
from crm.graph.limits import mailbox_slots

__all__ = [
    "BATCH_LIMIT",
    "GraphBadResponse",
    "GraphBusy",
    "GraphCircuitOpen",
    "GraphClient",
    "GraphError",
    "GraphNotFound",
    "GraphSyncStateExpired",
    "GraphThrottled",
    "GraphUnavailable",
    "graph_error",
    "retry_after_seconds",
]

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503, 504})
SYNC_STATE_CODES = frozenset(
    {"syncstatenotfound", "resyncrequired", "syncstateinvalid", "invaliddeltatoken"}
)
# Methods whose repetition does no harm when an answer was lost after Graph acted on it.
REPEATABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
BATCH_LIMIT = 20  # Graph's maximum number of sub-requests in one $batch
# The connection dropped before a response arrived: Graph may not have seen the request.
DROPPED = (requests.ConnectionError, requests.Timeout)
# The response started but its body was lost or garbled on the way.
BODY_LOST = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)


class BodyDidNotParse(Exception):
    """A 2xx answer whose body is not JSON (internal: becomes GraphBadResponse)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the body of a {status} response did not parse as JSON")
        self.status = status


Failure = requests.Response | Exception


def retry_after_seconds(response: requests.Response) -> float | None:
    return _seconds(response.headers.get("Retry-After"))


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def graph_error(status: int, body: Any, *, reason: str = "") -> GraphError:
    """The typed error for a Graph error answer (`body` is its parsed JSON, if any)."""
    error = body.get("error", {}) if isinstance(body, Mapping) else {}
    error = error if isinstance(error, Mapping) else {}
    code, message = error.get("code", ""), error.get("message", reason)
    text = f"Microsoft Graph {status} {code}: {message}"
    if status == 410 or code.lower() in SYNC_STATE_CODES:
        return GraphSyncStateExpired(text, status=status, graph_code=code)
    if status == 404:
        return GraphNotFound(text, status=status, graph_code=code)
    if status == 429:
        return GraphThrottled(text, status=status, graph_code=code)
    if status in (503, 504):
        return GraphUnavailable(text, status=status, graph_code=code)
    return GraphError(text, status=status, graph_code=code)


class GraphClient:
    def __init__(
        self,
        *,
        tokens: Tokens | None = None,
        base_url: str | None = None,
        max_retries: int | None = None,
        mailbox: str | None = None,
    ) -> None:
        self.tokens = tokens or tokens_for(mailbox)
        self.base_url = (base_url or settings.GRAPH_API_URL).rstrip("/")
        self.max_retries = settings.GRAPH_MAX_RETRIES if max_retries is None else max_retries
        self.mailbox = mailbox.lower() if mailbox else None
        self.breaker = (
            CircuitBreaker(self.mailbox, graph_url=self.base_url) if self.mailbox else None
        )
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = trusted_ca_bundle()
        # requests: HTTP requests sent; retries: of those, re-sent after a transient failure;
        # throttled: 429s waited out (sub-requests' too); subrequests: $batch sub-requests
        # sent, re-sent ones again; subrequest_retries: the re-sent ones.
        self.stats = {
            "requests": 0,
            "retries": 0,
            "throttled": 0,
            "subrequests": 0,
            "subrequest_retries": 0,
        }

    def url(self, path_or_url: str) -> str:
        return path_or_url if "://" in path_or_url else f"{self.base_url}/{path_or_url.lstrip('/')}"

    # --- Single requests ----------------------------------------------------------------------

    def get(self, path_or_url: str, **kwargs: Any) -> dict[str, Any]:
        """GET and parse the JSON body (a body that does not parse is retried: see above)."""
        return self.request_json("GET", path_or_url, **kwargs)

    def request_json(self, method: str, path_or_url: str, **kwargs: Any) -> dict[str, Any]:
        """Send and parse the JSON body; an empty body (202, 204) is `{}`."""
        with self._breaker_guard():
            return self._send(method, self.url(path_or_url), parse_json=True, **kwargs)[1]

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """Send and return the response as it is (for bodies that are not JSON, such as an
        attachment's bytes). Errors are raised as for every other call."""
        with self._breaker_guard():
            return self._send(method, self.url(path_or_url), parse_json=False, **kwargs)[0]

    def _breaker_guard(self) -> AbstractContextManager[Outcome]:
        return self.breaker.guard() if self.breaker else nullcontext(Outcome())

    def _send(
        self,
        method: str,
        url: str,
        *,
        parse_json: bool,
        slots: int = 1,
        repeatable: bool | None = None,
        **kwargs: Any,
    ) -> tuple[requests.Response, Any]:
        """One request with its retries; returns the response and, if asked, its JSON body.
        `repeatable` (default: by method) says whether an answer whose body was lost may be
        asked for again."""
        headers = kwargs.pop("headers", None) or {}
        if repeatable is None:
            repeatable = method.upper() in REPEATABLE_METHODS
        refreshed = False
        attempt = 0
        while True:
            try:
                response = self._on_the_wire(method, url, headers, slots, kwargs)
                if response.status_code == 401 and not refreshed:
                    response.close()
                    self.tokens.invalidate()
                    refreshed = True
                    continue
                if response.status_code not in RETRY_STATUSES:
                    return response, self._checked_body(response, parse_json)
                response.close()
                failure: Failure = response
            except (*BODY_LOST, BodyDidNotParse) as exc:
                if not repeatable:
                    unsafe = f"not retried: {method} is not safe to repeat"
                    raise self._given_up(exc, unsafe) from exc
                failure = exc
            except DROPPED as exc:
                failure = exc
            if attempt >= self.max_retries:
                raise self._given_up(failure, f"after {self.max_retries} retries")
            self._wait(failure, attempt)
            attempt += 1

    def _on_the_wire(
        self, method: str, url: str, headers: dict[str, str], slots: int, kwargs: dict[str, Any]
    ) -> requests.Response:
        """One HTTP exchange, holding the mailbox's limiter slots while it lasts: not while the
        token is fetched (that is the identity platform) and not while sleeping to retry. A
        streamed body (`stream=True`) is still on the wire after this returns, so its slots
        are released only when the caller closes the response."""
        headers = {**headers, "Authorization": f"Bearer {self.tokens.token()}"}
        self.stats["requests"] += 1
        with ExitStack() as held:
            held.enter_context(self._limiter_slots(slots))
            response = self.session.request(
                method, url, headers=headers, timeout=settings.GRAPH_TIMEOUT_SECONDS, **kwargs
            )
            if kwargs.get("stream"):
                _release_when_closed(response, held.pop_all())
            return response

    def _limiter_slots(self, count: int) -> AbstractContextManager[None]:
        if not self.mailbox:
            return nullcontext()
        return mailbox_slots(self.mailbox, count=count, graph_url=self.base_url)

    def _checked_body(self, response: requests.Response, parse_json: bool) -> Any:
        """Raise the typed error for an error answer; else the parsed body when asked for."""
        if not response.ok:
            try:
                body = response.json()
            except ValueError:
                body = None
            finally:
                response.close()
            raise graph_error(response.status_code, body, reason=response.reason)
        if not parse_json:
            return None
        with response:  # read whole: nothing stays on the wire (or holds a slot)
            if not response.content:
                return {}
            try:
                return response.json()
            except ValueError:
                raise BodyDidNotParse(response.status_code) from None

    def _wait(self, failure: Failure, attempt: int) -> None:
        delay = None
        if isinstance(failure, requests.Response):
            delay = retry_after_seconds(failure)
            if failure.status_code == 429:
                self.stats["throttled"] += 1
        if delay is None:
            delay = self._backoff(attempt)
        self.stats["retries"] += 1
        logger.info("graph: retrying in %.2f s after %s", delay, _describe(failure))
        time.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, for answers that do not say how long to wait."""
        cap = settings.GRAPH_RETRY_BASE_SECONDS * 2**attempt
        return random.uniform(0, min(cap, settings.GRAPH_RETRY_MAX_SECONDS))  # noqa: S311

    def _given_up(self, failure: Failure, when: str) -> GraphError:
        text = f"Microsoft Graph: {_describe(failure)} {when}"
        if isinstance(failure, BodyDidNotParse):
            return GraphBadResponse(text, status=failure.status)
        if isinstance(failure, BODY_LOST):
            return GraphBadResponse(text)
        if isinstance(failure, requests.Response) and failure.status_code == 429:
            return GraphThrottled(text, status=429, graph_code="TooManyRequests")
        status = failure.status_code if isinstance(failure, requests.Response) else None
        return GraphUnavailable(text, status=status)

    # --- JSON batching ------------------------------------------------------------------------

    def batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send any number of requests through `POST $batch`, 20 to a POST, and return one
        answer `{"id", "status", "headers", "body"}` per request, in the order given.

        Each request is `{"method", "url"}` with optional `"id"` (default: its position),
        `"headers"` and `"body"`; `url` is relative to the API base (`/users/x/messages/ID`)
        or a full URL under it (a nextLink). Sub-requests answered 429/503/504 are re-sent,
        only those, within `GRAPH_MAX_RETRIES`; after that their answer is returned as it is
        and the caller decides. The POST itself retries, refetches tokens and goes through the
        limiter and breaker like any request; to the breaker a chunk whose every sub-request
        stayed throttled or unavailable is a failed request.
        """
        prepared = self._prepared_subrequests(requests)
        chunks = _chunks(prepared, BATCH_LIMIT)
        return [answer for chunk in chunks for answer in self._batch_chunk(chunk)]

    def get_many(
        self, urls: list[str], headers: dict[str, str] | None = None
    ) -> list[dict[str, Any] | GraphError]:
        """GET every url through `batch()`: per url, its JSON body or the typed error that a
        single `get()` would have raised (its retries spent)."""
        extra = {"headers": headers} if headers else {}
        answers = self.batch([{"method": "GET", "url": url, **extra} for url in urls])
        return [_body_or_error(answer) for answer in answers]

    def _prepared_subrequests(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        prepared = [self._subrequest(index, request) for index, request in enumerate(requests)]
        ids = [sub["id"] for sub in prepared]
        if len(set(ids)) != len(ids):
            raise ValueError("Graph batch: request ids must be unique")
        return prepared

    def _subrequest(self, index: int, request: dict[str, Any]) -> dict[str, Any]:
        if "dependsOn" in request:
            raise ValueError("Graph batch: dependsOn is not supported (chunks of 20 split it)")
        sub = {
            **request,
            "id": str(request.get("id", index)),
            "method": request.get("method", "GET").upper(),
            "url": self._relative(request["url"]),
        }
        if "body" in sub and not any(k.lower() == "content-type" for k in sub.get("headers", {})):
            sub["headers"] = {**sub.get("headers", {}), "Content-Type": "application/json"}
        return sub

    def _relative(self, url: str) -> str:
        """A sub-request's url relative to the API base, as $batch wants it."""
        if url.startswith(self.base_url + "/"):
            url = url[len(self.base_url) :]
        elif "://" in url:
            raise ValueError(f"Graph batch: {url} is not under {self.base_url}")
        return "/" + url.lstrip("/")

    def _batch_chunk(self, chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """At most 20 sub-requests, re-sending those answered 429/503/504 while retries last."""
        with self._breaker_guard() as outcome:
            final: dict[str, dict[str, Any]] = {}
            pending, attempt = chunk, 0
            while True:
                answers = self._post_batch(pending)
                final.update(answers)
                retry = [sub for sub in pending if answers[sub["id"]]["status"] in RETRY_STATUSES]
                if not retry or attempt >= self.max_retries:
                    break
                self._wait_for_subrequests([answers[sub["id"]] for sub in retry], attempt)
                pending, attempt = retry, attempt + 1
            results = [final[sub["id"]] for sub in chunk]
            outcome.failed = all(answer["status"] in RETRY_STATUSES for answer in results)
        return results

    def _post_batch(self, subrequests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """One `POST $batch` (with the usual retries); the answers by sub-request id.

        It takes a limiter slot per sub-request, up to the limit: Graph hands Outlook up to
        four of a batch's sub-requests at a time and Outlook may run them in parallel, each
        counting against the mailbox's concurrency, so one batch can fill the mailbox."""
        self.stats["subrequests"] += len(subrequests)
        _, body = self._send(
            "POST",
            self.url("$batch"),
            parse_json=True,
            slots=len(subrequests),
            repeatable=all(sub["method"] in REPEATABLE_METHODS for sub in subrequests),
            json={"requests": subrequests},
        )
        return _answers_by_id(body, subrequests)

    def _wait_for_subrequests(self, answers: list[dict[str, Any]], attempt: int) -> None:
        """Wait as long as the longest Retry-After among them says, else back off."""
        delays = [_seconds(_header(answer, "Retry-After")) for answer in answers]
        known = [delay for delay in delays if delay is not None]
        delay = max(known) if known else self._backoff(attempt)
        self.stats["subrequest_retries"] += len(answers)
        self.stats["throttled"] += sum(1 for answer in answers if answer["status"] == 429)
        statuses = ", ".join(sorted({str(answer["status"]) for answer in answers}))
        logger.info(
            "graph: re-sending %d batch sub-requests in %.2f s after HTTP %s",
            len(answers), delay, statuses,
        )  # fmt: skip
        time.sleep(delay)


def _answers_by_id(body: Any, subrequests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    responses = body.get("responses") if isinstance(body, Mapping) else None
    answers = {str(r.get("id")): _answer(r) for r in responses or [] if isinstance(r, Mapping)}
    missing = [sub["id"] for sub in subrequests if sub["id"] not in answers]
    if missing:
        raise GraphBadResponse(
            f"Microsoft Graph: the $batch response has no answer for ids {', '.join(missing)}"
        )
    return answers


def _answer(response: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(response.get("id")),
        "status": int(response.get("status") or 0),
        "headers": dict(response.get("headers") or {}),
        "body": response.get("body"),
    }


def _header(answer: dict[str, Any], name: str) -> str | None:
    return next((v for k, v in answer["headers"].items() if k.lower() == name.lower()), None)


def _body_or_error(answer: dict[str, Any]) -> dict[str, Any] | GraphError:
    if 200 <= answer["status"] < 300:
        return answer["body"] if answer["body"] is not None else {}
    return graph_error(answer["status"], answer["body"])


def _release_when_closed(response: requests.Response, held: ExitStack) -> None:
    """Run `held`'s exits (the limiter slots) when the response is closed, as `with response:`
    does at its end."""
    close = response.close

    def close_and_release() -> None:
        try:
            close()
        finally:
            held.close()

    response.close = close_and_release  # type: ignore[method-assign]


def _describe(failure: Failure) -> str:
    if isinstance(failure, requests.Response):
        return f"HTTP {failure.status_code}"
    if isinstance(failure, BodyDidNotParse):
        return str(failure)
    return type(failure).__name__


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
