"""The rcfile shapes of multidrop give fetchweb the routing fetchmail 6.4 gives.

One catch-all mailbox, filled the same way before each tool runs; the same
rcfile (``localdomains``, ``envelope``, ``qvirtual``, ``aka``, ``is * here``,
``no envelope``) is run by fetchmail (as in tests/rcfile/oracle.py: as an
unprivileged user, rcfile mode 0600) and by our engine through
``retrieval.rcfile``; both deliver to the SMTP listener, and the recipients of
each Message-ID must be the same.

Compared as sets: when one message sits in the mailbox several times, fetchmail
delivers each copy while fetchweb gives each recipient one (see
:mod:`retrieval.engine.deliver.multidrop`), so counts differ on purpose; the messages
below are all distinct. Every shape says ``no dns``: a test resolves nothing.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import pytest

from retrieval.engine.deliver.headers import message_id
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.run import poll
from retrieval.rcfile import Environment, parse_text, to_mailbox_specs
from tests.live.test_cli_vs_fetchmail import md5_fingerprint
from tests.rcfile.oracle import FETCHMAIL, Oracle, have_fetchmail

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.support.dovecot import Dovecot, MailUser
    from tests.support.smtp_listener import SmtpListener

pytestmark = [pytest.mark.live, pytest.mark.fetchmail]


def msg(n: int, *lines: str) -> bytes:
    head = [f"Message-ID: <d{n}@outside.example>", "From: sam@outside.example"]
    return ("\r\n".join([*head, *lines, f"Subject: {n}"]) + "\r\n\r\nhi\r\n").encode()


MAILBOX = [
    msg(
        1,
        "Delivered-To: catchall+alice@client.example",
        "X-Original-To: alice@client.example",
        "Received: from out.example by mx.client.example (Postfix) with ESMTP id A1"
        "\r\n\tfor <alice@client.example>; Tue, 1 Jan 2030 00:00:00 +0000",
        "To: alice@client.example, bob@client.example",
    ),
    msg(
        2,
        "Delivered-To: catchall+bob@client.example",
        "X-Original-To: bob@client.example",
        "Received: from laptop by laptop.local for <me@laptop.local>; now",
        "Received: from out by mx.client.example for <bob@client.example>; now",
        "To: list@lists.example",
    ),
    msg(
        3,
        'To: "Carol C." <carol@client.example>',
        "Cc: dave@partner.example, zed@client.example",
    ),
    msg(4, "To: alice@client.example", "Resent-To: erin@client.example"),
    msg(
        5,
        "Delivered-To: CATCHALL+Erin@Client.Example",
        "X-Original-To: Erin@Client.Example",
        "To: undisclosed-recipients:;",
    ),
    msg(
        6,
        "Delivered-To: catchall+nobody@client.example",
        "X-Original-To: nobody@client.example",
        "To: nobody@elsewhere.example",
    ),
    msg(7, "Bcc: dave@client.example", "To: carol@mx.client.example"),
    # A bare local name with a comment: fetchmail's rewrite makes it carol's.
    msg(8, "To: alice@client.example, carol (Carol C.)"),
]

SHAPES = {
    "delivered-to+qvirtual": (
        'envelope "Delivered-To" qvirtual "catchall+" aka client.example',
        "is alice bob carol erin here",
    ),
    "x-original-to+localdomains+wildcard": (
        'envelope "X-Original-To" localdomains client.example',
        "is * here",
    ),
    "received+aka": (
        "aka mx.client.example client.example",
        "is alice bob carol dave here",
    ),
    "no-envelope+names+wildcard": (
        "no envelope aka client.example",
        "is alice bob carol erin * here",
    ),
}


@pytest.fixture(scope="module")
def fetchmail_home() -> Iterator[Oracle]:
    if not have_fetchmail():
        pytest.skip("the fetchmail binary is not installed")
    home = Oracle()
    yield home
    home.close()


def rcfile(dovecot: Dovecot, box: MailUser, listener: SmtpListener, shape: str) -> str:
    server_options, localnames = SHAPES[shape]
    return (
        'set postmaster "postmaster"\nset no bouncemail\n'
        f"poll localhost proto imap port {dovecot.imaps_port} no dns {server_options}\n"
        f'    user "{box.name}" there with password "{box.password}" {localnames}\n'
        f'    ssl sslfingerprint "{md5_fingerprint(dovecot.cert_file)}" no sslcertck\n'
        f"    smtphost {listener.host}/{listener.port} smtpaddress client.example\n"
    )


def routing(listener: SmtpListener) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for m in listener.messages:
        seen[message_id(m.data)].update(r.lower() for r in m.rcpt_tos)
    return dict(seen)


def refill(dovecot: Dovecot, box: MailUser, listener: SmtpListener) -> None:
    listener.clear()
    dovecot.doveadm("expunge", "-u", box.name, "mailbox", "INBOX", "all")
    for raw in MAILBOX:
        dovecot.put(box.name, raw)


def run_fetchmail(home: Oracle, rc: str) -> subprocess.CompletedProcess[str]:
    path = home.write(rc.encode(), "multidrop.rc")
    kwargs: dict[str, Any] = {}
    if home.as_root:
        kwargs = {"user": home.pw.pw_uid, "group": home.pw.pw_gid, "extra_groups": []}
    return subprocess.run(
        [FETCHMAIL, "-f", str(path), "--nosyslog", "-d0", "-i", f"{home.dir}/ids"],
        cwd=home.dir,
        env=home.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_same_recipients_per_message_as_fetchmail(
    shape: str,
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    fetchmail_home: Oracle,
) -> None:
    rc = rcfile(dovecot, mailuser, smtp_listener, shape)
    refill(dovecot, mailuser, smtp_listener)
    done = run_fetchmail(fetchmail_home, rc)
    assert done.returncode == 0, done.stdout + done.stderr
    theirs = routing(smtp_listener)

    refill(dovecot, mailuser, smtp_listener)
    (spec,) = to_mailbox_specs(parse_text(rc), Environment.fixed(fetchmail_home.user))
    assert spec.multidrop is not None
    transcript = ListTranscript()
    report = poll(spec, ledger=MemoryLedger(), transcript=transcript)
    ours = routing(smtp_listener)

    assert report.error == "", report.error
    assert len(theirs) == len(MAILBOX)
    assert ours == theirs, transcript.text()
    assert {r for rcpts in ours.values() for r in rcpts} - {
        "postmaster@client.example"
    }, "everything went to the postmaster: the shape tests nothing"
    assert dovecot.messages(mailuser.name) == []


def test_a_message_every_recipient_refuses_goes_where_fetchmail_sends_it(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    fetchmail_home: Oracle,
) -> None:
    raw = msg(9, "To: erin@client.example, zoe@client.example")

    def refill_and_refuse() -> None:
        smtp_listener.clear()
        dovecot.doveadm("expunge", "-u", mailuser.name, "mailbox", "INBOX", "all")
        dovecot.put(mailuser.name, raw)
        for who in ("erin@client.example", "zoe@client.example"):
            smtp_listener.fail_at("RCPT", "550 5.1.1 No such user", rcpt=who)

    rc = rcfile(dovecot, mailuser, smtp_listener, "no-envelope+names+wildcard")
    refill_and_refuse()
    done = run_fetchmail(fetchmail_home, rc)
    theirs = routing(smtp_listener)
    theirs_left = len(dovecot.messages(mailuser.name))

    refill_and_refuse()
    (spec,) = to_mailbox_specs(parse_text(rc), Environment.fixed(fetchmail_home.user))
    report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
    ours = routing(smtp_listener)

    mid = "<d9@outside.example>"
    assert theirs[mid] == {"postmaster@client.example"}, done.stdout + done.stderr
    assert ours[mid] == theirs[mid], report.notes
    assert theirs_left == len(dovecot.messages(mailuser.name)) == 0
