"""The case API at a million cases: list, deep page, detail with timeline, search, analytics.

`make bench-data` builds the million-case database once as a template (`crm_bench_1m_tpl`,
marked complete only when the load finished); each run copies it to a scratch database, so
runs start from the same data and later runs do not pay for the load again.

Requests go one at a time over loopback to uvicorn (production settings, one worker per core);
each figure is the p50/p95 over the samples, both as the client saw it and as the server
reported in its `Server-Timing` header.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request

import psycopg

from bench.common import PG, bench_env, manage, measure, start_uvicorn, timed_get, write_section

TEMPLATE = "crm_bench_1m_tpl"
SCRATCH = "crm_bench_1m_run"
CASES = int(os.environ.get("BENCH_CASES", "1000000"))
PORT = 8972
SAMPLES = 60
DEEP_PAGES = 200
MARKER = f"bench-data complete: {CASES} cases with SLA"
TARGETS_MS = {"list": 50, "deep page": 50, "search": 150, "analytics": 500}


def _admin(sql: str, *args: object) -> list[tuple]:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        cur = conn.execute(sql, args or None)
        return cur.fetchall() if cur.description else []


def _template_complete() -> bool:
    if not _admin("SELECT 1 FROM pg_database WHERE datname = %s", TEMPLATE):
        return False
    with psycopg.connect(f"{PG}/{TEMPLATE}") as conn:
        row = conn.execute("SELECT 1 FROM crm_heartbeat WHERE name = %s", [MARKER[:50]]).fetchone()
    return row is not None


def build_data() -> None:
    """Create the template database with the demo population and CASES generated cases."""
    if _template_complete():
        print(f"{TEMPLATE} is complete; reusing it.")
        return
    _admin(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
    _admin(f'CREATE DATABASE "{TEMPLATE}"')
    env = bench_env(TEMPLATE)
    started = time.monotonic()
    manage(env, "migrate", "--noinput", "--verbosity=0")
    manage(env, "seed_demo")
    manage(env, "seed_demo", "--cases", str(CASES))
    manage(
        env,
        "shell",
        "-c",
        f"from crm.services import heartbeat_record; heartbeat_record(name={MARKER[:50]!r})",
    )
    print(f"Built {TEMPLATE} with {CASES} cases in {time.monotonic() - started:.0f} s.")


def _scratch_copy() -> None:
    _admin(f'DROP DATABASE IF EXISTS "{SCRATCH}"')
    _admin(f'CREATE DATABASE "{SCRATCH}" TEMPLATE "{TEMPLATE}"')


def _get(url: str, key: str) -> dict:
    return json.loads(timed_get(url, {"Authorization": f"Token {key}"})[2])


def _measure(urls: list[str], key: str) -> dict[str, float]:
    return measure(urls, {"Authorization": f"Token {key}"}, SAMPLES)


SETUP = """
from crm.models import Team, User
from crm import services
from cases.models import Case
team = Team.objects.get(name="Support")
agent = team.memberships.filter(is_lead=False).first().user
key = services.api_token_create(user=agent, name="bench")[1]
visible = Case.objects.filter(team=team).count()
case = Case.objects.filter(team=team).order_by("-updated_at").first()
import json
print(json.dumps({"key": key, "team": team.pk, "visible": visible, "case": case.pk}))
"""


def run() -> None:
    build_data()
    _scratch_copy()
    env = bench_env(SCRATCH)
    info = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
    key, base = info["key"], f"http://127.0.0.1:{PORT}/api/v1"
    server = start_uvicorn(env, PORT, os.cpu_count() or 1)
    try:
        query = urllib.parse.urlencode(
            {"team": info["team"], "ordering": "-updated_at", "page_size": 50}
        )
        list_url = f"{base}/cases?{query}&status=new&status=in_progress"
        deep = f"{base}/cases?{query}"
        for _ in range(DEEP_PAGES):
            deep = _get(deep, key)["next"]
        rows = {
            "list": _measure([list_url], key),
            "deep page": _measure([deep], key),
            "detail + timeline": _measure(
                [f"{base}/cases/{info['case']}", f"{base}/cases/{info['case']}/timeline"], key
            ),
            "search": _measure(
                [f"{base}/cases/search?q={urllib.parse.quote('invoice wrong totals')}"], key
            ),
        }
        for name in ("dashboard", "trends", "performance", "reports"):
            url = f"{base.removesuffix('/api/v1')}/api/v1/analytics/{name}"
            try:
                rows[f"analytics {name}"] = _measure([url], key)
            except urllib.error.HTTPError as error:
                rows[f"analytics {name}"] = {"error": error.code}
    finally:
        server.terminate()
        server.wait(timeout=30)
    _report(rows, info)


def _report(rows: dict[str, dict], info: dict) -> None:
    lines = []
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | HTTP {r['error']} | | | | |")
            continue
        target = TARGETS_MS.get(name) or (500 if name.startswith("analytics") else None)
        verdict = (
            "—"
            if target is None
            else ("met" if r["p95"] <= target else f"missed by {r['p95'] - target:.0f} ms")
        )
        figures = " | ".join(f"{r[k]:.1f}" for k in ("p50", "p95", "server_p50", "server_p95"))
        lines.append(f"| {name} | {figures} | {target or '—'} ms: {verdict} |")
    write_section(
        "cases_api",
        f"""## Case API at {CASES:,} cases

PostgreSQL database with {CASES:,} generated cases and their timelines (`make bench-data`),
queried by an agent of one team ({info["visible"]:,} cases visible to them) through uvicorn
with production settings. One request at a time, {SAMPLES} samples after a warm-up; the list
is filtered by team and status (new, in progress) and ordered by last update, 50 per page;
the deep page is page {DEEP_PAGES + 1} (10,000 cases in) of the team's cases in the same order
without the status filter; "detail + timeline" is two requests. Statuses follow a case's age
(docs/decisions.md), so the open backlog is a few percent of all cases.

| request | p50 ms | p95 ms | server p50 ms | server p95 ms | target (p95) |
|---|---:|---:|---:|---:|---|
{chr(10).join(lines)}""",
    )
    print("\n".join(lines))


if __name__ == "__main__":
    run()
