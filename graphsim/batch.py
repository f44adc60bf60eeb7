"""`POST /v1.0/$batch`: Graph's JSON batching (the routes answer GETs; other methods 405).

Each sub-request runs through the same routes as a direct request (with the outer
`Authorization`) and may draw its own injected 429/503/504. The whole batch holds one of the
first sub-request's mailbox's concurrency slots, as Exchange counts a batch as one request
against that mailbox.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from graphsim.faults import status_fault_response
from graphsim.routes import (
    GraphRequest,
    GraphResponse,
    Preferences,
    authenticated,
    graph_error,
    handle,
    mailbox_of,
    parse_prefer,
    throttled_concurrency,
    unauthenticated,
)

if TYPE_CHECKING:
    from graphsim.server import SimulatorServer

MAX_BATCH_REQUESTS = 20


class InvalidBatch(ValueError):
    """The batch body breaks Graph's rules; the whole batch answers 400."""


def run_batch(server: SimulatorServer, outer: GraphRequest, body: bytes) -> GraphResponse:
    """Answer the batch; `outer` carries the outer request's authorization and preferences."""
    if not authenticated(server, outer.authorization):
        return unauthenticated()
    try:
        requests = parse_batch(body)
    except InvalidBatch as exc:
        return graph_error(400, "BadRequest", str(exc))
    mailbox = mailbox_of(server, _sub_request(outer, requests[0]).parts) if requests else None
    if mailbox is not None and not server.enter_mailbox(mailbox.address):
        return throttled_concurrency()
    try:
        if server.response_delay:
            time.sleep(server.response_delay)
        return GraphResponse(200, {"responses": [_run_one(server, outer, r) for r in requests]})
    finally:
        if mailbox is not None:
            server.leave_mailbox(mailbox.address)


def parse_batch(body: bytes) -> list[dict[str, Any]]:
    """The sub-requests, checked as Graph checks them before running any."""
    try:
        document = json.loads(body or b"null")
    except ValueError:
        raise InvalidBatch("Invalid batch payload format.") from None
    requests = document.get("requests") if isinstance(document, dict) else None
    if not isinstance(requests, list):
        raise InvalidBatch("Invalid batch payload format.")
    if len(requests) > MAX_BATCH_REQUESTS:
        raise InvalidBatch(f"The number of requests exceeds the limit of {MAX_BATCH_REQUESTS}.")
    for request in requests:
        if not isinstance(request, dict) or not all(
            isinstance(request.get(key), str) and request[key] for key in ("id", "method", "url")
        ):
            raise InvalidBatch("Each request needs a string id, method and url.")
    if len({r["id"] for r in requests}) != len(requests):
        raise InvalidBatch("Request ids must be unique in a batch.")
    return requests


def _sub_request(outer: GraphRequest, sub: dict[str, Any]) -> GraphRequest:
    """Urls are relative to /v1.0, with or without the leading slash; the outer request lends
    its authorization, and its ImmutableId preference if the sub-request has none."""
    headers = sub.get("headers") if isinstance(sub.get("headers"), Mapping) else {}
    own = parse_prefer(str(v) for k, v in headers.items() if k.lower() == "prefer")
    return GraphRequest(
        method=sub["method"].upper(),
        target="/" + sub["url"].lstrip("/"),
        authorization=outer.authorization,
        prefer=Preferences(
            page_size=own.page_size,
            immutable_ids=own.immutable_ids or outer.prefer.immutable_ids,
        ),
    )


def _run_one(server: SimulatorServer, outer: GraphRequest, sub: dict[str, Any]) -> dict[str, Any]:
    response = _sub_response(server, outer, sub)
    return {
        "id": sub["id"],
        "status": response.status,
        "headers": {"Content-Type": response.content_type(), **response.headers},
        "body": _sub_body(response),
    }


def _sub_response(
    server: SimulatorServer, outer: GraphRequest, sub: dict[str, Any]
) -> GraphResponse:
    fault = server.next_fault(outer=False)
    if fault is not None:
        return status_fault_response(*fault)
    if "://" in sub["url"]:
        return graph_error(400, "BadRequest", "Batch request urls must be relative to /v1.0.")
    return handle(server, _sub_request(outer, sub), in_batch=True)


def _sub_body(response: GraphResponse) -> Any:
    """JSON bodies inline; anything else base64-encoded, as Graph does."""
    if isinstance(response.body, bytes):
        return base64.b64encode(response.body).decode()
    return response.body
