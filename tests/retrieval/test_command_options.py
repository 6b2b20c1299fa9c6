"""The fetchmail options that run programs, write files or log in to the listener,
on the service side: who may use them, what a poll records, what an import says.
"""

from __future__ import annotations

import io
import sys
from typing import TYPE_CHECKING

import pytest
from django.core.management import call_command

from retrieval import services
from retrieval.engine.report import ExitCode
from retrieval.models import Mailbox, PollRun
from tests.factories import make_mailbox, make_user

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.django_db


def python_writes(path: Path, word: str) -> str:
    """A preconnect/postconnect command line appending ``word`` to ``path``."""
    code = f"open('{path}', 'a').write('{word}\\n'); print('{word} ran')"
    return f'{sys.executable} -c "{code}"'


def poll(mailbox: Mailbox) -> PollRun:
    summary = services.mailbox_poll(mailbox_id=mailbox.pk)
    assert summary.run_id is not None
    return PollRun.objects.get(pk=summary.run_id)


class NotForEveryoneTests:
    @pytest.mark.parametrize(
        ("options", "name"),
        [
            ({"user": {"preconnect": "PRE"}}, "preconnect"),
            ({"user": {"postconnect": "PRE"}}, "postconnect"),
            ({"server": {"plugin": "PRE %h %p"}}, "plugin"),
            ({"server": {"plugout": "PRE %h %p"}}, "plugout"),
            ({"user": {"bsmtp": "/tmp/fetchweb-batch"}}, "bsmtp"),
        ],
    )
    def test_a_mailbox_of_a_non_superuser_is_refused_at_poll_time(
        self, tmp_path: Path, options: dict[str, dict[str, str]], name: str
    ) -> None:
        marker = tmp_path / "ran"
        for part in options.values():
            for key, value in part.items():
                part[key] = value.replace("PRE", python_writes(marker, key))
        mailbox = make_mailbox(make_user(), password="x", options=options)

        run = poll(mailbox)

        assert run.exit_code == ExitCode.SYNTAX
        assert run.outcome == PollRun.Outcome.ERROR
        assert f"run commands on the server ({name})" in run.error
        assert "only a mailbox of an administrator (superuser)" in run.error
        assert not marker.exists()


class SuperuserTests:
    def test_bsmtp_to_standard_output_is_refused_with_the_reason(self) -> None:
        owner = make_user(superuser=True)
        mailbox = make_mailbox(owner, password="x", options={"user": {"bsmtp": "-"}})
        run = poll(mailbox)
        assert run.exit_code == ExitCode.SYNTAX
        assert run.error == services.BSMTP_STDOUT

    def test_the_esmtp_secret_reaches_the_engine_from_its_encrypted_column(
        self,
    ) -> None:
        owner = make_user(superuser=True)
        mailbox = make_mailbox(
            owner, password="x", options={"server": {"esmtpname": "relay-user"}}
        )
        mailbox.set_esmtp_password("esmtp s3cret")
        mailbox.save()

        delivery = services.mailbox_spec(mailbox).delivery

        assert delivery.esmtp_name == "relay-user"
        assert delivery.esmtp_password is not None
        assert delivery.esmtp_password.reveal() == "esmtp s3cret"
        assert "s3cret" not in repr(delivery)


@pytest.mark.live
def test_pre_and_postconnect_of_a_superuser_run_around_the_poll(
    dovecot, mailuser, smtp_listener, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    dovecot.put(mailuser.name, b"Subject: hooks\r\n\r\nbody\r\n")
    mailbox = make_mailbox(
        make_user(superuser=True),
        password=mailuser.password,
        protocol="imap",
        host=dovecot.host,
        port=dovecot.imaps_port,
        tls_mode="implicit",
        ca_file=dovecot.ca_file,
        username=mailuser.name,
        delivery_host="127.0.0.1",
        delivery_port=smtp_listener.port,
        recipient="alice@example.org",
        timeout=10,
        options={
            "user": {
                "preconnect": python_writes(log, "pre"),
                "postconnect": python_writes(log, "post"),
            }
        },
    )

    run = poll(mailbox)

    assert run.exit_code == ExitCode.SUCCESS, run.error
    assert log.read_text() == "pre\npost\n"
    assert len(smtp_listener.messages) == 1
    transcript = run.transcript
    assert "preconnect said: pre ran" in transcript
    assert "preconnect: exited with status 0" in transcript
    assert transcript.index("preconnect: exited") < transcript.index("connected to")
    assert transcript.index("connected to") < transcript.index("postconnect said")


def test_the_import_says_what_a_poll_will_refuse(tmp_path: Path) -> None:
    owner = make_user("root@example.org", superuser=True)
    rc = tmp_path / "rc"
    rc.write_text(
        "poll old.example.org proto pop2 user a pass x\n"
        "poll ntlm.example.org proto pop3 auth ntlm user b pass x\n"
        "poll tunnel.example.org proto imap plugin 'ssh %h imapd | tee' "
        "user c pass x\n"
        "poll batch.example.org proto imap user d pass x bsmtp -\n"
    )
    out = io.StringIO()
    call_command("import_fetchmailrc", str(rc), owner=owner.email, stdout=out)
    text = out.getvalue()
    assert "at poll time: The option protocol 'pop2' is refused: POP2 (RFC 937)" in text
    assert "at poll time: The option auth 'ntlm' is refused: NTLM is not supported" in (
        text
    )
    assert "at poll time: The option plugin 'ssh %h imapd | tee' is refused: it " in (
        text
    )
    assert f"at poll time: {services.BSMTP_STDOUT}" in text
    assert Mailbox.objects.count() == 4
