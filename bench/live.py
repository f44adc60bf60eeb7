"""Live updates: from a committed change of a case to the event on the agents' open page.

The target (issue 13): an event arrives within 2 s in the production configuration (Redis
channel layer, events sent on commit) and within 15 s in the embedded default (in-memory
channel layer; the web process polls the database every `LIVE_POLL_SECONDS`, 5 s unset).

Both run the real stack: uvicorn serving `crm.asgi:application`, WebSocket clients signed in
with a real session and subscribed to one case on `ws/live` (`{"subscribe": {"case": …}}`),
and a separate process changing that case through `cases.services.case_update`, committed as
a request or the worker would. That process takes the commit moment in an `on_commit`
callback registered before the service's own (so before the event is sent); a client takes
the arrival moment when a frame comes off its socket. Both read CLOCK_MONOTONIC, one clock
for the whole machine, so latency = arrival - commit across processes.

Changes come one at a time with a random pause between them (drawn uniformly, so they fall at
every phase of the embedded poll). The poll reports one event per case per round, the newest:
there a change counts as arrived when the first event of it or of a later change arrives,
which is when the page learns of it. Figures are of the event's arrival; the page then fetches
the changed parts (`/cases/<number>/live`), which the web-page benchmark measures.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import psycopg
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.common import (
    PG,
    ROOT,
    VENV_BIN,
    bench_env,
    machine,
    manage,
    start_uvicorn,
    write_section,
)

DATABASE = "crm_bench_live"
REDIS_URL = "redis://127.0.0.1:6379/15"
PORT = 8977
EMBEDDED_PORT = 8978
CHANGES = 200
FANOUT = 50
EMBEDDED_CHANGES = 40
WARMUP = 3  # changes made first and left out: cold connections in the web processes
SINGLE_PAUSE = (0.05, 0.15)  # seconds between two changes, drawn uniformly
FANOUT_PAUSE = (0.1, 0.3)
EMBEDDED_PAUSE = (1.0, 3.0)
EMBEDDED_POLL_SECONDS = 5.0  # crm.live.DEFAULT_POLL_SECONDS, what the embedded default uses
TARGET_PRODUCTION_S = 2.0
TARGET_EMBEDDED_S = 15.0
SUBSCRIBE_TIMEOUT = 30
INDEX = re.compile(r"→ live (\d+)$")

SETUP = """
import json
from django.conf import settings
from django.test import Client
from cases import services as case_services
from crm import services
team = services.team_create(name="Support")
agent, _ = services.agent_upsert(
    email="live@contoso.example", team=team, first_name="Live", last_name="Bench"
)
case = case_services.case_create(actor=agent, title="live start", team=team)
client = Client()
client.force_login(agent)
name = settings.SESSION_COOKIE_NAME
print(json.dumps({
    "cookie": f"{name}={client.cookies[name].value}", "case": case.number, "email": agent.email,
}))
"""

# argv: case number, actor's email, changes, shortest and longest pause, random seed.
# Prints "<index> <commit moment>" per change.
CHANGER = """
import random, sys, time
import django
django.setup()
from django.db import transaction
from cases.models import Case
from cases.services import case_update
from crm.models import User
number, email, count, low, high, seed = sys.argv[1:]
case = Case.objects.get(number=number)
actor = User.objects.get(email=email)
pauses = random.Random(int(seed))
for index in range(int(count)):
    time.sleep(pauses.uniform(float(low), float(high)))
    committed = []
    with transaction.atomic():
        transaction.on_commit(
            lambda: committed.append(time.clock_gettime(time.CLOCK_MONOTONIC))
        )
        case_update(actor=actor, case=case, title=f"live {index}")
    print(index, repr(committed[0]), flush=True)
"""


def _clock() -> float:
    """The machine-wide monotonic clock the changing process reads too."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@dataclass
class _Receiver:
    """One open case page: its socket and the (change index, arrival moment) it heard."""

    socket: ClientConnection
    arrivals: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class _Result:
    """Latencies in seconds of every (receiver, change), and how each change reached it."""

    latencies: list[float]
    slowest: list[float]  # per change, the last of its receivers
    own: int = 0  # the change's own event arrived first
    covered: int = 0  # a later change's event arrived first (the poll sends the newest)
    never: int = 0


async def _open(port: int, cookie: str, number: str) -> _Receiver:
    socket = await connect(
        f"ws://127.0.0.1:{port}/ws/live",
        origin=f"http://127.0.0.1:{port}",
        additional_headers={"Cookie": cookie},
        open_timeout=SUBSCRIBE_TIMEOUT,
    )
    await socket.send(json.dumps({"subscribe": {"case": number}}))
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), SUBSCRIBE_TIMEOUT))
        if message.get("type") == "subscribed":
            return _Receiver(socket)
        if message.get("type") == "error":
            raise RuntimeError(f"could not subscribe to {number}: {message}")


