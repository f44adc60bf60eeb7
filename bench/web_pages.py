"""The agent UI's pages at a million cases: server time per page, p50 and p95.

Uses the million-case database of `bench.cases_api` (`make bench-data`, copied to a scratch
database per run) and uvicorn with production settings. An agent of the biggest team signs in
(a real session in the configured session store); each page is requested one at a time,
SAMPLES times after a warm-up, and the figure is the server's own `Server-Timing` (the time
Django spent, which is what the target is about) next to what the client saw.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request

from bench.cases_api import _scratch_copy, build_data
from bench.common import bench_env, manage, measure, start_uvicorn, timed_get, write_section

PORT = 8973
SAMPLES = 40
DEEP_PAGES = 20
TARGET_MS = 200
SEARCH = "invoice wrong totals"

SETUP = """
import json
from django.conf import settings
from django.test import Client
from cases.models import Case, Customer, Task
from crm.models import Team
team = Team.objects.get(name="Support")
agent = team.memberships.filter(is_lead=False).first().user
client = Client()
client.force_login(agent)
case = Case.objects.filter(team=team).order_by("-updated_at").first()
customer = Customer.objects.filter(cases__team=team).order_by("-pk").first()
name = settings.SESSION_COOKIE_NAME
print(json.dumps({
    "cookie": f"{name}={client.cookies[name].value}",
    "case": case.number, "customer": customer.pk, "team": team.pk,
    "visible": Case.objects.filter(team=team).count(),
}))
"""


def _deep_page(base: str, cookie: str) -> str:
    """The URL of page DEEP_PAGES + 1 of the team's queue, reached by following Next."""
    url = f"{base}/cases/?view=team&is_open="
    for _ in range(DEEP_PAGES):
        body = timed_get(url, {"Cookie": cookie})[2].decode()
        link = body.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0]
        url = f"{base}/cases/" + link.replace("&amp;", "&")
    return url


def run() -> None:
    build_data()
    _scratch_copy()
    env = bench_env("crm_bench_1m_run")
    manage(env, "migrate", "--noinput", "--verbosity=0")  # the template may predate some
    manage(env, "collectstatic", "--noinput", "--verbosity=0")  # manifest storage
    info = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
    base, cookie = f"http://127.0.0.1:{PORT}", info["cookie"]
    server = start_uvicorn(env, PORT, os.cpu_count() or 1)
    try:
        pages = {
            "queue: mine (open)": f"{base}/cases/",
            "queue: my teams, open, by update": f"{base}/cases/?view=team",
            "queue: my teams, all, by priority": f"{base}/cases/?view=team&is_open=&sort=priority",
            f"queue: page {DEEP_PAGES + 1} of my teams' cases": _deep_page(base, cookie),
            "queue: search, by update": f"{base}/cases/?q={urllib.parse.quote(SEARCH)}",
            "queue: search, best match": f"{base}/cases/?q={urllib.parse.quote(SEARCH)}"
            "&sort=relevance",
            "queue: counts (lazy)": f"{base}/cases/counts",
            "queue: result count (lazy)": f"{base}/cases/count?view=team&is_open=",
            "case workspace": f"{base}/cases/{info['case']}/",
            "customers": f"{base}/customers/",
            "customer": f"{base}/customers/{info['customer']}/",
            "organizations": f"{base}/organizations/",
            "tasks": f"{base}/tasks/",
        }
        rows = {}
        for name, url in pages.items():
            try:
                rows[name] = measure([url], {"Cookie": cookie}, SAMPLES)
            except urllib.error.HTTPError as error:
                rows[name] = {"error": error.code}
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
        verdict = (
            "met"
            if r["server_p95"] <= TARGET_MS
            else f"missed by {r['server_p95'] - TARGET_MS:.0f} ms"
        )
        figures = " | ".join(f"{r[k]:.1f}" for k in ("server_p50", "server_p95", "p50", "p95"))
        lines.append(f"| {name} | {figures} | {verdict} |")
    write_section(
        "web_pages",
        f"""## Agent UI pages at 1,000,000 cases

The million-case database (`make bench-data`), uvicorn with production settings, an agent of
the team "Support" ({info["visible"]:,} cases visible) signed in with a real session. Each page
{SAMPLES} times, one request at a time, after a warm-up. Target: server time p95 ≤ {TARGET_MS} ms.
The queue's view and result counts load after the page (htmx), so they are measured apart.

| page | server p50 ms | server p95 ms | client p50 ms | client p95 ms | target |
|---|---:|---:|---:|---:|---|
{chr(10).join(lines)}""",
    )
    print("\n".join(lines))


if __name__ == "__main__":
    run()
