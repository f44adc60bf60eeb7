"""Injected faults: scripted in order, or drawn at a seeded rate from every kind."""

import json

import pytest
import requests


def outcome(session, url):
    """What a client sees: the status, "garbage" for an unparseable 200, or "drop"."""
    try:
        response = session.get(url)
    except requests.ConnectionError:
        return "drop"
    try:
        response.json()
    except ValueError:
        return "garbage"
    return str(response.status_code)


def test_garbage_is_a_200_with_a_truncated_json_body(graph, graph_simulator, mailbox):
    session, base = graph
    graph_simulator.script_faults(("garbage", None))

    response = session.get(f"{base}/mailFolders/inbox/messages/delta")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.content.startswith(b"{")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert session.get(f"{base}/mailFolders").status_code == 200, "only one request affected"


def test_a_fault_rate_mixes_every_kind(graph, graph_simulator, mailbox):
    session, base = graph
    graph_simulator.set_fault_rate(1.0, seed=1)

    kinds = {outcome(session, f"{base}/mailFolders") for _ in range(40)}

    assert kinds == {"429", "503", "504", "drop", "garbage"}


def test_unknown_fault_kinds_are_refused(graph_simulator):
    with pytest.raises(ValueError, match="unknown fault kinds"):
        graph_simulator.script_faults(("500", None))
