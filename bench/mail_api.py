"""The mail API at a million messages: first page, deep page, filtered, searched; cached and not.

`make bench-data` (or the first run) builds the database once as a template
(`crm_bench_mail_tpl`, marked complete only when the load finished): 3 teams, 5 shared and 16
personal mailboxes with realistic folders, and 1,000,000 messages written with COPY
(`crm.db.bulk_insert`; the search trigger runs for every row, as in production). Each run
copies it to a scratch database, so runs start from the same data.

Requests go one at a time over loopback to uvicorn (production settings, one worker per core)
as an agent of the Support team. "Uncached" samples each follow a change in the mailbox (its
change number moves, as any write does), so every one is a cache miss computed in full;
"cached" samples repeat a request whose page is in Redis. Each figure is the p50/p95 over the
samples, as the client saw it and as the server reported in `Server-Timing`.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import timedelta

import psycopg

from bench.common import PG, bench_env, manage, measure, start_uvicorn, timed_get, write_section

TEMPLATE = "crm_bench_mail_tpl"
SCRATCH = "crm_bench_mail_run"
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "1000000"))
PORT = 8973
SAMPLES = 60
DEEP_PAGES = int(os.environ.get("BENCH_DEEP_PAGES", "200"))
MARKER = f"bench-data complete: {MESSAGES} messages"[:50]
TARGET_CACHED_MS = 50
TARGET_SEARCH_MS = 150
SEARCH_WINDOW = 1000  # mailsync.selectors.SEARCH_WINDOW, read without importing Django
BATCH = 5000

# Shared mailboxes: (address, team, share of all messages). Personal mailboxes share the rest.
SHARED = [
    ("support@contoso.example", "Support", 0.40),
    ("help@contoso.example", "Support", 0.12),
    ("billing@contoso.example", "Billing", 0.18),
    ("invoices@contoso.example", "Billing", 0.08),
    ("sales@contoso.example", "Sales", 0.14),
]
AGENTS = {"Support": 8, "Billing": 4, "Sales": 4}
# Folders of every mailbox: (well-known role or "", display name, share of its messages).
FOLDERS = [
    ("inbox", "Inbox", 0.40),
    ("archive", "Archive", 0.28),
    ("sentitems", "Sent Items", 0.20),
    ("deleteditems", "Deleted Items", 0.06),
    ("", "Escalations", 0.04),
    ("junkemail", "Junk Email", 0.02),
]
FIRST_NAMES = [
    "Anna", "Bob", "Carla", "David", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemal",
    "Lena", "Mateo", "Nora", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tara", "Umar", "Vera",
    "Wen", "Xavier", "Yara", "Zoe", "Jürgen", "Chloé", "Søren", "Łukasz",
]  # fmt: skip
LAST_NAMES = [
    "Berg", "Jones", "Diaz", "Müller", "Rossi", "Nakamura", "Okafor", "Silva", "Novak", "Larsen",
    "Kowalski", "Dubois", "Schmidt", "Patel", "Haddad", "Ivanova", "García", "Andersson",
]  # fmt: skip
COMPANY_WORDS = [
    "nordwind", "blue", "river", "alpine", "delta", "summit", "harbor", "pixel", "granite",
    "orbit", "cedar", "lumen", "vertex", "atlas", "maple", "quartz", "nimbus", "falcon",
]  # fmt: skip
TOPICS = [
    "Invoice", "Login", "Password reset", "Export", "Report", "Dashboard", "Mobile app",
    "API token", "Webhook", "Calendar sync", "Mailbox", "SSO", "Payment", "Refund",
    "Subscription", "Data import", "Printer", "VPN", "Licence", "Permissions", "Order",
    "Delivery", "Contract", "Renewal", "Upgrade", "Training", "Onboarding", "Backup",
]  # fmt: skip
PROBLEMS = [
    "fails with an error", "shows the wrong totals", "is very slow", "times out",
    "does not arrive", "was charged twice", "cannot be opened", "is missing after update",
    "asks for a second factor every time", "duplicates entries", "stopped syncing",
    "needs a change of owner", "question", "request for quote", "follow-up", "urgent",
]  # fmt: skip
SENTENCES = [
    "Since this morning several colleagues see the same thing.",
    "It worked last week; nothing changed on our side.",
    "Please advise before our month-end closing.",
    "Screenshot attached. Browser is up to date.",
    "This blocks our team; please treat it urgently.",
    "We would like to understand the cause, not only a workaround.",
    "Our order {order} has not been delivered yet.",
    "The invoice {invoice} lists two licences instead of one.",
    "Could you send us a refund for the duplicate payment of {amount} EUR?",
    "The export to Excel stops at row {rows} with a timeout.",
    "We need {seats} more seats for the new team in {city}.",
    "After the update to version {version} the dashboard stays empty.",
    "Our auditors ask for the report of {month}; where can we download it?",
    "The webhook to {host} answers 500 since {weekday}.",
    "Please change the billing address to our office in {city}.",
    "Thank you for the quick answer, that solved it.",
    "Can we schedule a call on {weekday} to go through the setup?",
    "The password reset email never arrives in our mailbox.",
    "Single sign-on with our identity provider rejects every user.",
    "The mobile app crashes when opening attachments larger than {size} MB.",
    "The shipment to our warehouse in {city} arrived with two damaged boxes.",
    "Our finance department needs a copy of the signed contract for {month}.",
    "The calendar invitations show the wrong time zone for colleagues in {city}.",
    "Could you extend our trial by another {seats} days while we evaluate?",
    "The CSV import rejects dates written as day/month/year.",
    "Two-factor codes arrive several minutes late on Android phones.",
    "We were billed for {seats} users although we cancelled {rows} licences last month.",
    "The search in the customer portal returns nothing for names with accents.",
    "Please add {host} to the list of allowed redirect addresses.",
    "Our printer in {city} jams whenever it prints from the app.",
]
# Sentences with no product vocabulary: most of any real message (greetings, context,
# courtesy), so that a product word is in a realistic share of messages, not in most.
GENERAL = [
    "Thanks in advance for your help.",
    "Let me know if you need anything else from us.",
    "I have copied my colleague who handles this on our side.",
    "We tried again this afternoon with the same result.",
    "Nothing has changed in our setup for several weeks.",
    "I am out of the office on {weekday}; please reply to the whole group.",
    "As discussed on the phone yesterday, here is the summary.",
    "Our manager would like an update by the end of the week.",
    "We appreciate the quick turnaround on the last issue.",
    "Could you confirm that you received this message?",
    "I will be travelling to {city} next week but can join a call.",
    "The team is small, so any delay affects everybody.",
    "We followed the steps from your last message exactly.",
    "It would help to know when we can expect a fix.",
    "Please find the details below.",
    "Happy to provide more information if needed.",
    "We have been customers for several years and are usually very happy.",
    "This is the third time we are writing about this.",
    "I hope this explains the situation well enough.",
    "Our IT department is also looking into it.",
    "We can give you remote access if that helps.",
    "The deadline for our project is {month}, so time matters.",
    "Sorry for the long message.",
    "Best wishes from the whole team in {city}.",
    "Have a nice weekend.",
    "Looking forward to hearing from you.",
    "We will test it again tomorrow morning.",
    "Is there a workaround we can use in the meantime?",
    "My colleague noticed it first during the {month} review.",
    "We are not sure whether this is related to the earlier problem.",
]
FOLDER_SHARES = {display: share for _, display, share in FOLDERS}
CITIES = ["Berlin", "Lisbon", "Oslo", "Madrid", "Kraków", "Lyon", "Osaka", "Toronto", "Zürich"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September"]


# --- the data ----------------------------------------------------------------------------------


def _admin(sql: str, *args: object) -> list[tuple]:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        cur = conn.execute(sql, args or None)
        return cur.fetchall() if cur.description else []


def _template_complete() -> bool:
    if not _admin("SELECT 1 FROM pg_database WHERE datname = %s", TEMPLATE):
        return False
    with psycopg.connect(f"{PG}/{TEMPLATE}") as conn:
        row = conn.execute("SELECT 1 FROM crm_heartbeat WHERE name = %s", [MARKER]).fetchone()
    return row is not None


def build_data() -> None:
    """Create the template database with the population and MESSAGES generated messages."""
    if _template_complete():
        print(f"{TEMPLATE} is complete; reusing it.")
        return
    _admin(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
    _admin(f'CREATE DATABASE "{TEMPLATE}"')
    env = bench_env(TEMPLATE)
    started = time.monotonic()
    manage(env, "migrate", "--noinput", "--verbosity=0")
    print(manage(env, "shell", "-c", f"from bench.mail_api import load; load({MESSAGES})"))
    manage(
        env,
        "shell",
        "-c",
        f"from crm.services import heartbeat_record; heartbeat_record(name={MARKER!r})",
    )
    print(f"Built {TEMPLATE} with {MESSAGES} messages in {time.monotonic() - started:.0f} s.")


def load(count: int, seed: int = 20261124) -> None:
    """Teams, agents, mailboxes with folders, and `count` messages (runs inside Django).

    Bypasses the services for speed, as `seed_demo --cases` does, but writes what they would:
    change numbers per mailbox container in order, the container's last number, lowercased
    addresses, bodies in HTML and text. Runs once, on an empty database.
    """
    from django.db import connection, transaction
    from django.utils import timezone

    from crm.db import bulk_insert
    from crm.models import ChangeContainer
    from mailsync.models import Message

    rng = random.Random(seed)
    mailboxes = _population(rng)
    customers = _customers(rng, 30_000)
    now = timezone.now()
    written, started = 0, time.monotonic()
    for mailbox, share in mailboxes:
        folders = list(mailbox.folders.order_by("pk"))
        shares = [FOLDER_SHARES[folder.display_name] for folder in folders]
        total = round(count * share) if mailbox is not mailboxes[-1][0] else count - written
        seq = 0
        for start in range(0, total, BATCH):
            size = min(BATCH, total - start)
            with transaction.atomic():
                batch = []
                for _ in range(size):
                    seq += 1
                    folder = rng.choices(folders, shares)[0]
                    batch.append(_message(rng, mailbox, folder, customers, now, seq))
                bulk_insert(Message, batch)
            written += size
        ChangeContainer.objects.filter(pk=mailbox.container_id).update(last_seq=seq)
        print(
            f"{mailbox.address}: {total} messages ({written} in {time.monotonic() - started:.0f} s)"
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def _population(rng: random.Random) -> list[tuple]:
    """Teams and agents; shared mailboxes and the agents' own (through the services), with
    their folders."""
    from crm import services as crm_services
    from crm.models import Team
    from mailsync import services
    from mailsync.models import MailFolder

    teams = {name: Team.objects.create(name=name) for name in AGENTS}
    personal_share = (1 - sum(share for _, _, share in SHARED)) / sum(AGENTS.values())
    owners = {address: (teams[team], None, share) for address, team, share in SHARED}
    for name, agents in AGENTS.items():
        for n in range(agents):
            email = f"{name.lower()}{n + 1}@contoso.example"
            agent, _ = crm_services.agent_upsert(
                email=email, password="bench-password-not-secret", team=teams[name],
                first_name=rng.choice(FIRST_NAMES), last_name=rng.choice(LAST_NAMES),
            )  # fmt: skip
            owners[f"{name.lower()}{n + 1}.own@contoso.example"] = (None, agent, personal_share)
    created = []
    for address, (team, owner, share) in owners.items():
        mailbox = services.mailbox_connect(
            address=address, team=team, owner=owner, display_name=address.split("@")[0].title()
        )
        MailFolder.objects.bulk_create(
            MailFolder(
                mailbox=mailbox,
                graph_id=f"folder-{mailbox.pk}-{display}",
                display_name=display,
                well_known=role,
                sync_enabled=role in ("inbox", "sentitems"),
            )  # fmt: skip
            for role, display, _ in FOLDERS
        )
        created.append((mailbox, share))
    return created


def _customers(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """(name, address) of customers at about a tenth as many companies; some companies and
    some people write far more often than others (drawn with a skew in `_message`)."""
    domains = [
        f"{rng.choice(COMPANY_WORDS)}-{rng.choice(COMPANY_WORDS)}{n}.example"
        for n in range(count // 10)
    ]
    people = []
    for n in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = f"{first}.{last}{n}".lower()
        people.append(
            (f"{first} {last}", f"{local}@{domains[int(len(domains) * rng.random() ** 2)]}")
        )
    return people


def _skewed(rng: random.Random, items: list) -> object:
    return items[int(len(items) * rng.random() ** 3)]


def _sentence(rng: random.Random) -> str:
    """A sentence: about one in four is about the product."""
    template = rng.choice(SENTENCES) if rng.random() < 0.25 else rng.choice(GENERAL)
    return template.format(
        order=f"PO-{rng.randrange(10_000, 99_999)}",
        invoice=f"INV-{rng.randrange(100_000, 999_999)}",
        amount=rng.randrange(20, 5000),
        rows=rng.randrange(1000, 100_000),
        seats=rng.randrange(2, 50),
        city=rng.choice(CITIES),
        version=f"{rng.randrange(3, 9)}.{rng.randrange(0, 20)}",
        month=rng.choice(MONTHS),
        host=f"hooks.{rng.choice(COMPANY_WORDS)}.example",
        weekday=rng.choice(WEEKDAYS),
        size=rng.randrange(5, 50),
    )


DISCLAIMER = (
    "This e-mail and any attachments are confidential and intended solely for the addressee. "
    "If you received it in error, please notify the sender and delete it. Any unauthorised "
    "use, disclosure or copying is prohibited."
)


def _body(rng: random.Random, greeting: str, writer: str) -> str:
    """A few paragraphs between a greeting and a signature; a third carry a disclaimer."""
    paragraphs = [
        " ".join(_sentence(rng) for _ in range(rng.randrange(1, 5)))
        for _ in range(rng.randrange(2, 6))
    ]
    signature = f"Kind regards,\n{writer}"
    if rng.random() < 0.3:
        signature += f"\n\n{DISCLAIMER}"
    return "\n\n".join([greeting, *paragraphs, signature])


def _message(rng, mailbox, folder, customers, now, seq):
    from mailsync.models import Message

    name, address = _skewed(rng, customers)
    outgoing = folder.well_known == "sentitems"
    age = timedelta(days=1095 * rng.random() ** 1.6, seconds=rng.randrange(86_400))
    received = now - age
    topic, problem = rng.choice(TOPICS), rng.choice(PROBLEMS)
    subject = f"{topic} {problem}"
    writer = "The Contoso support team" if outgoing else name
    text = _body(rng, f"Hello {'support team' if not outgoing else name.split()[0]},", writer)
    if rng.random() < 0.45:  # a reply, quoting what it answers (and maybe what that quoted)
        subject = f"RE: {subject}"
        for _ in range(rng.randrange(1, 3)):
            quoted = _body(rng, "Hello,", name if outgoing else "The Contoso support team")
            text += f"\n\nOn {rng.choice(WEEKDAYS)}, {writer} wrote:\n" + "\n".join(
                f"> {line}" for line in quoted.split("\n")
            )
    recent = age < timedelta(days=7)
    sender = (mailbox.address, mailbox.display_name) if outgoing else (address, name)
    recipient = {"name": name, "address": address} if outgoing else {
        "name": mailbox.display_name, "address": mailbox.address}  # fmt: skip
    cc = [{"name": "", "address": _skewed(rng, customers)[1]}] if rng.random() < 0.15 else []
    return Message(
        mailbox=mailbox,
        folder=folder,
        graph_id=f"AAMk{mailbox.pk:04d}{seq:09d}",
        internet_message_id=f"<{mailbox.pk}.{seq}@mail.example>",
        conversation_id=f"conv-{mailbox.pk}-{seq // rng.randrange(1, 4)}",
        subject=subject,
        from_name=sender[1],
        from_address=sender[0],
        sender_address=sender[0],
        to=[recipient],
        cc=cc,
        preview=text[:255].replace("\n", " "),
        body_html="".join(f"<p>{p}</p>" for p in text.split("\n\n")),
        body_text=text,
        headers_fetched=True,
        sent_at=received - timedelta(seconds=rng.randrange(5, 600)),
        received_at=received,
        importance="high" if rng.random() < 0.05 else "normal",
        is_read=outgoing or rng.random() < (0.55 if recent else 0.97),
        flag_status="flagged" if rng.random() < 0.02 else "notFlagged",
        has_attachments=rng.random() < 0.15,
        change_container_id=mailbox.container_id,
        change_seq=seq,
        sync_mark=1,
    )


# --- the run -----------------------------------------------------------------------------------

SETUP = """
import json, re
from datetime import timedelta
from django.db import connection
from django.db.models import Count
from django.utils import timezone
from crm import services
from crm.models import User
from mailsync.models import Mailbox, Message
agent = User.objects.get(email="support1@contoso.example")  # sees support@, help@ and own
key = services.api_token_create(user=agent, name="bench")[1]
support = Mailbox.objects.get(address="support@contoso.example")
visible = list(Mailbox.objects.filter(team__name="Support").values_list("pk", flat=True)) + [
    Mailbox.objects.get(owner=agent).pk]
