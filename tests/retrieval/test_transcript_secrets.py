"""What a poll stores and logs when the server echoes the credential back
(issue 10, item 6): the stored run, its error and the worker log carry no
form of the secret and no partial mask. The server is a fake because echoing
the client's AUTH blob is exactly the misbehaviour under test.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING

import pytest

from retrieval import services
from retrieval.engine.redact import WITHHELD
from retrieval.models import PollRun
from tests.engine.test_transcript_masking import EchoingPop3, partial_masks
from tests.factories import make_mailbox, make_user
from tests.support.fake_servers import FakeSmtpServer

if TYPE_CHECKING:
    from pytest import LogCaptureFixture

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("user", ["j", "jo", "joe"])
@pytest.mark.parametrize("password", ["mail", 'pa"ss\\w0rd'])
def test_an_echoed_plain_blob_reaches_neither_the_run_nor_the_log(
    user: str, password: str, caplog: LogCaptureFixture
) -> None:
    blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    server = EchoingPop3(user=user, capabilities=["UIDL", "SASL PLAIN"])
    with server, FakeSmtpServer() as listener, caplog.at_level(logging.INFO):
        mailbox = make_mailbox(
            make_user(superuser=True),
            password=password,
            protocol="pop3",
            host="127.0.0.1",
            port=server.port,
            tls_mode="none",
            auth="plain",
            username=user,
            delivery_host="127.0.0.1",
            delivery_port=listener.port,
            recipient="alice@example.org",
            timeout=5,
        )
        summary = services.mailbox_poll(mailbox_id=mailbox.pk)
    assert summary.run_id is not None
    run = PollRun.objects.get(pk=summary.run_id)
    assert any(blob in c for c in server.commands)  # it really was echoed
    stored = "\n".join(
        [run.transcript, run.error, run.greeting, caplog.text, summary.error]
    )
    assert blob not in stored and blob.rstrip("=") not in stored
    # "mail" is in our own words ("mailbox 1 polled"); the long one is not.
    assert len(password) < 5 or password not in stored
    assert partial_masks(stored) == []
    assert WITHHELD["S"] in run.transcript
