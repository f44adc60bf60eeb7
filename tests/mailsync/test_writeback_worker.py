"""Write-back with real Celery workers: the outbox reaches Microsoft 365 in order and exactly
once through a storm of 429s, and survives a worker that is killed in the middle of it.

test_writeback.py calls `operations_apply` directly. Here the tasks travel through Redis to a
real worker (a thread of this process, or a `celery worker` subprocess that is SIGKILLed), the
simulated Graph answers over HTTPS, and rows are committed for real (`transaction=True`), so
the worker sees the outbox exactly as a production worker would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import zip_longest
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection, connections
from django.utils.timezone import now

from crm.celery import app
from crm.graph.limits import slots_in_use
from crm.models import ChangeContainer, Tombstone
from crm.models import User as Agent
from graphsim.faults import Fault
from graphsim.mail import Mailbox as RemoteMailbox
from mailsync import services, tasks
from mailsync.choices import OperationKind, OperationStatus
from mailsync.models import Mailbox, MailFolder, MailOperation, Message
from tests.cases.factories import make_agent
from tests.mailsync.conftest import ADDRESS, graph_message

pytestmark = pytest.mark.django_db(transaction=True)

# A step an agent takes on a message: ("read", True), ("flag", "flagged"),
# ("categories", [...]), ("move", "archive") or ("delete", None).
Step = tuple[str, Any]
# What a message looks like, in the CRM or in Microsoft 365: (is read, flag status,
# categories, well-known name of its folder); GONE when it was deleted for good.
State = tuple[bool, str, list[str], str]
GONE = None

# How each kind of operation shows in the simulator's write counters.
GRAPH_WRITE = {
    OperationKind.READ: "update",
    OperationKind.FLAG: "update",
    OperationKind.CATEGORIES: "update",
    OperationKind.MOVE: "move",
    OperationKind.DELETE: "delete",
}
THROTTLED: Fault = ("429", "0.1")  # Retry-After in decimal seconds, as Graph may send it
PASSES: Fault = ("ok", None)
# Settings a worker subprocess needs to reach the simulator as this process does.
WORKER_SETTINGS = (
    "MS_AUTHORITY_HOST", "GRAPH_API_URL", "MS_CA_BUNDLE", "MS_TENANT_ID", "MS_CLIENT_ID",
    "MS_CLIENT_SECRET", "GRAPH_RETRY_BASE_SECONDS", "GRAPH_RETRY_MAX_SECONDS",
    "GRAPH_MAX_RETRIES", "MAIL_OUTBOX_LEASE_SECONDS",
)  # fmt: skip


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def empty_queue():
    """The broker queue holds only what this test sends (the sync's intake tasks are dropped:
    intake is not what these tests are about, and a killed worker leaves tasks behind)."""
    app.control.purge()
    yield
    app.control.purge()


@pytest.fixture
def synced(mailbox, remote, empty_queue):
    """Ten customer messages in the shared mailbox's Inbox, synced to the CRM."""
    for n in range(10):
        remote.add_message("inbox", **graph_message(n))
    services.mailbox_sync(mailbox=mailbox)
    app.control.purge()
    return mailbox


def inbox_messages(mailbox: Mailbox) -> list[Message]:
    return list(mailbox.messages.order_by("received_at", "pk"))


def take_step(message_pk: int, step: Step, actor: Agent | None) -> None:
    """One agent action through the services, on the row as it is now (a delete decides
    between Deleted Items and for good from the message's current folder)."""
    message = Message.objects.select_related("mailbox").get(pk=message_pk)
    kind, value = step
    if kind == "read":
        services.message_set_read(message=message, read=value, actor=actor)
    elif kind == "flag":
        services.message_set_flag(message=message, status=value, actor=actor)
    elif kind == "categories":
        services.message_set_categories(message=message, categories=value, actor=actor)
    elif kind == "move":
        folder = MailFolder.objects.get(mailbox_id=message.mailbox_id, well_known=value)
        services.message_move(message=message, folder=folder, actor=actor)
    elif kind == "delete":
        services.message_delete(message=message, actor=actor)
    else:
        raise ValueError(f"unknown step {kind}")


def agent_works(actor: Agent, plan: dict[int, list[Step]]) -> None:
    """An agent working through their messages a step at a time, message after message (so
    their operations on different messages interleave), in a thread of their own."""
    try:
        rounds = zip_longest(*[[(pk, step) for step in steps] for pk, steps in plan.items()])
        for round_of_steps in rounds:
            for item in round_of_steps:
                if item is not None:
                    take_step(item[0], item[1], actor)
    finally:
        connections.close_all()