inbox = Message.objects.filter(mailbox=support, folder__well_known="inbox")
order = re.search(r"PO-[0-9]+", inbox.filter(body_text__contains="PO-").order_by()
                  .values_list("body_text", flat=True)[0]).group(0)
searches = {name: query.replace("ORDER", order) for name, query in SEARCHES.items()}
counts = {"visible": Message.objects.filter(mailbox_id__in=visible).count(),
          "inbox": inbox.count()}
with connection.cursor() as cursor:
    for query in searches.values():
        cursor.execute(
            "SELECT count(*) FROM mailsync_message WHERE mailbox_id = ANY(%s) AND "
            "search_vector @@ websearch_to_tsquery('english', %s)", [visible, query])
        counts[query] = cursor.fetchone()[0]
senders = inbox.values("from_address").annotate(n=Count("pk"))
top = senders.order_by("-n").first()["from_address"]
rare = senders.filter(n=2).order_by("from_address").first()["from_address"]
since = (timezone.now() - timedelta(days=90)).date().isoformat()
print(json.dumps({"key": key, "container": support.container_id, "counts": counts,
                  "searches": searches, "domain": top.split("@")[1], "rare": rare,
                  "since": since}))
"""
# Searches over everything the agent sees, from broad to precise ("ORDER": an order number
# found in the data).
SEARCHES = {
    "a common word: 'refund'": "refund",
    "three words: 'refund twice payment'": "refund twice payment",
    "an order number": "ORDER",
    "a phrase, excluding a word": '"duplicate payment" -invoice',
    "misspelled: 'pasword reset'": "pasword reset",
}


def _scratch_copy() -> None:
    _admin(f'DROP DATABASE IF EXISTS "{SCRATCH}"')
    _admin(f'CREATE DATABASE "{SCRATCH}" TEMPLATE "{TEMPLATE}"')


def _stats(client: list[float], server: list[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(client),
        "p95": statistics.quantiles(client, n=20)[18],
        "server_p50": statistics.median(server),
        "server_p95": statistics.quantiles(server, n=20)[18],
    }


def _uncached(url: str, headers: dict[str, str], change: Callable[[], None]) -> dict[str, float]:
    """Every sample after a change in the mailbox: a cache miss, the page computed in full."""
    timed_get(url, headers)
    client, server = [], []
    for _ in range(SAMPLES):
        change()
        elapsed, reported, _ = timed_get(url, headers)
        client.append(elapsed)
        server.append(reported)
    return _stats(client, server)


def _scenarios(base: str, info: dict) -> Iterator[tuple[str, str, int | None]]:
    """(name, URL, target p95 ms for the uncached figure or None)."""
    inbox = f"{base}?mailbox=support@contoso.example&folder=inbox&pageSize=50"
    yield "first page (Inbox, 50)", inbox, None
    yield f"deep page (Inbox, page {DEEP_PAGES + 1})", info["deep"], None
    yield "all visible mailboxes, first page", f"{base}?pageSize=50", None
    filters = {
        "unread": "unread",
        "from the busiest customer's domain": f"from:@{info['domain']}",
        "from a sender with 2 messages": f"from:{info['rare']}",
        "attachments, last 90 days": f"hasAttachments,since:{info['since']}",
    }
    for name, expression in filters.items():
        yield f"filtered: {name}", f"{inbox}&filter={urllib.parse.quote(expression)}", None
    for name, query in info["searches"].items():
        url = f"{base}?pageSize=50&q={urllib.parse.quote(query)}"
        matches = info["counts"][query]
        yield f"searched, {name} ({matches:,} full-text matches)", url, TARGET_SEARCH_MS


def run() -> None:
    build_data()
    _scratch_copy()
    env = bench_env(SCRATCH)
    env["API_THROTTLE_USER"] = "100000000/min"
    manage(env, "migrate", "--noinput", "--verbosity=0")
    setup = f"SEARCHES = {SEARCHES!r}\n{SETUP}"
    info = json.loads(manage(env, "shell", "-c", setup).strip().splitlines()[-1])
    headers = {"Authorization": f"Token {info['key']}"}
    base = f"http://127.0.0.1:{PORT}/api/v1/mail/messages"
    workers = os.cpu_count() or 1
    server = start_uvicorn(env, PORT, workers)
    try:
        with psycopg.connect(f"{PG}/{SCRATCH}", autocommit=True) as conn:

            def change() -> None:
                conn.execute(
                    "UPDATE crm_changecontainer SET last_seq = last_seq + 1 WHERE id = %s",
                    [info["container"]],
                )

            inbox = f"{base}?mailbox=support@contoso.example&folder=inbox&pageSize=50"
            deep = inbox
            for _ in range(DEEP_PAGES):
                deep = (
                    f"{inbox}&pageToken={json.loads(timed_get(deep, headers)[2])['nextPageToken']}"
                )
            info["deep"] = deep
            rows = []
            for name, url, target in _scenarios(base, info):
                page = json.loads(timed_get(url, headers)[2])
                rows.append(
                    (name, len(page["messages"]), _uncached(url, headers, change),
                     measure([url], headers, SAMPLES), target)
                )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    _report(rows, info, workers)


def _verdict(p95: float, target: int | None) -> str:
    if target is None:
        return "—"
    return f"{target} ms: met" if p95 <= target else f"{target} ms: missed by {p95 - target:.0f} ms"


WHY_MISSED = """Where the searched target is missed, and why: **a quoted phrase with an excluded
word** (`"duplicate payment" -invoice`). PostgreSQL underestimates how many rows a
phrase-and-negation query matches (about 8,000 estimated, 37,000 actual in the big mailbox),
so it takes the GIN bitmap and sorts by date instead of walking the date index, and a phrase
can only be confirmed by reading each candidate's vector (94,000 candidates). Searches run
with `work_mem` 64 MB (the bitmap no longer turns lossy: 608 ms became 458 ms), and the
misspelling fallback looks for 200 similar subjects instead of 1,000 (280 ms became 124 ms).
Not done: a two-step candidate search for phrases (the newest N by date first, the GIN match
only when they hold too few; walking the date index answers this query in about 75 ms but
would scan a whole mailbox for a rare phrase), or `btree_gin` to put the mailbox into the GIN
index. Cached, it answers in about 10 ms."""


def _report(rows: list[tuple], info: dict, workers: int) -> None:
    lines = []
    for name, found, uncached, cached, target in rows:
        figures = " | ".join(
            f"{uncached[k]:.1f}" for k in ("p50", "p95", "server_p50", "server_p95")
        )
        lines.append(
            f"| {name} | {found} | {figures} | {_verdict(uncached['p95'], target)} "
            f"| {cached['p50']:.1f} | {cached['p95']:.1f} "
            f"| {_verdict(cached['p95'], TARGET_CACHED_MS)} |"
        )
    counts = info["counts"]
    write_section(
        "mail_api",
        f"""## Mail API at {MESSAGES:,} messages

