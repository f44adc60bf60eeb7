"""Injected failures: scripted in order or drawn at a seeded rate.

A fault is `(kind, retry_after)`. Kinds: "429", "503", "504" (that status with Graph's error
body, `Retry-After` if given), "drop" (the connection is closed without an answer), "garbage"
(200 with a truncated JSON body) and "ok" (no fault: lets a script skip a request, e.g. the
outer request of a `$batch` so that the faults land on its sub-requests). Drop and garbage
only make sense for a whole HTTP exchange, so `$batch` sub-requests never take them: a
scripted one stays queued for the next outer request.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass

from graphsim.routes import GraphResponse, graph_error

Fault = tuple[str, str | None]

STATUS_KINDS = ("429", "503", "504")
CONNECTION_KINDS = ("drop", "garbage")
KINDS = frozenset({*STATUS_KINDS, *CONNECTION_KINDS, "ok"})
RANDOM_RETRY_AFTER = "0.05"


@dataclass
class FaultPlan:
    """The queue of scripted faults and the seeded random rate; thread-safe."""

    def __post_init__(self) -> None:
        self._script: list[Fault] = []
        self._rate = 0.0
        self._rng = random.Random(0)  # noqa: S311 - simulated faults, not secrets
        self._lock = threading.Lock()

    def script(self, *faults: Fault) -> None:
        unknown = [kind for kind, _ in faults if kind not in KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {sorted(KINDS)}")
        with self._lock:
            self._script.extend(faults)

    def set_rate(self, rate: float, *, seed: int = 0) -> None:
        with self._lock:
            self._rate = rate
            self._rng = random.Random(seed)  # noqa: S311 - simulated faults

    def next(self, *, outer: bool) -> Fault | None:
        """The fault for the next request; `outer` is False for a `$batch` sub-request."""
        with self._lock:
            if self._script and (outer or self._script[0][0] not in CONNECTION_KINDS):
                fault = self._script.pop(0)
                return None if fault[0] == "ok" else fault
            if self._rate and self._rng.random() < self._rate:
                kind = self._rng.choice(STATUS_KINDS + CONNECTION_KINDS if outer else STATUS_KINDS)
                return kind, (RANDOM_RETRY_AFTER if kind == "429" else None)
            return None


def status_fault_response(kind: str, retry_after: str | None) -> GraphResponse:
    """A 429/503/504 in Graph's error shape."""
    status = int(kind)
    code = "TooManyRequests" if status == 429 else "ServiceUnavailable"
    response = graph_error(status, code, "Simulated fault.")
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return response


def garbage_body(base_url: str) -> bytes:
    """The first half of a plausible delta page, as a connection cut mid-body would leave it."""
    document = {
        "@odata.context": f"{base_url}/v1.0/$metadata#Collection(message)",
        "value": [{"id": f"AAMkGarbage{i}", "subject": f"Truncated {i}"} for i in range(8)],
        "@odata.nextLink": f"{base_url}/v1.0/users/x/mailFolders/inbox/messages/delta",
    }
    payload = json.dumps(document).encode()
    return payload[: len(payload) // 2]
