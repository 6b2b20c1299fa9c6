"""What people who are not superusers see of server-run commands (issue 11 item 7).

A superuser's mailbox may run programs on this server (preconnect, postconnect,
plugin, plugout, mda). Their command lines (paths, hosts, keys) are for
superusers: the run page, the detail page and the connection test page show
them to a superuser and hide them from everyone else. The transcript lines are
made by the engine's own code, so a change of its wording breaks this test.
"""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from retrieval.display import HIDDEN
from retrieval.engine.errors import EngineError
from retrieval.engine.wire.commands import run_command, shown
from retrieval.engine.wire.tunnel import open_tunnel
from retrieval.models import ConnectionTest, MessageResult, PollRun
from retrieval.services import RecordingTranscript
from tests.factories import make_mailbox
from tests.retrieval.test_views import PUBLIC, _as, _quick_settings, trio

__all__ = ["_quick_settings", "trio"]

pytestmark = pytest.mark.django_db

PRECONNECT = "/bin/sh -c 'echo tunnel-to-vault.internal up; exit 1' key=Pre5ecret"
PLUGIN = "/nonexistent/plugin-Pl4gin --identity /root/.ssh/id_vault %h"
MDA = "/usr/bin/procmail -d %T -m /etc/Mda-Rc-9"
# What must not reach anyone but a superuser.
SECRETS = ("Pre5ecret", "vault.internal", "Pl4gin", "id_vault", "Mda-Rc-9")


def _engine_transcript() -> tuple[str, str]:
    """A transcript and an error as a poll with these commands records them."""
    import shlex

    transcript = RecordingTranscript(secrets=(), limit=100_000)
    argv = shlex.split(PRECONNECT)
    finished = run_command(
        argv, label="preconnect", timeout=10, transcript=transcript, env={}
    )
    try:
        open_tunnel(
            shlex.split(PLUGIN),
            host="imap.example.net",
            port=993,
            timeout=10,
            transcript=transcript,
            label="plugin",
            inherit_env=False,
        )
    except EngineError as exc:  # the program cannot start: its words are recorded
        transcript.record("*", f"poll ended: {exc}")
    transcript.record("*", f"MDA: {' '.join(shlex.split(MDA))}")
    error = (
        f"The pre-connection command ({shown(argv)}) {finished.describe(10)}; "
        "the mail server was not contacted."
    )
    return transcript.text(), error


@pytest.fixture
def commands_mailbox(trio):
    """A superuser's mailbox in bob's domain, with commands, one poll and one test."""
    mailbox = make_mailbox(
        trio.root,
        domain=trio.domain,
        name="vault",
        host=PUBLIC,
        delivery_kind="mda",
        options={
            "server": {"plugin": PLUGIN},
            "user": {"preconnect": PRECONNECT, "mda": MDA},
        },
    )
    transcript, error = _engine_transcript()
    assert all(s in transcript + error for s in ("Pre5ecret", "Pl4gin", "Mda-Rc-9"))
    run = PollRun.objects.create(
        mailbox=mailbox,
        outcome=PollRun.Outcome.ERROR,
        exit_code=5,
        finished_at=timezone.now(),
        transcript=transcript,
        error=error,
    )
    MessageResult.objects.create(
        run=run,
        uid="1",
        status="deferred",
        listener_reply=f"451 {MDA.replace('%T', 'alice')}: exited with status 75",
    )
    probe = ConnectionTest.objects.create(
        mailbox=mailbox,
        requested_by=trio.root,
        status=ConnectionTest.Status.DONE,
        ok=False,
        error=error,
        transcript=transcript,
    )
    return mailbox, run, probe


def _pages(mailbox, run, probe) -> list[str]:
    return [
        reverse("retrieval:mailbox-detail", args=[mailbox.pk]),
        reverse("retrieval:run-detail", args=[mailbox.pk, run.pk]),
        reverse("retrieval:connection-test", args=[mailbox.pk, probe.pk]),
        reverse("retrieval:connection-test-status", args=[mailbox.pk, probe.pk]),
    ]


def test_only_a_superuser_sees_command_lines(client, trio, commands_mailbox):
    _as(client, trio.bob)
    for url in _pages(*commands_mailbox):
        response = client.get(url)
        assert response.status_code == 200, url
        text = response.content.decode()
        leaked = [s for s in SECRETS if s in text]
        assert leaked == [], url
    run_page = client.get(_pages(*commands_mailbox)[1]).content.decode()
    # The shape of the poll stays readable: which step, and that it failed.
    assert f"*: preconnect: {HIDDEN}" in run_page
    assert "pre-connection command (a command run on this server" in run_page
    assert "exited with status 1" in run_page
    # A superuser sees them all.
    _as(client, trio.root)
    run_page = client.get(_pages(*commands_mailbox)[1]).content.decode()
    for secret in ("Pre5ecret", "vault.internal", "Pl4gin", "Mda-Rc-9"):
        assert secret in run_page
    assert HIDDEN not in run_page


def test_a_user_sees_no_command_line_of_their_own_mailbox_either(client, trio):
    # Their mailbox cannot run commands now, but an earlier superuser-made
    # configuration may have left such lines in its history.
    transcript, error = _engine_transcript()
    run = PollRun.objects.create(
        mailbox=trio.mailbox, transcript=transcript, error=error
    )
    text = (
        _as(client, trio.alice)
        .get(reverse("retrieval:run-detail", args=[trio.mailbox.pk, run.pk]))
        .content.decode()
    )
    assert [s for s in SECRETS if s in text] == []