def crm_state(message_pk: int) -> State | None:
    message = Message.objects.select_related("folder").filter(pk=message_pk).first()
    if message is None:
        return GONE
    return (message.is_read, message.flag_status, message.categories, message.folder.well_known)


def remote_state(remote: RemoteMailbox, mailbox: Mailbox, graph_id: str) -> State | None:
    try:
        there = remote.messages[remote.resolve_message_id(graph_id)]
    except KeyError:
        return GONE
    folders = dict(mailbox.folders.values_list("graph_id", "well_known"))
    return (
        there.get("isRead", False),
        there.get("flag", {}).get("flagStatus", "notFlagged"),
        there.get("categories", []),
        folders[there["parentFolderId"]],
    )


def expected_writes() -> Counter[str]:
    """One Graph write per operation in the outbox: what 'each applied once' means."""
    kinds = MailOperation.objects.values_list("kind", flat=True)
    return Counter(GRAPH_WRITE[OperationKind(kind)] for kind in kinds)


def statuses() -> Counter[str]:
    return Counter(MailOperation.objects.values_list("status", flat=True))


def eventually(condition: Callable[[], bool], what: str, *, timeout: float = 30.0,
               log: Path | None = None) -> None:  # fmt: skip
    """Poll until `condition()` holds; on timeout fail with the worker's log, if any."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            pytest.fail(f"never happened: {what}; outbox {dict(statuses())}\n{tail}")
        time.sleep(0.05)


def outbox_done(count: int) -> Callable[[], bool]:
    """True once `count` operations are all done; fails at once if one was refused."""

    def check() -> bool:
        failed = MailOperation.objects.filter(status=OperationStatus.FAILED).first()
        assert failed is None, f"{failed}: {failed.last_error}"
        return statuses() == Counter({OperationStatus.DONE: count})

    return check


def assert_applied_in_order_per_message() -> None:
    """Each message's operations reached Graph in the order the agents made them."""
    by_message: dict[str, list] = {}
    for graph_id, applied_at in MailOperation.objects.order_by("pk").values_list(
        "graph_id", "applied_at"
    ):
        by_message.setdefault(graph_id, []).append(applied_at)
    for graph_id, moments in by_message.items():
        assert moments == sorted(moments), f"operations on {graph_id} applied out of order"


# --- 1. a storm of 429s ---------------------------------------------------------------------------

# Per message (by position in the Inbox): the steps agents take, and where it ends.
STORM_PLAN: list[tuple[list[Step], State | None]] = [
    ([("read", True), ("read", False)], (False, "notFlagged", [], "inbox")),
    ([("flag", "flagged"), ("flag", "complete")], (False, "complete", [], "inbox")),
    (
        [("categories", ["Billing"]), ("categories", ["Billing", "VIP"]), ("categories", [])],
        (False, "notFlagged", [], "inbox"),
    ),
    ([("move", "archive"), ("move", "inbox")], (False, "notFlagged", [], "inbox")),
    (
        [("read", True), ("move", "archive"), ("flag", "flagged")],
        (True, "flagged", [], "archive"),
    ),
    ([("delete", None)], (False, "notFlagged", [], "deleteditems")),
    ([("delete", None), ("delete", None)], GONE),
    ([("categories", ["VIP"]), ("read", True)], (True, "notFlagged", ["VIP"], "inbox")),
    (
        [("flag", "flagged"), ("read", True), ("move", "archive"), ("delete", None)],
        (True, "flagged", [], "deleteditems"),
    ),
    ([], (False, "notFlagged", [], "inbox")),  # nobody touches it
]
STORM_OPERATIONS = 21  # the steps above that change something: one operation each
# Three 429s in a row outlast the client's retries (GRAPH_MAX_RETRIES = 2 below), so the task
# itself retries; after that half of the writes are throttled, never more than twice running.
STORM: list[Fault] = [THROTTLED] * 3 + [THROTTLED, PASSES, PASSES, THROTTLED, THROTTLED, PASSES] * 5
STORM_THROTTLED = STORM.count(THROTTLED)


@pytest.fixture
def in_thread_worker():
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield


