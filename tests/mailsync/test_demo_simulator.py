"""`python -m graphsim`, the demo's Microsoft 365, is something the CRM really syncs from."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from crm.graph import auth
from mailsync import services
from mailsync.models import Message
from tests.conftest import free_port

pytestmark = pytest.mark.django_db


def test_the_demo_simulator_prints_settings_the_crm_syncs_with(
    team, settings, tmp_path, project_root
):
    process = subprocess.Popen(
        [sys.executable, "-m", "graphsim", "--port", str(free_port()), "--threads", "5",
         "--directory", str(tmp_path)],
        cwd=project_root, stdout=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        printed = {}
        while "MS_CA_BUNDLE" not in printed:
            line = process.stdout.readline()
            assert line, "the simulator stopped before printing its settings"
            name, sep, value = line.strip().partition("=")
            if sep and name.isupper():
                printed[name] = value
        for name, value in printed.items():
            setattr(settings, name, value)
        auth.forget_providers()
        mailbox = services.mailbox_connect(address="support@contoso.example", team=team)

        result = services.mailbox_sync(mailbox=mailbox)

        assert not result.failed
        assert Message.objects.filter(mailbox=mailbox, folder__well_known="inbox").count() >= 5
    finally:
        auth.forget_providers()
        process.terminate()
        process.wait(timeout=10)
