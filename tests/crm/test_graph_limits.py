"""Per-mailbox limits that hold across processes, against the simulator with real threads and
real processes: the limiter's slots (Redis, or lock files when embedded) and the circuit
breaker (Django's cache)."""

import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from crm.graph.auth import token_provider
from crm.graph.breaker import CircuitBreaker
from crm.graph.client import (
    GraphBusy,
    GraphCircuitOpen,
    GraphClient,
    GraphError,
    GraphNotFound,
    GraphUnavailable,
)
from crm.graph.limits import mailbox_slots, slots_in_use

# Child processes start afresh (spawn), as separate workers do, and get these settings.
SPAWN = multiprocessing.get_context("spawn")
CHILD_SETTINGS = (
    "MS_AUTHORITY_HOST", "GRAPH_API_URL", "MS_CA_BUNDLE", "MS_TENANT_ID", "MS_CLIENT_ID",
    "MS_CLIENT_SECRET", "REDIS_URL", "VAR_DIR", "GRAPH_MAILBOX_CONCURRENCY",
    "GRAPH_SLOT_LEASE_SECONDS", "GRAPH_SLOT_WAIT_SECONDS", "GRAPH_RETRY_BASE_SECONDS",
    "GRAPH_MAX_RETRIES", "GRAPH_BREAKER_THRESHOLD", "GRAPH_BREAKER_COOLDOWN_SECONDS",
)  # fmt: skip


@pytest.fixture
def address(graph_simulator, settings):
    """A mailbox of this test's own (Redis is shared with other test runs)."""
    settings.GRAPH_RETRY_BASE_SECONDS = 0.01
    address = f"limits-{uuid.uuid4().hex[:12]}@contoso.example"
    graph_simulator.add_mailbox(address)
    yield address
    CircuitBreaker(address).reset()


@pytest.fixture(params=["redis", "files"])
def backend(request, settings, tmp_path):
    """The limiter on Redis (production, REDIS_URL set) or on lock files (embedded)."""
    if request.param == "files":
        settings.REDIS_URL = ""
        settings.VAR_DIR = tmp_path
    return request.param


def app_client(address: str, **kwargs) -> GraphClient:
    """A client with the app's own token, as for a shared mailbox, so that no database is
    asked which kind of token the mailbox uses (these tests and their child processes have
    none)."""
    return GraphClient(mailbox=address, tokens=token_provider(), **kwargs)


def folders(address: str) -> str:
    return f"users/{address}/mailFolders"


def child_settings(settings) -> dict:
    return {name: getattr(settings, name) for name in CHILD_SETTINGS}


def start_child(target: Callable, *args) -> multiprocessing.Process:
    process = SPAWN.Process(target=target, args=args, daemon=True)
    process.start()
    return process


def configure_child(overrides: dict) -> None:
    import django

    django.setup()
    from django.conf import settings

    for name, value in overrides.items():
        setattr(settings, name, value)


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def most_in_use_while(thread: threading.Thread, address: str) -> int:
    """The most slots seen held for the mailbox until the thread ends."""
    most = 0
    while thread.is_alive():
        most = max(most, slots_in_use(address))
        time.sleep(0.002)
    thread.join()
    return most


def send_from_threads(clients: list[GraphClient], address: str, each: int) -> list[str]:
    """Each client in a thread of its own sends `each` requests, every other one a $batch of
    three; returns the errors."""
    errors: list[str] = []

    def send(client: GraphClient) -> None:
        for number in range(each):
            try:
                if number % 2:
                    answers = client.get_many([folders(address)] * 3)
                    errors.extend(repr(a) for a in answers if isinstance(a, GraphError))
                else:
                    client.get(folders(address))
            except GraphError as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=send, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def send_from_another_process(overrides, address, threads, each, start, results) -> None:
    configure_child(overrides)
    clients = [app_client(address) for _ in range(threads)]
    start.wait(timeout=60)
    results.put(send_from_threads(clients, address, each))


def hold_every_slot(overrides, address, held) -> None:
    configure_child(overrides)
    from django.conf import settings

    with mailbox_slots(address, count=settings.GRAPH_MAILBOX_CONCURRENCY):
        held.set()
        time.sleep(120)


def request_from_another_process(overrides, address, results) -> None:
    configure_child(overrides)
    try:
        app_client(address).get(folders(address))
    except GraphError as exc:
        results.put(type(exc).__name__)
    else:
        results.put("ok")


