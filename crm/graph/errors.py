"""Typed errors of the Graph client, in a module of their own so that the client, the limiter
and the breaker can all raise them without importing one another.

`crm.graph.client` re-exports every one of them; import from there.
"""

from __future__ import annotations

from crm.errors import ServiceError


class GraphError(ServiceError):
    code = "graph_error"

    def __init__(self, message: str, *, status: int | None = None, graph_code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.graph_code = graph_code


class GraphThrottled(GraphError):
    """Still throttled (429) after the allowed retries."""

    code = "graph_throttled"


class GraphBusy(GraphThrottled):
    """No slot of the per-mailbox limiter came free in time: our own workers already have as
    many requests in flight for this mailbox as Graph allows. Retry later, like a 429."""

    code = "graph_busy"


class GraphUnavailable(GraphError):
    """503/504 or dropped connections after the allowed retries."""

    code = "graph_unavailable"


class GraphBadResponse(GraphUnavailable):
    """A 2xx whose body did not parse, after the allowed retries (a truncated page)."""

    code = "graph_bad_response"


class GraphCircuitOpen(GraphUnavailable):
    """The mailbox's circuit breaker is open: recent requests kept failing, so this one was
    refused without touching the network. `retry_after` says when a trial is allowed."""

    code = "graph_circuit_open"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GraphSyncStateExpired(GraphError):
    """The delta state is gone (410 and its codes): the folder needs a full resync."""

    code = "graph_sync_state_expired"


class GraphNotFound(GraphError):
    code = "graph_not_found"
