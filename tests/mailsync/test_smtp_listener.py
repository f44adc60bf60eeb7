"""The SMTP listener over real sockets: smtplib against aiosmtpd on a free port, PostgreSQL
behind it. The handler runs in the listener's threads, hence transactional database tests."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import OperationalError

from crm.celery import app as celery_app
from graphsim.tls import create_test_pki
from mailsync import services, smtp
from mailsync.models import InboundMessage, Message
from mailsync.signals import message_ingested
from tests.cases.factories import DEFAULT_PASSWORD, TeamFactory, make_agent
from tests.conftest import free_port
from tests.mailsync import mime_samples as samples

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def ingested():
    """Only mailsync listens while these tests run: with eager tasks, another app's receiver
    would run its work inside the listener's thread."""
    seen: list[dict] = []
    with message_ingested.lock:
        saved = list(message_ingested.receivers)
        message_ingested.receivers.clear()
    message_ingested.sender_receivers_cache.clear()
    message_ingested.connect(lambda **kwargs: seen.append(kwargs), weak=False)
    yield seen
    with message_ingested.lock:
        message_ingested.receivers[:] = saved
    message_ingested.sender_receivers_cache.clear()


@pytest.fixture
def eager_delivery(ingested):
    """Delivery runs as soon as the spooled row commits (before `250`), so a test sees the
    messages when smtplib returns. One test below uses a real worker instead."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def listener(settings, media):
    """Start the listener with these settings; returns its port. Stopped after the test."""
    started = []
    settings.SMTP_HOSTNAME = "crm.test"

    def start(**overrides) -> int:
        for name, value in overrides.items():
            setattr(settings, name, value)
        controller = smtp.build_controller(host="127.0.0.1", port=free_port())
        controller.start()
        started.append(controller)
        return controller.port

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def help_box(team, media):
    return services.mailbox_connect(address="help@crm.example", team=team, local=True)


@pytest.fixture
def sales_box(media):
    return services.mailbox_connect(
        address="sales@crm.example", team=TeamFactory(name="Sales"), local=True
    )


def client(port: int) -> smtplib.SMTP:
    connection = smtplib.SMTP("127.0.0.1", port, timeout=30)
    connection.ehlo("mx.nordwind.example")
    return connection


def test_mail_for_a_local_mailbox_is_spooled_then_delivered(listener, help_box, eager_delivery,
                                                            ingested):  # fmt: skip
    port = listener()

    with client(port) as connection:
        assert connection.mail("anna.berg@nordwind.example")[0] == 250
        assert connection.rcpt("Help@crm.example")[0] == 250
        code, reply = connection.data(samples.ALTERNATIVE)

    inbound = InboundMessage.objects.get()
    assert (code, reply.decode()) == (250, f"2.0.0 OK: queued as {inbound.pk}")
    raw = bytes(inbound.raw)
    assert raw.startswith(b"Received: from mx.nordwind.example ([127.0.0.1])\r\n\tby crm.test")
    assert raw.endswith(samples.ALTERNATIVE)
    assert (inbound.mail_from, inbound.rcpt_tos, inbound.peer) == (
        "anna.berg@nordwind.example", ["Help@crm.example"], "127.0.0.1")  # fmt: skip
    assert (inbound.size, inbound.helo, inbound.status) == (len(raw), "mx.nordwind.example",
                                                            "delivered")  # fmt: skip
    message = Message.objects.get()
    assert (message.mailbox, message.folder.well_known) == (help_box, "inbox")
    assert message.subject == "Re: Invoice 1043"
    assert message.inbound == inbound
    assert ingested == [{"signal": message_ingested, "sender": Message, "message_id": message.pk,
                         "mailbox_id": help_box.pk, "folder_role": "inbox"}]  # fmt: skip


def test_unknown_recipients_are_refused_at_rcpt(listener, help_box, eager_delivery):
    port = listener()

    with client(port) as connection:
        refused = connection.sendmail(
            "anna@nordwind.example", ["nobody@crm.example", "help@crm.example"], samples.plain()
        )
        connection.mail("anna@nordwind.example")
        code, reply = connection.rcpt("nobody@crm.example")

    assert (code, reply) == (550, b"5.1.1 <nobody@crm.example>: no such mailbox here")
    assert refused == {"nobody@crm.example": (550, b"5.1.1 <nobody@crm.example>: no such "
                                                   b"mailbox here")}  # fmt: skip
    assert InboundMessage.objects.get().rcpt_tos == ["help@crm.example"]
    assert Message.objects.count() == 1


def test_recipients_beyond_the_limit_get_452(listener, help_box, eager_delivery):
    port = listener(SMTP_MAX_RECIPIENTS=3)

    with client(port) as connection:
        connection.mail("anna@nordwind.example")
        codes = [connection.rcpt("help@crm.example")[0] for _ in range(4)]
        assert connection.data(samples.plain())[0] == 250

    assert codes == [250, 250, 250, 452]
    assert len(InboundMessage.objects.get().rcpt_tos) == 3
    assert Message.objects.count() == 1  # one mailbox, however often it was named


def test_a_message_over_the_size_limit_gets_552_and_nothing_is_stored(listener, help_box,
                                                                      eager_delivery):  # fmt: skip
    port = listener(SMTP_MAX_MESSAGE_BYTES=10_000)
    big = samples.plain(body=("x" * 70 + "\n") * 300)

    with client(port) as connection:
        assert b"SIZE 10000" in connection.ehlo_resp
        with pytest.raises(smtplib.SMTPSenderRefused) as declared:  # SIZE= says so up front
            connection.sendmail("anna@nordwind.example", ["help@crm.example"], big)
        connection.rset()
        connection.mail("anna@nordwind.example")  # not declared: counted while it arrives
        connection.rcpt("help@crm.example")
        code, _ = connection.data(big)
        assert connection.noop()[0] == 250  # the session goes on

    assert declared.value.smtp_code == 552
    assert code == 552
    assert InboundMessage.objects.count() == 0


def test_a_client_that_disconnects_mid_data_leaves_nothing_and_the_listener_goes_on(
    listener, help_box, eager_delivery
):
    port = listener()

    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        reader = raw.makefile("rb")
        reader.readline()
        commands = [b"EHLO x.example", b"MAIL FROM:<a@x.example>", b"RCPT TO:<help@crm.example>"]
        for command in [*commands, b"DATA"]:
            raw.sendall(command + b"\r\n")
            while (line := reader.readline())[3:4] == b"-":
                pass
        assert line.startswith(b"354")
        raw.sendall(b"Subject: cut short\r\n\r\nthe first half of the")
    time.sleep(0.2)

    with client(port) as connection:
        connection.sendmail("a@x.example", ["help@crm.example"], samples.plain())

    assert InboundMessage.objects.count() == 1
    assert Message.objects.get().subject == "Invoice 1043 is wrong"


def test_twenty_concurrent_senders(listener, help_box, eager_delivery):
    port = listener()
    errors: list[BaseException] = []

    def sender(n: int) -> None:
        try:
            with client(port) as connection:
                for k in range(5):
                    connection.sendmail(
                        f"customer{n}@nordwind.example", ["help@crm.example"],
                        samples.plain(subject=f"From {n}, number {k}",
                                      message_id=f"<{n}.{k}@nordwind.example>"),
                    )  # fmt: skip
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert InboundMessage.objects.filter(status="delivered").count() == 100
    numbers = sorted(Message.objects.values_list("change_seq", flat=True))
    assert len(numbers) == 100
    assert len(set(numbers)) == 100
    assert len(set(Message.objects.values_list("internet_message_id", flat=True))) == 100


def test_a_database_failure_answers_451_so_the_sender_retries(listener, help_box, monkeypatch):
    port = listener()

    def database_away(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(services, "inbound_receive", database_away)
    with client(port) as connection:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            connection.sendmail("a@x.example", ["help@crm.example"], samples.plain())

    assert refused.value.smtp_code == 451
    assert InboundMessage.objects.count() == 0


# --- STARTTLS and AUTH -------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path):
    return create_test_pki(tmp_path / "pki")


@pytest.fixture
def submission(listener, pki, monkeypatch):
    """A listener with STARTTLS and AUTH; returns a function giving a TLS session."""
    monkeypatch.setattr(smtp, "AUTH_FAILURE_DELAY", 0)
    port = listener(SMTP_TLS_CERT=str(pki.server_cert), SMTP_TLS_KEY=str(pki.server_key),
                    SMTP_AUTH_ENABLED=True)  # fmt: skip

    def session() -> smtplib.SMTP:
        connection = client(port)
        connection.starttls(context=ssl.create_default_context(cafile=str(pki.ca_cert)))
        connection.ehlo("laptop.example")
        return connection

    session.port = port
    return session


def test_an_agent_sends_over_starttls_and_auth_to_a_colleague(
    submission, team, help_box, sales_box, eager_delivery, ingested
):
    agent = make_agent(team=team, email="dana@support.example")

    with submission() as connection:
        assert connection.sock.version() in ("TLSv1.2", "TLSv1.3")
        connection.login("Dana@support.example", DEFAULT_PASSWORD)
        connection.sendmail("help@crm.example", ["sales@crm.example"],
                            samples.plain(sender="Support <help@crm.example>",
                                          to="sales@crm.example"))  # fmt: skip

    inbound = InboundMessage.objects.get()
    assert inbound.authenticated_user == agent
    assert b"with ESMTPSA" in bytes(inbound.raw)[:300]
    copies = {(m.mailbox.address, m.folder.well_known) for m in Message.objects.all()}
    assert copies == {("help@crm.example", "sentitems"), ("sales@crm.example", "inbox")}
    assert sorted(event["folder_role"] for event in ingested) == ["inbox", "sentitems"]


def test_auth_login_mechanism(submission, team, help_box, eager_delivery):
    agent = make_agent(team=team)

    with submission() as connection:
        connection.user, connection.password = agent.email, DEFAULT_PASSWORD
        code, _ = connection.auth("LOGIN", connection.auth_login)

    assert code == 235


def test_wrong_password_and_garbage_are_refused(submission, team):
    agent = make_agent(team=team)

    with submission() as connection:
        with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
            connection.login(agent.email, "not the password")
        garbage = connection.docmd("AUTH", "PLAIN !!!notbase64")
        one_field = connection.docmd("AUTH", "PLAIN " + base64.b64encode(b"only").decode())
        unknown = connection.docmd("AUTH", "PLAIN " + base64.b64encode(
            b"\0ghost@x.example\0" + DEFAULT_PASSWORD.encode()).decode())  # fmt: skip

    assert wrong.value.smtp_code == 535
    assert garbage[0] == 501
    assert one_field[0] == 501
    assert unknown[0] == 535


def test_auth_needs_starttls_first(submission, team):
    agent = make_agent(team=team)
    credentials = base64.b64encode(f"\0{agent.email}\0{DEFAULT_PASSWORD}".encode()).decode()

    with client(submission.port) as connection:
        assert "auth" not in connection.esmtp_features
        code, _ = connection.docmd("AUTH", f"PLAIN {credentials}")

    assert code == 538


def test_an_agent_may_only_send_as_mailboxes_they_see_and_nothing_is_relayed(
    submission, team, help_box, sales_box
):
    agent = make_agent(team=team)  # in Support: help@ is theirs, sales@ is not

    with submission() as connection:
        connection.login(agent.email, DEFAULT_PASSWORD)
        not_theirs = connection.mail("sales@crm.example")
        connection.rset()
        theirs = connection.mail("help@crm.example")
        outside = connection.rcpt("customer@nordwind.example")

    assert not_theirs == (553, b"5.7.1 <sales@crm.example>: sender address not owned by user")
    assert theirs[0] == 250
    assert outside[0] == 550
    assert outside[1].startswith(b"5.7.1 Relaying is not configured")


def test_without_auth_enabled_none_is_offered(listener, pki, help_box):
    port = listener(SMTP_TLS_CERT=str(pki.server_cert), SMTP_TLS_KEY=str(pki.server_key))

    with client(port) as connection:
        assert connection.has_extn("starttls")
        connection.starttls(context=ssl.create_default_context(cafile=str(pki.ca_cert)))
        connection.ehlo("laptop.example")
        offered = connection.has_extn("auth")
        code, _ = connection.docmd("AUTH", "PLAIN AGFAYg==")

    assert offered is False
    assert code == 504


# --- a real worker -----------------------------------------------------------------------------


def test_a_real_worker_on_redis_delivers_what_the_listener_spooled(listener, help_box, ingested):
    assert celery_app.conf.broker_url.startswith("redis://")
    port = listener()

    with client(port) as connection:
        for n in range(3):
            connection.sendmail("anna@nordwind.example", ["help@crm.example"],
                                samples.plain(message_id=f"<w{n}@nordwind.example>"))  # fmt: skip
    assert InboundMessage.objects.filter(status="pending").count() == 3

    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        deadline = time.monotonic() + 30
        while Message.objects.count() < 3:
            assert time.monotonic() < deadline, "the worker never delivered the spool"
            time.sleep(0.1)

    assert InboundMessage.objects.filter(status="delivered").count() == 3
    assert len(ingested) == 3


# --- the command -------------------------------------------------------------------------------


@pytest.fixture
def smtpd_command(project_root, media):
    """`manage.py smtpd --processes 2` on the test database; yields (process, port)."""
    from django.db import connection

    database = connection.settings_dict
    env = dict(
        os.environ,
        DATABASE_URL=f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/"
        f"{database['NAME']}",
        SMTP_HOSTNAME="crm.test",
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "smtpd", "--port", str(port), "--processes", "2"],
        cwd=project_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    line = process.stdout.readline()
    if b"SMTP listener on 127.0.0.1:" not in line:
        process.kill()
        pytest.fail((line + process.communicate(timeout=10)[0]).decode())
    yield process, port
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def test_the_command_runs_two_listener_processes_and_stops_them_on_sigterm(smtpd_command, help_box):
    process, port = smtpd_command
    [child] = children_of(process.pid)

    for n in range(6):  # new connections, spread over both processes by the kernel
        with client(port) as connection:
            connection.sendmail("a@x.example", ["help@crm.example"],
                                samples.plain(message_id=f"<p{n}@x>"))  # fmt: skip
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=30)[0].decode()

    assert InboundMessage.objects.count() == 6
    assert process.returncode == 0, output
    assert not Path(f"/proc/{child}").exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_when_one_listener_process_dies_the_command_stops_them_all(smtpd_command):
    process, port = smtpd_command
    [child] = children_of(process.pid)

    os.kill(child, signal.SIGKILL)
    output = process.communicate(timeout=30)[0].decode()

    assert process.returncode == 1
    assert "A listener process died" in output