def test_write_back_through_a_429_storm_by_a_real_worker(
    synced, graph, remote, team, settings, in_thread_worker
):
    # Given three agents at work on ten messages while Graph throttles half of the writes
    settings.GRAPH_MAX_RETRIES = 2
    assert STORM.count(PASSES) < STORM_OPERATIONS  # the storm is over before the outbox is
    graph.script_faults(*STORM)
    requests_before = graph.graph_requests  # the sync's
    messages = inbox_messages(synced)
    agents = [make_agent(team=team) for _ in range(3)]
    plans = [
        {messages[i].pk: STORM_PLAN[i][0] for i in range(a, len(STORM_PLAN), len(agents))}
        for a in range(len(agents))
    ]

    # When they make their changes and the worker applies the outbox as they go
    with ThreadPoolExecutor(max_workers=len(agents)) as pool:
        for done in [pool.submit(agent_works, a, p) for a, p in zip(agents, plans, strict=True)]:
            done.result()
    assert MailOperation.objects.count() == STORM_OPERATIONS
    eventually(outbox_done(STORM_OPERATIONS), "every operation applied through the storm")

    # Then Microsoft 365 shows exactly what the CRM shows, each change applied once, in order
    for message, (_, expected) in zip(messages, STORM_PLAN, strict=True):
        assert crm_state(message.pk) == expected, message.subject
        assert remote_state(remote, synced, message.graph_id) == expected, message.subject
    assert graph.write_counts == expected_writes()  # no write twice (no second move)
    assert not graph.refused_writes
    # every 429 waited out and the write sent again; nothing else asked of Graph
    assert graph.graph_requests - requests_before == STORM_OPERATIONS + STORM_THROTTLED
    # the client waited out every 429 but the first run of three, which the task retried
    assert Counter(MailOperation.objects.values_list("attempts", flat=True)) == Counter(
        {1: STORM_OPERATIONS - 1, 2: 1}
    )
    assert_applied_in_order_per_message()

    # And the next delta round brings our own changes back without changing anything
    before = {m.pk: (m.change_seq, crm_state(m.pk)) for m in synced.messages.all()}
    last_seq = ChangeContainer.objects.get(pk=synced.container_id).last_seq
    tombstones = Tombstone.objects.count()

    result = services.mailbox_sync(mailbox=synced)

    assert not result.failed
    assert [(r.added, r.updated, r.removed) for r in result.rounds] == [(0, 0, 0)] * len(
        result.rounds
    )
    assert result.deleted == 0
    assert {m.pk: (m.change_seq, crm_state(m.pk)) for m in synced.messages.all()} == before
    assert ChangeContainer.objects.get(pk=synced.container_id).last_seq == last_seq
    assert Tombstone.objects.count() == tombstones


# --- 2. a worker killed mid-way -----------------------------------------------------------------

# Operations in the order agents made them: (message position, step). Messages 0, 1 and 3
# have operations on both sides of the crash.
CRASH_PLAN: list[tuple[int, Step]] = [
    (0, ("read", True)),
    (1, ("flag", "flagged")),
    (0, ("move", "archive")),
    (2, ("categories", ["Billing"])),
    (3, ("delete", None)),  # to Deleted Items
    (0, ("read", False)),  # <- the killed worker is waiting out a 429 on this one
    (2, ("categories", ["Billing", "Escalated"])),
    (3, ("delete", None)),  # for good
    (0, ("move", "inbox")),
    (1, ("flag", "complete")),
    (1, ("read", True)),
    (4, ("read", True)),
]
APPLIED_BEFORE_CRASH = 5
CRASH_EXPECTED: list[State | None] = [
    (False, "notFlagged", [], "inbox"),
    (True, "complete", [], "inbox"),
    (False, "notFlagged", ["Billing", "Escalated"], "inbox"),
    GONE,
    (True, "notFlagged", [], "inbox"),
    (False, "notFlagged", [], "inbox"),  # nobody touches it
]


def worker_env(settings, var_dir: Path) -> dict[str, str]:
    """The environment of a worker subprocess: this test's database (pytest-django's test_…
    copy), this run's Redis (inherited) and the simulator's MS_* settings."""
    database = connection.settings_dict
    return dict(
        os.environ,
        DATABASE_URL=(
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/"
            f"{database['NAME']}"
        ),
        CRM_VAR_DIR=str(var_dir),
        **{name: str(getattr(settings, name)) for name in WORKER_SETTINGS},
    )