async def _listen(receiver: _Receiver) -> None:
    """Record each case event's arrival before anything else is done with the frame."""
    try:
        async for frame in receiver.socket:
            arrived = _clock()
            message = json.loads(frame)
            if message.get("type") != "case.changed":
                continue
            found = INDEX.search(message.get("summary", ""))
            if found:
                receiver.arrivals.append((int(found.group(1)), arrived))
    except ConnectionClosed:
        pass


async def _change(env: dict[str, str], case: dict, count: int, pause: tuple, seed: int) -> dict:
    """Run the changing process to its end: {change index: commit moment}."""
    process = await asyncio.create_subprocess_exec(
        str(VENV_BIN / "python"), "-c", CHANGER, case["case"], case["email"], str(count),
        str(pause[0]), str(pause[1]), str(seed),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"the changing process failed ({process.returncode})")
    commits = {}
    for line in out.decode().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            commits[int(parts[0])] = float(parts[1])
    if len(commits) != count:
        raise RuntimeError(f"the changing process reported {len(commits)} of {count} changes")
    return commits


async def _measure(
    *,
    env: dict[str, str],
    port: int,
    case: dict,
    sockets: int,
    changes: int,
    pause: tuple[float, float],
    drain: float,
) -> _Result:
    """Open `sockets` case pages, make WARMUP + `changes` changes, wait up to `drain` seconds
    for the last one to reach every page, and work out the latencies."""
    receivers = await asyncio.gather(
        *(_open(port, case["cookie"], case["case"]) for _ in range(sockets))
    )
    listeners = [asyncio.create_task(_listen(receiver)) for receiver in receivers]
    try:
        commits = await _change(env, case, WARMUP + changes, pause, seed=sockets)
        last = max(commits)
        deadline = _clock() + drain
        while _clock() < deadline and not all(
            any(index >= last for index, _ in r.arrivals) for r in receivers
        ):
            await asyncio.sleep(0.05)
    finally:
        for receiver in receivers:
            await receiver.socket.close()
        await asyncio.gather(*listeners)
    return _latencies(commits, receivers)


def _latencies(commits: dict[int, float], receivers: list[_Receiver]) -> _Result:
    """A change reached a page with the first event of it or of a later change."""
    result = _Result(latencies=[], slowest=[])
    for index in range(WARMUP, max(commits) + 1):
        per_receiver = []
        for receiver in receivers:
            first = next(((i, at) for i, at in receiver.arrivals if i >= index), None)
            if first is None:
                result.never += 1
                per_receiver.append(math.inf)
                continue
            if first[0] == index:
                result.own += 1
            else:
                result.covered += 1
            per_receiver.append(first[1] - commits[index])
        result.latencies.extend(t for t in per_receiver if t != math.inf)
        result.slowest.append(max(per_receiver))
    return result


# --- the two configurations -------------------------------------------------------------------


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _setup(env: dict[str, str]) -> dict:
    manage(env, "migrate", "--noinput", "--verbosity=0")
    return json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])


def _production() -> dict[str, _Result]:
    """PostgreSQL, Redis (db 15) as cache and channel layer, one uvicorn worker per core."""
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    env = {**bench_env(DATABASE), "REDIS_URL": REDIS_URL}
    env.pop("LIVE_POLL_SECONDS", None)
    redis.Redis.from_url(REDIS_URL).flushdb()
    case = _setup(env)
    server = start_uvicorn(env, PORT, os.cpu_count() or 1)
    try:
        common = {"env": env, "port": PORT, "case": case, "changes": CHANGES, "drain": 10.0}
        single = asyncio.run(_measure(**common, sockets=1, pause=SINGLE_PAUSE))
        fanout = asyncio.run(_measure(**common, sockets=FANOUT, pause=FANOUT_PAUSE))
    finally:
        _stop(server)
    return {"single": single, "fanout": fanout}


def _embedded() -> _Result:
    """No DATABASE_URL, no REDIS_URL: SQLite in WAL mode, the file cache and the in-memory
    channel layer under a scratch `CRM_VAR_DIR`; one uvicorn process, as `make run` starts it."""
    var = tempfile.mkdtemp(prefix="bench-live-")
    env = bench_env(DATABASE)
    for name in ("DATABASE_URL", "REDIS_URL", "LIVE_POLL_SECONDS"):
        env.pop(name, None)
    env["CRM_VAR_DIR"] = var
    try:
        case = _setup(env)
        server = start_uvicorn(env, EMBEDDED_PORT, 1)
        try:
            return asyncio.run(
                _measure(
                    env=env,
                    port=EMBEDDED_PORT,
                    case=case,
                    sockets=1,
                    changes=EMBEDDED_CHANGES,
                    pause=EMBEDDED_PAUSE,
                    drain=2 * EMBEDDED_POLL_SECONDS + 5,
                )
            )
        finally:
            _stop(server)
    finally:
        shutil.rmtree(var, ignore_errors=True)