# --- The limiter -----------------------------------------------------------------------------


def test_threads_and_processes_together_never_exceed_the_mailbox_limit(
    backend, address, graph_simulator, settings
):
    graph_simulator.response_delay = 0.05
    start, results = SPAWN.Barrier(3), SPAWN.Queue()
    children = [
        start_child(
            send_from_another_process, child_settings(settings), address, 3, 2, start, results
        )
        for _ in range(2)
    ]
    clients = [app_client(address) for _ in range(3)]
    start.wait(timeout=60)

    here = threading.Thread(target=lambda: results.put(send_from_threads(clients, address, 2)))
    here.start()
    most_in_use = most_in_use_while(here, address)
    errors = [error for _ in range(3) for error in results.get(timeout=60)]
    for child in children:
        child.join(timeout=30)

    assert errors == []
    assert graph_simulator.concurrency_refusals == 0
    assert most_in_use == settings.GRAPH_MAILBOX_CONCURRENCY == 4
    assert graph_simulator.graph_requests >= 9 * 2
    assert slots_in_use(address) == 0


def test_slots_of_a_crashed_process_come_back(backend, address, graph_simulator, settings):
    settings.GRAPH_SLOT_LEASE_SECONDS = 0.5
    settings.GRAPH_SLOT_WAIT_SECONDS = 0.1
    settings.GRAPH_BREAKER_THRESHOLD = 1
    held = SPAWN.Event()
    holder = start_child(hold_every_slot, child_settings(settings), address, held)
    assert held.wait(timeout=60)
    client = app_client(address)
    requests_before = graph_simulator.graph_requests

    with pytest.raises(GraphBusy, match="no free request slot for 127.0.0.1:[0-9]+/limits-"):
        client.get(folders(address))
    assert graph_simulator.graph_requests == requests_before
    assert CircuitBreaker(address).state() == "closed"  # our own limit, not the mailbox failing

    holder.kill()
    holder.join(timeout=30)
    settings.GRAPH_SLOT_WAIT_SECONDS = 5

    assert "value" in client.get(folders(address))
    assert slots_in_use(address) == 0


def test_a_slot_is_held_on_the_wire_but_not_while_waiting_to_retry(address, graph_simulator):
    client = app_client(address)
    client.tokens.token()
    graph_simulator.script_faults(("429", "1.0"))
    graph_simulator.response_delay = 0.6
    requests_before = graph_simulator.graph_requests
    request = threading.Thread(target=client.get, args=(folders(address),))

    request.start()
    wait_until(lambda: graph_simulator.graph_requests > requests_before)  # 429 answered
    time.sleep(0.2)
    assert slots_in_use(address) == 0
    wait_until(lambda: slots_in_use(address) == 1)  # the retry, answered after 0.6 s
    request.join()

    assert slots_in_use(address) == 0
    assert client.stats["retries"] == 1


def test_a_batch_holds_a_slot_per_subrequest_up_to_the_limit(address, graph_simulator):
    client = app_client(address)
    client.tokens.token()
    graph_simulator.response_delay = 0.3

    seen = []
    for count in (2, 6):
        batch = threading.Thread(target=client.get_many, args=([folders(address)] * count,))
        batch.start()
        seen.append(most_in_use_while(batch, address))

    assert seen == [2, 4]


def test_a_streamed_body_holds_its_slot_until_the_response_is_closed(address, graph_simulator):
    mailbox = graph_simulator.mailboxes[address]
    message = mailbox.add_message("inbox", subject="with attachment")
    attachment = mailbox.add_attachment(
        message, name="a.txt", content=b"hello", content_type="text/plain"
    )
    client = app_client(address)
    url = f"users/{address}/messages/{message}/attachments/{attachment}/$value"

    response = client.request("GET", url, stream=True)
    assert slots_in_use(address) == 1
    with response:
        assert response.content == b"hello"

    assert slots_in_use(address) == 0


# --- The circuit breaker ---------------------------------------------------------------------


@pytest.fixture
def breaker_settings(settings):
    settings.GRAPH_MAX_RETRIES = 0
    settings.GRAPH_BREAKER_THRESHOLD = 3
    settings.GRAPH_BREAKER_COOLDOWN_SECONDS = 60
    return settings


