"""The agent UI's pages at a million cases: server time per page, p50 and p95.

Uses the million-case database of `bench.cases_api` (`make bench-data`, copied to a scratch
database per run) and uvicorn with production settings. An agent of the biggest team signs in
(a real session in the configured session store); each page is requested one at a time,
SAMPLES times after a warm-up, and the figure is the server's own `Server-Timing` (the time
Django spent, which is what the target is about) next to what the client saw.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import time
import urllib.parse
import urllib.request

from bench.cases_api import _scratch_copy, build_data
from bench.common import (
    ROOT,
    VENV_BIN,
    bench_env,
    manage,
    measure,
    start_uvicorn,
    timed_get,
    write_section,
)

PORT = 8973
SAMPLES = 40
BROWSER_SAMPLES = 15
BROWSER_TARGET_MS = 1000
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
lead_client = Client()
lead_client.force_login(team.memberships.filter(is_lead=True).first().user)
case = Case.objects.filter(team=team).order_by("-updated_at").first()
customer = Customer.objects.filter(cases__team=team).order_by("-pk").first()
name = settings.SESSION_COOKIE_NAME
print(json.dumps({
    "cookie": f"{name}={client.cookies[name].value}",
    "lead_cookie": f"{name}={lead_client.cookies[name].value}",
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
        analytics = _analytics_pages(base, cookie, info["lead_cookie"])
        first_views = _first_views(env, analytics)
        rows.update(_measure_pages(analytics, "quiet"))
        with _changing_cases(env):
            rows.update(_measure_pages(analytics, f"{CHANGES_PER_SECOND} changes/s"))
        loads = _browser_loads(base, cookie, {n: u for n, u in pages.items() if "lazy" not in n})
        for who in (cookie, info["lead_cookie"]):
            mine = {name: url for name, (url, viewer) in analytics.items() if viewer == who}
            loads.update(_browser_loads(base, who, mine))
    finally:
        server.terminate()
        server.wait(timeout=30)
    _report(rows, info, first_views)
    _report_loads(loads)


def _analytics_pages(base: str, agent: str, lead: str) -> dict[str, tuple[str, str]]:
    """The pages that show cached aggregates, with the session each is measured with."""
    reports = f"{base}/reports/"
    return {
        "dashboard (agent)": (f"{base}/dashboard/", agent),
        "dashboard (lead)": (f"{base}/dashboard/", lead),
        "report: SLA compliance, 30 days (lead)": (f"{reports}?report=sla", lead),
        "report: times, 30 days (lead)": (f"{reports}?report=times", lead),
        "report: volume by organization, 90 days (lead)": (
            f"{reports}?report=volume&period=90d&group_by=organization",
            lead,
        ),
        "report: agents, 30 days (lead)": (f"{reports}?report=agents", lead),
    }


def _measure_pages(pages: dict[str, tuple[str, str]], label: str) -> dict[str, dict]:
    rows = {}
    for name, (url, cookie) in pages.items():
        rows[f"{name}, {label}"] = measure([url], {"Cookie": cookie}, SAMPLES)
    return rows


def _first_views(env: dict[str, str], pages: dict[str, tuple[str, str]]) -> dict[str, float]:
    """Server time of each analytics page's first view with no cached figure at all (the
    cache's analytics entries dropped first): what a page costs when it must wait."""
    import redis

    client = redis.Redis.from_url(env["REDIS_URL"])
    figures = {}
    for name, (url, cookie) in pages.items():
        for key in client.scan_iter("*analytics:v:*"):
            client.delete(key)
        figures[name] = timed_get(url, {"Cookie": cookie})[1]
    return figures


CHANGES_PER_SECOND = 2
CHANGER = """
import random, time
from cases import services
from cases.models import Case
from crm.models import Team
team = Team.objects.get(name="Support")
lead = team.memberships.filter(is_lead=True).first().user
open_cases = Case.objects.filter(team=team, resolved_at__isnull=True)
ids = list(open_cases.values_list("pk", flat=True)[:5000])
rng = random.Random(3)
while True:
    case = Case.objects.get(pk=rng.choice(ids))
    services.case_update(actor=lead, case=case, priority=rng.choice(["low", "normal", "high"]))
    time.sleep(PAUSE)
"""


