"""`make screenshots`: PNGs of the agent UI's main pages, from the demo data, into docs/.

A scratch PostgreSQL database gets the demo data (`seed_demo`) and a local mailbox that
receives two customer mails through the same path the SMTP listener uses (spool, delivery,
intake), so the workspace shows a real conversation. uvicorn serves it with production
settings; Playwright drives Debian's Chromium at 1440×900.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PG, ROOT, bench_env, manage, start_uvicorn  # noqa: E402

DATABASE = "crm_screenshots"
PORT = 8974
OUT = ROOT / "docs" / "screenshots"

MAILS = [
    (
        "ada@lovelace.example",
        "Invoice 2026-114 charges VAT twice",
        "<p>Hello,</p><p>our invoice <b>2026-114</b> charges VAT twice. Could you send a "
        "corrected one?</p><p>Best regards,<br>Ada</p>"
        '<img src="https://tracker.example/pixel.gif" alt="">',
    ),
    (
        "grace@hopper.example",
        "Cannot sign in after the update",
        "<p>Since this morning's update none of our team can sign in.</p>"
        "<blockquote>On Monday you wrote: the update will be seamless.</blockquote>",
    ),
]

SETUP = """
import json
from email.message import EmailMessage
from django.conf import settings
from django.test import Client
from crm.models import User
from mailsync.services.inbound import inbound_receive
from mailsync.services.local import inbound_deliver
mails = json.loads(MAILS)
for sender, subject, html in mails:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, "help@example.com", subject
    mail.set_content("(HTML mail)")
    mail.add_alternative(html, subtype="html")
    inbound = inbound_receive(raw=bytes(mail), mail_from=sender, rcpt_tos=["help@example.com"])
    inbound_deliver(inbound_id=inbound.pk)
client = Client()
from django.db.models import Count
# A team lead, so the reports show too; the one with the most tasks, so every page is full.
agent = (
    User.objects.filter(memberships__is_lead=True)
    .annotate(n=Count("assigned_tasks")).order_by("-n", "pk").first()
)
client.force_login(agent)
name = settings.SESSION_COOKIE_NAME
print(json.dumps({"cookie": client.cookies[name].value, "name": name}))
"""


SLA_CLOCK = "from cases.services.sla import sla_recompute_all, sla_tick; " \
    "sla_recompute_all(); sla_tick()"  # fmt: skip
# The cache is the benchmarks' Redis database: figures cached from an earlier run's database
# must not show up in this one.
CLEAR_CACHE = "from django.core.cache import cache; cache.clear()"


def _fresh_database() -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')


def _latest_mailed_case(env: dict[str, str]) -> str:
    output = manage(
        env,
        "shell",
        "-c",
        "from cases.models import CaseMessage; "
        "print(CaseMessage.objects.filter(case__isnull=False).latest('pk').case.number)",
    )
    return output.strip().splitlines()[-1]


def main() -> None:
    from playwright.sync_api import sync_playwright

    _fresh_database()
    env = bench_env(DATABASE)
    manage(env, "migrate", "--noinput", "--verbosity=0")
    manage(env, "shell", "-c", CLEAR_CACHE)
    manage(env, "collectstatic", "--noinput", "--verbosity=0")  # manifest storage
    manage(env, "seed_demo")
    manage(env, "connect_mailbox", "help@example.com", "--team", "Support", "--local")
    setup = SETUP.replace("json.loads(MAILS)", f"json.loads({json.dumps(json.dumps(MAILS))})")
    session = json.loads(manage(env, "shell", "-c", setup).strip().splitlines()[-1])
    manage(env, "intake_messages")
    # What the worker does after seeding: open cases get their deadlines, the tick their states.
    manage(env, "shell", "-c", SLA_CLOCK)
    number = _latest_mailed_case(env)
    server = start_uvicorn(env, PORT, 1)
    base = f"http://127.0.0.1:{PORT}"
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                headless=True,
                args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
            )
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            context.add_cookies(
                [{"name": session["name"], "value": session["cookie"], "url": base}]
            )
            page = context.new_page()
            shots = {
                "dashboard": "/dashboard/",
                "queue": "/cases/?view=team",
                "search": "/cases/?q=invoice",
                "workspace": f"/cases/{number}/",
                "customers": "/customers/",
                "tasks": "/tasks/",
                "board": "/tasks/board",
                "organizations": "/organizations/",
                "reports": "/reports/?report=volume&group_by=channel",
                "profile": "/profile/",
            }
            for name, path in shots.items():
                page.goto(base + path)
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=False)
                print(f"docs/screenshots/{name}.png")
            page.goto(base + "/cases/?view=team")
            page.locator("h1").click()
            page.keyboard.press("?")
            page.screenshot(path=str(OUT / "shortcuts.png"))
            print("docs/screenshots/shortcuts.png")
            phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone.add_cookies([{"name": session["name"], "value": session["cookie"], "url": base}])
            small = phone.new_page()
            for name, path in {"phone-queue": "/cases/", "phone-case": f"/cases/{number}/"}.items():
                small.goto(base + path)
                small.wait_for_load_state("networkidle")
                small.screenshot(path=str(OUT / f"{name}.png"))
                print(f"docs/screenshots/{name}.png")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