@pytest.fixture
def worker_process(settings, tmp_path, project_root) -> Iterator[Callable]:
    """Starts `celery -A crm worker` subprocesses (by default `--pool solo`: one task at a time,
    so a kill lands where the test says); each is stopped, or was killed, by the end of the
    test. Yields `start(name, pool=, concurrency=) -> (process, log)`."""
    started: list[subprocess.Popen] = []

    def start(
        name: str, *, pool: str = "solo", concurrency: int = 1
    ) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"{name}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "crm", "worker", "--pool", pool,
                 "--concurrency", str(concurrency), "--loglevel", "INFO", "--without-gossip",
                 "--without-mingle",
                 "--without-heartbeat", "-n", f"{name}-{uuid.uuid4().hex[:8]}@%h"],
                cwd=project_root, env=worker_env(settings, tmp_path),
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        started.append(process)
        return process, log

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def test_the_outbox_survives_a_worker_killed_mid_way(
    synced, graph, remote, agent, settings, worker_process
):
    settings.MAIL_OUTBOX_LEASE_SECONDS = 3  # a crashed worker's hold runs out quickly
    # Given twelve changes committed while no worker runs; Graph takes five of them and then
    # throttles with a long Retry-After, which the worker sits out
    messages = inbox_messages(synced)
    graph.script_faults(*[PASSES] * APPLIED_BEFORE_CRASH, ("429", "60"))
    requests_before = graph.graph_requests  # the sync's
    for position, step in CRASH_PLAN:
        take_step(messages[position].pk, step, agent)
    assert statuses() == Counter({OperationStatus.PENDING: len(CRASH_PLAN)})

    # When a worker starts on them and is SIGKILLed while it waits out the 429 (its slot of
    # the mailbox's limiter released: nothing on the wire)
    first, first_log = worker_process("doomed")
    eventually(
        lambda: (
            graph.graph_requests - requests_before == APPLIED_BEFORE_CRASH + 1
            and statuses()[OperationStatus.DONE] == APPLIED_BEFORE_CRASH
            and slots_in_use(ADDRESS) == 0
        ),
        "the worker applied five operations and sat out the 429 on the sixth",
        log=first_log,
    )
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=10) == -signal.SIGKILL

    # Then what it applied is done, the rest waits, and Graph saw none of the rest
    done = MailOperation.objects.filter(status=OperationStatus.DONE)
    assert list(done.order_by("pk").values_list("pk", flat=True)) == list(
        MailOperation.objects.order_by("pk").values_list("pk", flat=True)[:APPLIED_BEFORE_CRASH]
    )
    assert graph.write_counts.total() == APPLIED_BEFORE_CRASH
    assert remote_state(remote, synced, messages[0].graph_id) == (
        True, "notFlagged", [], "archive",
    )  # fmt: skip

    # When its queued tasks are lost too, its hold on the outbox runs out, and beat's sweep
    # reaches a fresh worker
    app.control.purge()
    eventually(
        lambda: Mailbox.objects.filter(pk=synced.pk, outbox_lease_expires_at__lt=now()).exists(),
        "the killed worker's lease ran out",
        log=first_log,
    )
    _, second_log = worker_process("fresh")
    tasks.sweep_operations.delay()
    eventually(outbox_done(len(CRASH_PLAN)), "the sweep applied the rest", log=second_log)

    # Then every change reached Graph exactly once, in the order made, and both sides agree
    assert graph.write_counts == expected_writes()
    assert not graph.refused_writes
    assert list(MailOperation.objects.order_by("pk").values_list("applied_at", flat=True)) == (
        sorted(MailOperation.objects.values_list("applied_at", flat=True))
    )  # strictly one after another, across the crash
    for message, expected in zip(messages[:6], CRASH_EXPECTED, strict=True):
        assert crm_state(message.pk) == expected, message.subject
        assert remote_state(remote, synced, message.graph_id) == expected, message.subject


def test_two_worker_processes_never_send_an_operation_twice(
    synced, graph, remote, agent, settings, worker_process
):
    """The Procfile's worker runs two processes: each change queues a task, and both take one
    for the same mailbox. The outbox's lease lets one of them drain it."""
    graph.response_delay = 0.05  # so that the two overlap
    messages = inbox_messages(synced)[:5]
    _, log = worker_process("pair", pool="prefork", concurrency=2)

    for status in ("flagged", "complete", "notFlagged"):
        for message in messages:
            take_step(message.pk, ("flag", status), agent)
    eventually(outbox_done(15), "both processes drained the outbox", log=log)

    assert graph.write_counts == expected_writes()
    assert_applied_in_order_per_message()
    for message in messages:
        assert crm_state(message.pk) == remote_state(remote, synced, message.graph_id)
