"""Transcript masking that cannot reveal (issue 10, item 6).

The sender masks the argument it knows is secret; nothing else is ever
substring-replaced. A line that carries a secret in any form (itself, its
IMAP quoted form, its bytes in base64 at any alignment) is replaced whole by a
fixed note, and server challenges during AUTH are recorded masked. The
servers here are fakes because they misbehave on purpose: they echo what we
sent them, which no sane server does.
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrieval.engine.memory import ListTranscript, MemoryLedger, NullTranscript
from retrieval.engine.redact import (
    MASK,
    WITHHELD,
    WITHHELD_TEXT,
    RedactingTranscript,
    SecretMatcher,
)
from retrieval.engine.run import poll
from retrieval.engine.spec import MailProtocol
from tests.support.fake_servers import FakeImapServer, FakePop3Server, FakeSmtpServer

from .conftest import PASSWORD, make_spec, message

if TYPE_CHECKING:
    from retrieval.engine.ports import Direction
    from retrieval.engine.report import PollReport
    from tests.support.fake_servers import FakeClient

SHORT = ["mail", "a"]
TRICKY = 'pa"ss\\w0rd'  # needs IMAP quoting escapes
NON_ASCII = "m\u00e4il"  # goes as an IMAP literal
# A user name of 1, 2 or 3 characters puts the password at byte offset 3, 4
# or 5 of the PLAIN blob "\0user\0password": alignments 0, 1 and 2 in base64.
USERS = ["j", "jo", "joe"]


def plain_blob(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def partial_masks(text: str) -> list[str]:
    """A mask glued to other characters shows where the secret sat."""
    return re.findall(rf"\S{re.escape(MASK)}|{re.escape(MASK)}[^\s\"']", text)


def everything(report: PollReport, transcript: ListTranscript) -> str:
    parts = [text for _, text in transcript.lines]
    parts += [report.error, report.greeting, *report.notes]
    parts += [m.listener_reply for m in report.messages]
    return "\n".join(parts)


# -- the masking itself --------------------------------------------------------


@pytest.mark.parametrize("password", SHORT)
def test_a_short_password_is_never_shown_as_a_partial_mask(password: str) -> None:
    lines = ListTranscript()
    wire = RedactingTranscript(lines, [password])
    wire.record("S", "+OK mailbox server ready")
    wire.record("C", "USER joe")
    wire.record("C", f"PASS {MASK}")  # as the session records it
    wire.record("S", "+OK logged in")
    recorded = [text for _, text in lines.lines]
    assert partial_masks("\n".join(recorded)) == []
    assert "********box" not in "\n".join(recorded)
    # Each line is either what was said, or the fixed note instead of it.
    said = ["+OK mailbox server ready", "USER joe", f"PASS {MASK}", "+OK logged in"]
    for (direction, text), original in zip(lines.lines, said, strict=True):
        assert text in (original, WITHHELD[direction])
        assert (text == original) == (password not in original)
    assert wire.mask("mailbox full") == (
        WITHHELD_TEXT if password in "mailbox full" else "mailbox full"
    )


@pytest.mark.parametrize("password", [*SHORT, TRICKY, PASSWORD, "s3cret-long-enough"])
@pytest.mark.parametrize("user", USERS)
def test_an_echoed_plain_blob_is_withheld_at_every_alignment(
    user: str, password: str
) -> None:
    blob = plain_blob(user, password)
    matcher = SecretMatcher([password])
    for echoed in (
        f"-ERR [AUTH] you sent {blob}",
        f"+ {blob.rstrip('=')}",
        f"a1 NO [ALERT] got x{blob}y",  # glued to other base64 characters
        f"* NO {blob[4:]}",  # the blob without its first group
    ):
        assert matcher.found_in(echoed), (user, password, echoed)
        lines = ListTranscript()
        RedactingTranscript(lines, [password]).record("S", echoed)
        assert lines.lines == [("S", WITHHELD["S"])]


def test_unrelated_base64_is_kept() -> None:
    matcher = SecretMatcher(["s3cret-long-enough"])
    other = base64.b64encode(b"\0joe\0something-else").decode()
    assert not matcher.found_in(f"-ERR you sent {other}")
    assert not matcher.found_in("+OK Dovecot (Debian) ready.")


@pytest.mark.parametrize("password", [TRICKY, NON_ASCII, "mail"])
def test_imap_quoted_and_literal_echoes_are_withheld(password: str) -> None:
    quoted = '"' + password.replace("\\", "\\\\").replace('"', '\\"') + '"'
    literal = f"{{{len(password.encode())}}}"
    matcher = SecretMatcher([password])
    assert matcher.found_in(f"* NO LOGIN joe {quoted} refused")
    assert matcher.found_in(password)  # the line after "{n}" is the literal itself
    assert not matcher.found_in(f"* NO LOGIN joe {literal} refused")


def test_server_challenges_during_auth_are_masked() -> None:
    lines = ListTranscript()
    wire = RedactingTranscript(lines, ["s3cret-long-enough"])
    wire.record("C", "A1 AUTHENTICATE CRAM-MD5")
    wire.record("S", "+ PDQ3MTEuMTIzNDU2Nzg5MEBmYWtlLmV4YW1wbGU+")
    wire.record("C", MASK)
    wire.record("S", "A1 OK logged in")
    wire.record("S", "+ not a challenge any more")
    wire.record("C", f"AUTH LOGIN {MASK}")
    wire.record("S", "334 UGFzc3dvcmQ6")
    wire.record("S", "235 2.7.0 ok")
    assert [text for _, text in lines.lines] == [
        "A1 AUTHENTICATE CRAM-MD5",
        f"+ {MASK}",
        MASK,
        "A1 OK logged in",
        "+ not a challenge any more",
        f"AUTH LOGIN {MASK}",
        f"334 {MASK}",
        "235 2.7.0 ok",
    ]


# -- whole polls against servers that echo -------------------------------------


class EchoingPop3(FakePop3Server):
    """Sends back whatever came with PASS or AUTH, in the refusal."""

    def _login(self, client: FakeClient, verb: str, arg: str, user: str) -> bool:
        if verb in ("PASS", "AUTH"):
            client.send(f"-ERR [AUTH] you sent {arg}\r\n")
            return False
        return super()._login(client, verb, arg, user)


class EchoingImap(FakeImapServer):
    """Sends back the LOGIN arguments (quoted strings, literals inlined)."""

    def _login(self, client: FakeClient, verb: str, arg: str) -> bool:
        client.send(f"* NO [ALERT] you sent {arg}\r\n")
        return False


@pytest.mark.parametrize("password", [*SHORT, TRICKY])
@pytest.mark.parametrize("user", USERS)
def test_a_pop3_server_echoing_the_plain_blob_leaks_nothing(
    user: str, password: str
) -> None:
    server = EchoingPop3(user=user, capabilities=["UIDL", "SASL PLAIN"])
    with server, FakeSmtpServer() as listener:
        transcript = ListTranscript()
        spec = make_spec(
            server, listener, password=password, auth="plain", username=user
        )
        report = poll(spec, ledger=MemoryLedger(), transcript=transcript)
    text = everything(report, transcript)
    blob = plain_blob(user, password)
    assert any(blob in c for c in server.commands)  # it really was echoed
    assert blob not in text and blob.rstrip("=") not in text
    assert partial_masks(text) == []
    assert WITHHELD["S"] in text


@pytest.mark.parametrize("password", ["mail", TRICKY, NON_ASCII])
def test_an_imap_server_echoing_login_leaks_nothing(password: str) -> None:
    server = EchoingImap(capabilities=["IMAP4rev1"])
    with server, FakeSmtpServer() as listener:
        transcript = ListTranscript()
        spec = make_spec(
            server, listener, password=password, protocol=MailProtocol.IMAP
        )
        report = poll(spec, ledger=MemoryLedger(), transcript=transcript)
    text = everything(report, transcript)
    assert password not in text
    assert password.replace("\\", "\\\\").replace('"', '\\"') not in text
    assert partial_masks(text) == []
    assert WITHHELD["S"] in text


@pytest.mark.parametrize("password", SHORT)
def test_a_short_password_leaves_no_partial_mask_in_a_real_poll(
    password: str,
) -> None:
    greeting = b"+OK mailbox server ready\r\n"
    server = FakePop3Server([message(1)], password=password, greeting=greeting)
    with server, FakeSmtpServer() as listener:
        transcript = ListTranscript()
        spec = make_spec(server, listener, password=password)
        report = poll(spec, ledger=MemoryLedger(), transcript=transcript)
    assert report.delivered == 1, report.error
    text = everything(report, transcript)
    assert partial_masks(text) == [], text
    assert report.greeting in ("+OK mailbox server ready", WITHHELD_TEXT)
    assert ("C", f"PASS {MASK}") in transcript.lines


@given(
    secret=st.text(min_size=1, max_size=12).filter(lambda s: "\0" not in s),
    prefix=st.binary(max_size=6),
    suffix=st.binary(max_size=6),
    cut=st.integers(min_value=0, max_value=3),
    urlsafe=st.booleans(),
)
def test_the_base64_shortcut_finds_what_decoding_every_run_finds(
    secret: str, prefix: bytes, suffix: bytes, cut: int, urlsafe: bool
) -> None:
    """The matcher skips decoding runs without one of a secret's base64 cores;
    it must answer exactly as decoding every run does, hidden secret or not."""
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    with_secret = encode(prefix + secret.encode() + suffix).decode()[cut:]
    without = encode(prefix + suffix).decode()[cut:]
    for text in (f"334 {with_secret}", f"+ {without}", f"a {with_secret}=x"):
        fast = SecretMatcher([secret])
        thorough = SecretMatcher([secret])
        thorough._cores = None  # decode every run
        assert fast.found_in(text) == thorough.found_in(text)
    assert SecretMatcher([secret]).found_in(
        f"334 {encode(prefix + secret.encode() + suffix).decode()}"
    )


class _NotToBeFed(NullTranscript):
    """Says it keeps nothing, and fails the test if it is given a line anyway."""

    def record(self, direction: Direction, text: str) -> None:
        raise AssertionError(f"a line was formatted for nobody: {text!r}")


def test_a_transcript_that_keeps_nothing_is_given_nothing() -> None:
    """The command line without -v: no line is decoded, checked or formatted
    for it, on either connection, and the poll reports the same."""
    with (
        FakePop3Server([message(1), message(2)]) as server,
        FakeSmtpServer() as listener,
    ):
        report = poll(
            make_spec(server, listener), ledger=MemoryLedger(), transcript=_NotToBeFed()
        )
    assert report.delivered == 2, report.error
    assert len(listener.received) == 2 and server.mailbox == []
