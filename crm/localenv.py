"""Secrets for the embedded default, generated once into `.env`.

The embedded default runs with no environment at all (DESIGN.md "Processes"), yet a secret key
and a field-encryption key must survive restarts: otherwise sessions die and encrypted fields
become unreadable. So the first process that starts without them writes fresh ones into the
env file, under a file lock because `make run` starts several processes at once.
"""

from __future__ import annotations

import fcntl
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet

GENERATED = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(50),
    "FIELD_ENCRYPTION_KEY": lambda: Fernet.generate_key().decode(),
}


def _defined_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        name, sep, _ = line.partition("=")
        if sep and not name.lstrip().startswith("#"):
            names.add(name.strip().removeprefix("export ").strip())
    return names


def ensure_generated_secrets(env_file: Path, present: set[str]) -> None:
    """Append any generated secret that neither the environment nor the file defines."""
    missing = {name: make for name, make in GENERATED.items() if name not in present}
    append_missing_settings(env_file, missing)


def append_env_setting(env_file: Path, name: str, value: str) -> None:
    append_missing_settings(env_file, {name: lambda: value})


def append_missing_settings(env_file: Path, factories: dict[str, Callable[[], str]]) -> None:
    """Write `NAME=value` for each name the file does not define yet, under an exclusive lock."""
    if not factories:
        return
    env_file.parent.mkdir(parents=True, exist_ok=True)
    with open(env_file, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = handle.read()
        defined = _defined_names(text)
        lines = [f"{name}={make()}" for name, make in factories.items() if name not in defined]
        if lines:
            prefix = "" if not text or text.endswith("\n") else "\n"
            handle.write(prefix + "# Generated on first start; keep it secret.\n")
            handle.write("\n".join(lines) + "\n")
            handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)
