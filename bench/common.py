"""What every benchmark shares: production settings, servers, the machine, the report."""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
PG = "postgres://postgres@127.0.0.1:5432"
VENV_BIN = Path(os.sys.executable).parent


def bench_env(database: str) -> dict[str, str]:
    """Production settings (PostgreSQL pool, Redis) on a database of the benchmark's own."""
    return dict(
        os.environ,
        DATABASE_URL=f"{PG}/{database}",
        REDIS_URL="redis://127.0.0.1:6379/2",
        CRM_ENV_FILE="/dev/null",
        SECRET_KEY="bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        FIELD_ENCRYPTION_KEY="3q2-7wbXk_4tBz9E8mZ1yq2k4o7ZsSxq5t1l0bK9VxQ=",
        DEBUG="false",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="crm.settings",
    )


def ensure_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def in_django(env: dict[str, str], code: str) -> str:
    """Run `code` in a fresh Python with Django set up on `env`'s settings; its stdout."""
    return subprocess.run(
        [str(VENV_BIN / "python"), "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def in_django_value(env: dict[str, str], code: str) -> object:
    """The value of the expression `code` (a dict or list of plain values) computed by
    `in_django`, passed back through its repr."""
    output = in_django(env, f"print(repr({code}))")
    return eval(output.strip().splitlines()[-1])  # noqa: S307 - our own repr of plain values


def start_uvicorn(env: dict[str, str], port: int, workers: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            str(VENV_BIN / "uvicorn"),
            "crm.asgi:application",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--workers={workers}",
            "--log-level=warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):  # noqa: S310
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("uvicorn did not start")


def _first_line(command: list[str]) -> str:
    if not shutil.which(command[0]):
        return "not found"
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[0]


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = found.group(1).strip() if found else cpu
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}; "
        f"{_first_line(['psql', '--version'])}; {_first_line(['redis-server', '--version'])}"
    )


def write_section(name: str, body: str) -> None:
    """Replace this benchmark's section of docs/benchmarks.md, keeping every other section."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"{start}\n{body.rstrip()}\n\n_Run {stamp} on: {machine()}._\n{end}"
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n"
    if start in text:
        pattern = re.escape(start) + r".*?" + re.escape(end)
        text = re.sub(pattern, lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    REPORT.write_text(text)


def timed_get(url: str, headers: dict[str, str]) -> tuple[float, float, bytes]:
    """GET `url`: (milliseconds the client waited, milliseconds the server reported in its
    `Server-Timing` header, the body)."""
    request = urllib.request.Request(url, headers=headers)
    started = time.perf_counter()
    with urllib.request.urlopen(request) as response:  # noqa: S310 - loopback
        body = response.read()
        server = float(response.headers["Server-Timing"].split("dur=")[1])
    return (time.perf_counter() - started) * 1000, server, body


def measure(urls: list[str], headers: dict[str, str], samples: int) -> dict[str, float]:
    """Request each URL in turn (a sample is the sum over the list), after a warm-up:
    p50 and p95 as the client saw them and as the server reported them."""
    for url in urls:
        timed_get(url, headers)
    client, server = [], []
    for _ in range(samples):
        totals = [timed_get(url, headers)[:2] for url in urls]
        client.append(sum(t[0] for t in totals))
        server.append(sum(t[1] for t in totals))
    return {
        "p50": statistics.median(client),
        "p95": statistics.quantiles(client, n=20)[18],
        "server_p50": statistics.median(server),
        "server_p95": statistics.quantiles(server, n=20)[18],
    }