PostgreSQL database with {MESSAGES:,} generated messages in 21 mailboxes (5 shared, 16 an
agent's own; six folders each), written by `make bench-data` through COPY with the search
trigger firing per row. Requests as an agent of the Support team, who sees
{counts["visible"]:,} messages (two shared mailboxes and their own); the Support Inbox holds
{counts["inbox"]:,}. uvicorn with {workers} workers, production settings, Redis cache. One
request at a time, {SAMPLES} samples after a warm-up. **Uncached**: before every sample the
mailbox's change number moves (as any change in it does), so every sample misses the cache and
is computed in full. **Cached**: the same request again, answered from Redis. The deep page
is page {DEEP_PAGES + 1} ({DEEP_PAGES * 50:,} messages in). Searches run over every mailbox
the agent sees and rank the {SEARCH_WINDOW:,} newest matches (`mailsync.selectors`); the
number of messages each search matches in full is in its name (the misspelled one matches
nothing in full text and falls back to similar subjects).

| request | rows | uncached p50 ms | p95 ms | server p50 | server p95 | target (p95) \
| cached p50 ms | cached p95 ms | target ≤ {TARGET_CACHED_MS} ms |
|---|---:|---:|---:|---:|---:|---|---:|---:|---|
{chr(10).join(lines)}

{WHY_MISSED}""",
    )
    print("\n".join(lines))


if __name__ == "__main__":
    run()
