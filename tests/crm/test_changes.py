"""Change numbers: every consumer asks "what changed in this container since N?"."""

import threading
import time

import pytest
from django.db import connection, connections, transaction

from cases import services
from cases.models import Customer, Task
from crm import changes
from crm.models import Tombstone
from tests.cases.factories import CustomerFactory, TaskFactory, TeamFactory, make_agent


@pytest.mark.django_db
def test_each_change_to_a_task_gets_a_higher_number_in_its_assignees_list():
    agent = make_agent(team=TeamFactory())
    task = TaskFactory(assignee=agent)
    first = task.change_seq

    services.task_update(actor=agent, task=task, subject="Call back the customer")
    services.task_change_status(actor=agent, task=task, status="in_progress")

    task.refresh_from_db()
    assert task.change_container == changes.task_list(agent.pk)
    assert task.change_seq == first + 2
    seen = changes.changes_since(
        container=changes.task_list(agent.pk), since=first, items=Task.objects.all()
    )
    assert [t.pk for t in seen.items] == [task.pk]
    assert seen.last_seq == first + 2


@pytest.mark.django_db
def test_a_task_moved_to_another_agent_leaves_a_tombstone_in_the_old_list():
    team = TeamFactory()
    alice, bob = make_agent(team=team), make_agent(team=team)
    task = TaskFactory(assignee=alice)
    alice_seen = task.change_seq

    services.task_assign(actor=alice, task=task, assignee=bob)

    alice_changes = changes.changes_since(
        container=changes.task_list(alice.pk), since=alice_seen, items=Task.objects.all()
    )
    bob_changes = changes.changes_since(
        container=changes.task_list(bob.pk), since=0, items=Task.objects.all()
    )
    assert alice_changes.items == []
    assert [(t.item_type, t.item_id) for t in alice_changes.tombstones] == [("cases.task", task.pk)]
    assert [t.pk for t in bob_changes.items] == [task.pk]


@pytest.mark.django_db
def test_customers_share_one_book_and_deletions_leave_tombstones():
    book = changes.customer_book()
    start = book.last_seq
    ada, bob = CustomerFactory(name="Ada"), CustomerFactory(name="Bob")
    services.customer_update(customer=ada, is_vip=True)
    bob_id = bob.pk

    services.customer_delete(customer=bob)

    seen = changes.changes_since(container=book, since=start, items=Customer.objects.all())
    assert [c.name for c in seen.items] == ["Ada"]
    assert [t.item_id for t in seen.tombstones] == [bob_id]
    assert seen.last_seq == start + 4


@pytest.mark.django_db
def test_changes_come_in_bounded_batches_that_continue_where_they_stopped():
    agent = make_agent(team=TeamFactory())
    tasks = [TaskFactory(assignee=agent) for _ in range(5)]
    container = changes.task_list(agent.pk)

    first = changes.changes_since(container=container, since=0, items=Task.objects.all(), limit=2)
    rest = changes.changes_since(
        container=container, since=first.last_seq, items=Task.objects.all(), limit=10
    )

    assert [t.pk for t in first.items + rest.items] == [t.pk for t in tasks]


@pytest.mark.django_db(transaction=True)
def test_allocating_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError, match="inside the writing transaction"):
        changes.change_seq_allocate(changes.customer_book())


def _waiting_on_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return bool(row) and row[0] == "Lock"


@pytest.mark.django_db(transaction=True)
def test_a_reader_never_skips_a_number_committed_late():
    """Writer A takes number 1 and is slow to commit; writer B must wait for A, so a reader
    can never see 2 committed while 1 is still invisible, and skip 1 forever."""
    book = changes.customer_book()
    base = book.last_seq
    a_allocated, a_may_commit = threading.Event(), threading.Event()
    b_pid: list[int] = []
    b_done = threading.Event()

    def writer_a() -> None:
        with transaction.atomic():
            services.customer_create(name="Slow writer", emails=["slow@a.example"])
            a_allocated.set()
            a_may_commit.wait(10)
        connections.close_all()

    def writer_b() -> None:
        connection.ensure_connection()
        b_pid.append(connection.connection.info.backend_pid)
        with transaction.atomic():
            services.customer_create(name="Fast writer", emails=["fast@b.example"])
        b_done.set()
        connections.close_all()

    thread_a = threading.Thread(target=writer_a)
    thread_a.start()
    assert a_allocated.wait(10)
    thread_b = threading.Thread(target=writer_b)
    thread_b.start()
    deadline = time.monotonic() + 10
    while not (b_pid and _waiting_on_a_lock(b_pid[0])):
        assert not b_done.is_set(), "writer B committed while A still held its number"
        assert time.monotonic() < deadline, "writer B never reached the container lock"
        time.sleep(0.05)

    during = changes.changes_since(container=book, since=base, items=Customer.objects.all())
    a_may_commit.set()
    thread_a.join(10)
    thread_b.join(10)
    after = changes.changes_since(container=book, since=base, items=Customer.objects.all())

    assert during.items == []
    assert [(c.name, c.change_seq) for c in after.items] == [
        ("Slow writer", base + 1),
        ("Fast writer", base + 2),
    ]
    assert not Tombstone.objects.exists()