def fail(client: GraphClient, graph_simulator, times: int) -> None:
    """`times` requests answered 503 (no retries in these tests)."""
    graph_simulator.script_faults(*[("503", None)] * times)
    for _ in range(times):
        with pytest.raises(GraphUnavailable, match="HTTP 503 after 0 retries"):
            client.get(folders(client.mailbox))


def test_the_breaker_opens_after_consecutive_failures_and_refuses_without_the_network(
    breaker_settings, address, graph_simulator
):
    fail(app_client(address), graph_simulator, 3)
    requests_before = graph_simulator.graph_requests

    with pytest.raises(GraphCircuitOpen, match="after 3 consecutive failed requests") as refused:
        app_client(address.upper()).get(folders(address))

    assert graph_simulator.graph_requests == requests_before
    assert 55 < refused.value.retry_after <= 60
    assert CircuitBreaker(address).state() == "open"
    other = f"other-{address}"
    graph_simulator.add_mailbox(other)
    assert "value" in app_client(other).get(folders(other))
    CircuitBreaker(other).reset()


def test_any_answer_resets_the_count(breaker_settings, address, graph_simulator):
    client = app_client(address)

    fail(client, graph_simulator, 2)
    client.get(folders(address))
    fail(client, graph_simulator, 2)
    with pytest.raises(GraphNotFound):  # Graph answered: the mailbox is reachable
        client.get(f"users/{address}/messages/AAMkGone")
    fail(client, graph_simulator, 2)

    assert CircuitBreaker(address).state() == "closed"


def test_after_the_cooldown_one_trial_goes_and_its_success_closes_the_breaker(
    breaker_settings, address, graph_simulator
):
    breaker_settings.GRAPH_BREAKER_COOLDOWN_SECONDS = 0.2
    client = app_client(address)
    fail(client, graph_simulator, 3)
    time.sleep(0.25)
    assert CircuitBreaker(address).state() == "half-open"
    graph_simulator.response_delay = 0.5
    requests_before = graph_simulator.graph_requests

    trial = threading.Thread(target=client.get, args=(folders(address),))
    trial.start()
    wait_until(lambda: graph_simulator.graph_requests > requests_before)
    with pytest.raises(GraphCircuitOpen, match="a trial request is under way"):
        app_client(address).get(folders(address))
    trial.join()

    assert CircuitBreaker(address).state() == "closed"
    assert "value" in app_client(address).get(folders(address))


def test_a_failed_trial_opens_the_breaker_again(breaker_settings, address, graph_simulator):
    breaker_settings.GRAPH_BREAKER_COOLDOWN_SECONDS = 0.2
    client = app_client(address)
    fail(client, graph_simulator, 3)
    time.sleep(0.25)
    breaker_settings.GRAPH_BREAKER_COOLDOWN_SECONDS = 60

    fail(client, graph_simulator, 1)

    with pytest.raises(GraphCircuitOpen):
        client.get(folders(address))
    assert CircuitBreaker(address).state() == "open"


def test_a_batch_whose_every_subrequest_keeps_failing_counts_as_a_failure(
    breaker_settings, address, graph_simulator
):
    breaker_settings.GRAPH_BREAKER_THRESHOLD = 2
    client = app_client(address)
    graph_simulator.script_faults(("ok", None), ("503", None), ("ok", None), ("503", None))

    first, second = client.get_many([folders(address)]), client.get_many([folders(address)])

    assert isinstance(first[0], GraphUnavailable)
    assert isinstance(second[0], GraphUnavailable)
    with pytest.raises(GraphCircuitOpen):
        client.get_many([folders(address)])


def test_the_breaker_is_shared_with_other_processes(breaker_settings, address, graph_simulator):
    fail(app_client(address), graph_simulator, 3)
    requests_before = graph_simulator.graph_requests
    results = SPAWN.Queue()

    child = start_child(
        request_from_another_process, child_settings(breaker_settings), address, results
    )

    assert results.get(timeout=60) == "GraphCircuitOpen"
    child.join(timeout=30)
    assert graph_simulator.graph_requests == requests_before


def test_the_breaker_works_on_the_embedded_file_cache(
    breaker_settings, address, graph_simulator, tmp_path
):
    breaker_settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    }
    client = app_client(address)

    fail(client, graph_simulator, 3)

    with pytest.raises(GraphCircuitOpen):
        client.get(folders(address))
    CircuitBreaker(address).reset()
    assert "value" in client.get(folders(address))