def run() -> None:
    production = _production()
    embedded = _embedded()
    _report(production, embedded)


# --- the report -------------------------------------------------------------------------------


def _percentile(ordered: list[float], share: float) -> float:
    """Nearest rank: a value some receiver really waited (an event never heard counts as
    infinitely late rather than being dropped)."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _row(name: str, values: list[float], result: _Result, target: float, *, ms: bool) -> str:
    ordered = sorted(values)
    p50, p95, top = (_percentile(ordered, 0.5), _percentile(ordered, 0.95), ordered[-1])
    scale, digits, unit = (1000, 1, "ms") if ms else (1, 2, "s")
    shown = [
        f"{v * scale:.{digits}f} {unit}" if v != math.inf else "never" for v in (p50, p95, top)
    ]
    verdict = "met" if p95 <= target else "missed"
    reached = f"{result.own:,} / {result.covered:,} / {result.never:,}"
    return (
        f"| {name} | {shown[0]} | **{shown[1]}** | {shown[2]} | {reached} "
        f"| p95 ≤ {target:.0f} s: {verdict} |"
    )


def _report(production: dict[str, _Result], embedded: _Result) -> None:
    single, fanout = production["single"], production["fanout"]
    rows = [
        _row(
            f"production, 1 page, {CHANGES} changes",
            single.slowest, single, TARGET_PRODUCTION_S, ms=True,
        ),
        _row(
            f"production, {FANOUT} pages on the case, {CHANGES} changes: every delivery",
            fanout.latencies + [math.inf] * fanout.never, fanout, TARGET_PRODUCTION_S, ms=True,
        ),
        _row(
            f"production, {FANOUT} pages: the last page to hear each change",
            fanout.slowest, fanout, TARGET_PRODUCTION_S, ms=True,
        ),
        _row(
            f"embedded default, 1 page, {EMBEDDED_CHANGES} changes",
            embedded.slowest, embedded, TARGET_EMBEDDED_S, ms=False,
        ),
    ]  # fmt: skip
    body = f"""## Live updates: from a commit to the open case page

Target (issue 13): a change reaches the agents' open pages within {TARGET_PRODUCTION_S:.0f} s in
the production configuration and within {TARGET_EMBEDDED_S:.0f} s in the embedded default.
uvicorn serves `crm.asgi:application`; WebSocket clients signed in with a real session subscribe
to one case on `ws/live`; a separate process changes the case's title through
`cases.services.case_update`, one committed transaction per change, with a pause drawn uniformly
between changes. Latency runs from the commit (an `on_commit` callback ahead of the service's
own) to the frame coming off the client's socket, both on the machine's monotonic clock; the
first {WARMUP} changes of each run are left out. The page's fetch of the changed parts that
follows is not included.

- **production**: PostgreSQL, Redis as cache and channel layer, events sent on commit,
  {os.cpu_count()} uvicorn workers (the sockets spread over them); pauses of
  {SINGLE_PAUSE[0]:g}–{SINGLE_PAUSE[1]:g} s with one page, {FANOUT_PAUSE[0]:g}–{FANOUT_PAUSE[1]:g} s
  with {FANOUT} pages (one agent's session, each page checks the agent may still see the case
  before it forwards an event).
- **embedded default**: SQLite (WAL), the file cache and the in-memory channel layer, one
  uvicorn process; the change comes from another process, so only the web process's poll (every
  {EMBEDDED_POLL_SECONDS:g} s, `LIVE_POLL_SECONDS` unset) can deliver it. Pauses of
  {EMBEDDED_PAUSE[0]:g}–{EMBEDDED_PAUSE[1]:g} s. The poll sends one event per case per round,
  the newest, so a change counts as arrived with the first event of it or of a later change.

Percentiles by nearest rank. "Reached by" counts (page, change) pairs: by the change's own
event / first by a later change's event / never.

| run | p50 | p95 | max | reached by own / later / never | target |
|---|---:|---:|---:|---|---|
{chr(10).join(rows)}"""
    write_section("live", body)
    print(body)
    print(f"\nMachine: {machine()}")


if __name__ == "__main__":
    run()