@contextlib.contextmanager
def _changing_cases(env: dict[str, str]):
    """Another process changes a random open case of the team CHANGES_PER_SECOND times a
    second through the services (as agents at work would), moving the change numbers of
    every analytics page measured meanwhile."""
    code = CHANGER.replace("PAUSE", str(1 / CHANGES_PER_SECOND))
    process = subprocess.Popen(
        [str(VENV_BIN / "python"), "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def _browser_loads(base: str, cookie: str, pages: dict[str, str]) -> dict[str, dict]:
    """Each page loaded in Debian's Chromium, BROWSER_SAMPLES times after a warm-up: the
    time from navigation start to the load event (HTML, styles, scripts, charts drawn by
    deferred scripts), as the Navigation Timing API reports it. Static files come from the
    browser's cache after the first load, as they do for an agent at work."""
    from playwright.sync_api import sync_playwright

    name, value = cookie.split("=", 1)
    figures = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
        )
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        context.add_cookies([{"name": name, "value": value, "url": base}])
        page = context.new_page()
        for label, url in pages.items():
            page.goto(url, wait_until="load")
            samples = []
            for _ in range(BROWSER_SAMPLES):
                page.goto(url, wait_until="load")
                samples.append(
                    page.evaluate(
                        "() => performance.getEntriesByType('navigation')[0].loadEventEnd"
                    )
                )
            figures[label] = {
                "p50": statistics.median(samples),
                "p95": statistics.quantiles(samples, n=20)[18],
            }
        browser.close()
    return figures


def _report_loads(loads: dict[str, dict]) -> None:
    lines = []
    for name, r in loads.items():
        verdict = (
            "met"
            if r["p95"] <= BROWSER_TARGET_MS
            else f"missed by {r['p95'] - BROWSER_TARGET_MS:.0f} ms"
        )
        lines.append(f"| {name} | {r['p50']:.0f} | {r['p95']:.0f} | {verdict} |")
    write_section(
        "web_pages_browser",
        f"""## Agent UI pages at 1,000,000 cases, loaded in a browser

The same pages and server as above, loaded by Debian's Chromium (headless, Playwright)
{BROWSER_SAMPLES} times each after a warm-up: navigation start to the end of the load event
(Navigation Timing), which includes the HTML, styles, deferred scripts and the charts they draw.
Target: ≤ {BROWSER_TARGET_MS} ms.

| page | p50 ms | p95 ms | target |
|---|---:|---:|---|
{chr(10).join(lines)}""",
    )
    print("\n".join(lines))


def _verdict(ms: float) -> str:
    return "met" if ms <= TARGET_MS else f"missed by {ms - TARGET_MS:.0f} ms"


def _report(rows: dict[str, dict], info: dict, first_views: dict[str, float]) -> None:
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
    first = "\n".join(f"| {name} | {ms:.0f} | {_verdict(ms)} |" for name, ms in first_views.items())
    write_section(
        "web_pages",
        f"""## Agent UI pages at 1,000,000 cases

The million-case database (`make bench-data`), uvicorn with production settings, an agent of
the team "Support" ({info["visible"]:,} cases visible) signed in with a real session. Each page
{SAMPLES} times, one request at a time, after a warm-up. Target: server time p95 ≤ {TARGET_MS} ms.
The queue's view and result counts load after the page (htmx), so they are measured apart.
The dashboard and reports are measured for the agent and for the team's lead (reports are for
leads), once on a quiet system and once while another process changes
{CHANGES_PER_SECOND} open cases of the team per second through the services, so that their
cached figures' change numbers keep moving (`cases.analytics_cache`: the page is answered
with the figure it had while a background thread recomputes it).

| page | server p50 ms | server p95 ms | client p50 ms | client p95 ms | target |
|---|---:|---:|---:|---:|---|
{chr(10).join(lines)}

The first view of each analytics page with no cached figure at all (its entries dropped
first) has to wait for the aggregates: one sample each, server time.

| page | first view, server ms | target |
|---|---:|---|
{first}""",
    )
    print("\n".join(lines))


if __name__ == "__main__":
    run()
