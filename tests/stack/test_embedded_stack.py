"""Smoke test: the embedded default stack, started exactly as `make run` starts it.

Real subprocesses (migrate, seed, honcho with uvicorn, a Celery worker with beat and the SMTP
listener) on SQLite and the filesystem broker, with no PostgreSQL or Redis settings at all.
"""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect as ws_connect

from tests.conftest import free_port

pytestmark = pytest.mark.stack
STARTUP_SECONDS = 120


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _wait_for(predicate, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"stack exited early while waiting for {what}:\n{log.read_text()[-4000:]}")
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, project_root):
    var = tmp_path_factory.mktemp("embedded")
    web_port, smtp_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "FIELD_ENCRYPTION_KEY"}
        and not key.startswith(("STATICFILES_", "WHITENOISE_", "PYTEST", "DJANGO_"))
    }
    env.update(
        CRM_VAR_DIR=str(var),
        CRM_ENV_FILE=str(var / ".env"),
        WEB_PORT=str(web_port),
        SMTP_PORT=str(smtp_port),
        LOG_LEVEL="INFO",
    )
    log = var / "stack.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "serve"],
            cwd=project_root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{web_port}"
    try:
        _wait_for(lambda: _get(f"{base}/readyz")[0] == 200, "/readyz", process, log)
        yield {"base": base, "smtp_port": smtp_port, "var": var, "process": process, "log": log}
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def test_generated_secrets_and_sqlite_database_live_in_the_var_folder(stack):
    env_text = (stack["var"] / ".env").read_text()

    assert "SECRET_KEY=" in env_text
    assert "FIELD_ENCRYPTION_KEY=" in env_text
    assert "DEMO_ADMIN_PASSWORD=" in env_text
    assert (stack["var"] / "crm.sqlite3").exists()


def test_seed_printed_the_admin_login(stack):
    assert "Log in at http://127.0.0.1:8000/ as admin@example.com" in stack["log"].read_text()


def test_health_probes_answer_on_the_embedded_backends(stack):
    status, body = _get(f"{stack['base']}/healthz")
    assert status == 200

    status, body = _get(f"{stack['base']}/readyz")
    checks = json.loads(body)["checks"]
    assert status == 200
    assert checks["database"]["vendor"] == "sqlite"
    assert checks["cache"]["backend"] == "FileBasedCache"
    assert checks["broker"]["transport"] == "filesystem"


def test_beat_heartbeat_runs_in_the_worker(stack):
    def heartbeat_seen() -> bool:
        body = json.loads(_get(f"{stack['base']}/readyz")[1])
        return body["checks"]["beat_heartbeat"]["ok"] is True

    _wait_for(heartbeat_seen, "the beat heartbeat", stack["process"], stack["log"])
    status, body = _get(f"{stack['base']}/metrics")
    assert 'crm_celery_tasks_total{state="SUCCESS",task="crm.tasks.heartbeat"}' in body.decode()


def test_login_page_and_api_schema_are_served(stack):
    status, body = _get(f"{stack['base']}/accounts/login/")
    assert status == 200
    assert b'name="login"' in body

    status, body = _get(f"{stack['base']}/api/schema/?format=json")
    assert status == 200
    assert "/api/v1/teams" in json.loads(body)["paths"]

    status, body = _get(f"{stack['base']}/static/css/app.css")
    assert status == 200


def test_websockets_work_through_uvicorn_and_the_in_memory_layer(stack):
    url = stack["base"].replace("http://", "ws://") + "/ws/health"
    with ws_connect(url, origin=stack["base"], open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"status": "ok", "authenticated": False}
        ws.send(json.dumps({"ping": 1}))
        assert json.loads(ws.recv(timeout=10)) == {"echo": {"ping": 1}}


def test_smtp_listener_speaks_smtp_and_refuses_unknown_recipients(stack):
    with smtplib.SMTP("127.0.0.1", stack["smtp_port"], timeout=10) as smtp:
        code, _ = smtp.ehlo("client.example")
        assert code == 250
        smtp.mail("customer@example.net")
        code, _ = smtp.rcpt("nobody@crm.example")
        assert code == 550


def test_interrupt_stops_every_process(stack):
    process = stack["process"]
    os.killpg(process.pid, signal.SIGINT)

    process.wait(timeout=60)

    leftovers = subprocess.run(
        ["pgrep", "-g", str(process.pid)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == ""
