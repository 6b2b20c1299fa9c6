"""Multidrop: envelope extraction and mapping (tables), then whole polls.

The tables follow fetchmail 6.4's ``transact.c`` rules as the module docstring
of :mod:`retrieval.engine.deliver.multidrop` lists them; the polls run the engine
against the scripted POP3 server and the suite's aiosmtpd listener.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from retrieval.engine.deliver.multidrop import (
    ServerNames,
    address_list,
    find_addresses,
    header_fields,
    map_address,
    received_for,
    route,
)
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus
from retrieval.engine.run import poll
from retrieval.engine.spec import (
    DeliveryKind,
    DeliverySpec,
    MailboxSpec,
    MultidropSpec,
)
from tests.engine.conftest import make_spec
from tests.support.fake_servers import FakePop3Server

if TYPE_CHECKING:
    from tests.support.smtp_listener import SmtpListener

SERVER = "pop.isp.example"
NAMES = ServerNames(SERVER, aka=("client.example",))
SPEC = MultidropSpec(
    names=(("alice", "alice"), ("bob", "robert"), ("boss@partner.example", "carol")),
    aka=("client.example",),
)


def header(*lines: str) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode()


# --- reading the header -----------------------------------------------------------


def test_header_fields_unfold_continuations_and_keep_order() -> None:
    fields = header_fields(
        b"Received: from a\r\n\tby b\r\n  for <x@y>;\r\nTo: p@q,\r\n r@s\r\n"
        b"not a field\r\nX-Empty:\r\n"
    )
    assert [(f.name, f.value) for f in fields] == [
        ("Received", "from a by b for <x@y>;"),
        ("To", "p@q, r@s"),
        ("X-Empty", ""),
    ]


@pytest.mark.parametrize(
    ("value", "addresses"),
    [
        ("alice@client.example", ["alice@client.example"]),
        (
            '"Bob, Jr." <bob@x.example>, carol@y.example',
            ["bob@x.example", "carol@y.example"],
        ),
        ("Team: a@x.example, b@x.example;", ["a@x.example", "b@x.example"]),
        ("(just a comment)", []),
        ("undisclosed-recipients:;", []),
    ],
)
def test_address_lists(value: str, addresses: list[str]) -> None:
    assert address_list(value) == addresses


# --- parse_received ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "address"),
    [
        # The mail server's own line, with the envelope recipient.
        (
            "from out.example by pop.isp.example (Postfix) with ESMTP id 1 "
            "for <alice@client.example>; Tue, 1 Jan 2030 00:00:00 +0000",
            "alice@client.example",
        ),
        # An aka name of the server, "for" without angle brackets.
        (
            "from x by mx.client.example for bob@client.example; date",
            "bob@client.example",
        ),
        # A source route is dropped.
        (
            "from x by pop.isp.example for <@relay.example:carol@client.example>;",
            "carol@client.example",
        ),
        # Written by another host: not evidence about our envelope.
        ("from x by elsewhere.example for <alice@client.example>;", ""),
        # The server's line without "for" (several recipients): nothing.
        ("from x by pop.isp.example with ESMTP id 2; date", ""),
        # "by" followed by an address is not a host; the next "by" is used.
        (
            "from x (by joe@y.example) by pop.isp.example for <d@client.example>;",
            "d@client.example",
        ),
        ("no by at all", ""),
    ],
)
def test_received_for(value: str, address: str) -> None:
    found, why = received_for(value, NAMES)
    assert found == address, why


# --- where the recipients come from --------------------------------------------------


def addresses_from(spec: MultidropSpec, block: bytes) -> tuple[str, tuple[str, ...]]:
    found, _notes = find_addresses(header_fields(block), spec, NAMES)
    return found.source, found.addresses


MESSAGE = header(
    "Delivered-To: catchall+alice@client.example",
    "X-Original-To: alice@client.example",
    "Received: from mx by pop.isp.example for <alice@client.example>; now",
    "Received: from out by pop.isp.example for <outer@client.example>; before",
    "Delivered-To: second@client.example",
    "To: list@lists.example",
    "Cc: bob@client.example",
)


@pytest.mark.parametrize(
    ("envelope", "envskip", "source", "addresses"),
    [
        ("Received", 0, "Received", ("alice@client.example",)),
        ("Received", 1, "Received", ("outer@client.example",)),
        ("Received", 2, "To/Cc/Bcc", ("list@lists.example", "bob@client.example")),
        ("X-Original-To", 0, "X-Original-To", ("alice@client.example",)),
        ("x-original-to", 0, "x-original-to", ("alice@client.example",)),
        ("Delivered-To", 0, "Delivered-To", ("catchall+alice@client.example",)),
        ("Delivered-To", 1, "Delivered-To", ("second@client.example",)),
        ("Delivered-To", 2, "To/Cc/Bcc", ("list@lists.example", "bob@client.example")),
        ("X-Envelope-To", 0, "To/Cc/Bcc", ("list@lists.example", "bob@client.example")),
        (None, 0, "To/Cc/Bcc", ("list@lists.example", "bob@client.example")),
    ],
)
def test_envelope_sources(
    envelope: str | None, envskip: int, source: str, addresses: tuple[str, ...]
) -> None:
    spec = replace(SPEC, envelope=envelope, envskip=envskip)
    assert addresses_from(spec, MESSAGE) == (source, addresses)


def test_a_received_line_of_another_host_is_passed_over() -> None:
    block = header(
        "Received: from a by laptop.local for <me@laptop.local>; now",
        "Received: from b by pop.isp.example for <dave@client.example>; then",
    )
    assert addresses_from(SPEC, block) == ("Received", ("dave@client.example",))


def test_resent_fields_replace_the_original_recipients() -> None:
    block = header(
        "To: alice@client.example",
        "Resent-To: bob@client.example",
        "Resent-Bcc: erin@client.example",
    )
    assert addresses_from(replace(SPEC, envelope=None), block) == (
        "Resent-To/Cc/Bcc",
        ("bob@client.example", "erin@client.example"),
    )


def test_bcc_and_apparently_to_count_when_guessing() -> None:
    block = header("Bcc: dave@client.example", "Apparently-To: erin@client.example")
    assert addresses_from(replace(SPEC, envelope=None), block)[1] == (
        "dave@client.example",
        "erin@client.example",
    )


# --- one address to one local user ------------------------------------------------


@pytest.mark.parametrize(
    ("spec_changes", "address", "local"),
    [
        # names, case-blind, on a name of the mail server
        ({}, "alice@client.example", "alice"),
        ({}, "ALICE@Client.Example", "alice"),
        ({}, "bob@client.example", "robert"),
        ({}, "bob@pop.isp.example", "robert"),  # the server's own name
        ({}, "bob@mx.client.example", "robert"),  # aka matches subdomains
        ({}, "bob@notclient.example", None),  # ... but not by suffix alone
        ({}, "zed@client.example", None),  # nobody of that name
        ({}, "alice@elsewhere.example", None),  # not the mail server's domain
        ({}, "alice", None),  # no domain: ignored (fetchmail)
        # a full address in the names wins over everything
        ({}, "boss@partner.example", "carol"),
        ({}, "Boss@Partner.Example", "carol"),
        # * passes the local part of the server's domains through
        ({"wildcard": True}, "zed@client.example", "zed"),
        ({"wildcard": True}, "zed@elsewhere.example", None),
        ({"wildcard": True}, "bob@client.example", "robert"),  # names first
        # localdomains pass the whole address, before any name mapping
        (
            {"localdomains": ("client.example",)},
            "zed@client.example",
            "zed@client.example",
        ),
        (
            {"localdomains": ("client.example",)},
            "bob@client.example",
            "bob@client.example",
        ),
        (
            {"localdomains": ("client.example",)},
            "x@sub.client.example",
            "x@sub.client.example",
        ),
        ({"localdomains": ("client.example",)}, "boss@partner.example", "carol"),
        # qvirtual strips its prefix before anything else
        ({"qvirtual": "catchall+"}, "catchall+alice@client.example", "alice"),
        ({"qvirtual": "CATCHALL+"}, "catchall+bob@client.example", "robert"),
        ({"qvirtual": "catchall+"}, "catchall+zed@client.example", None),
        (
            {"qvirtual": "catchall+", "wildcard": True},
            "catchall+zed@client.example",
            "zed",
        ),
    ],
)
def test_mapping(
    spec_changes: dict[str, object], address: str, local: str | None
) -> None:
    spec = replace(SPEC, **spec_changes)  # type: ignore[arg-type]
    match = map_address(address, spec, NAMES)
    assert match.local == local, match.rule
    assert match.rule


class FakeResolver:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def canonical_name(self, name: str) -> str | None:
        self.asked.append(name)
        return {"mail.client.example": "pop.isp.example"}.get(name)

    def addresses(self, name: str) -> set[str]:
        self.asked.append(name)
        return {"pop.isp.example": {"192.0.2.1"}, "mx2.example": {"192.0.2.1"}}.get(
            name, set()
        )


def test_dns_and_checkalias_are_asked_only_when_configured() -> None:
    resolver = FakeResolver()
    plain = ServerNames(SERVER, resolver=None)
    assert not plain.why("mail.client.example")
    with_dns = ServerNames(SERVER, resolver=resolver)
    assert with_dns.why("mail.client.example")
    assert not with_dns.why("mx2.example")
    with_alias = ServerNames(SERVER, resolver=resolver, checkalias=True)
    assert with_alias.why("mx2.example")
    assert with_alias.why("mx2.example")  # remembered, not asked again
    assert resolver.asked.count("mx2.example") == 3  # 1 canonical + 2 addresses


# --- whole routing decisions ------------------------------------------------------


def test_route_delivers_each_recipient_once_and_explains_itself() -> None:
    block = header(
        "To: alice@client.example, Alice <ALICE@client.example>",
        "Cc: bob@client.example, stranger@elsewhere.example",
    )
    routing = route(block, replace(SPEC, envelope=None), NAMES, ("postmaster",))
    assert routing.recipients == ("alice", "robert")
    assert not routing.to_postmaster
    text = "\n".join(routing.describe())
    assert "recipients from To/Cc/Bcc (header guess)" in text
    assert "stranger@elsewhere.example -> not ours" in text
    assert "deliver to alice, robert" in text


def test_route_sends_unmatched_mail_to_the_postmaster() -> None:
    routing = route(
        header("To: nobody@client.example"),
        replace(SPEC, envelope=None),
        NAMES,
        ("pm",),
    )
    assert routing.recipients == ("pm",)
    assert routing.to_postmaster
    assert "no recipient matched; to pm" in "\n".join(routing.describe())


def test_route_never_passes_an_unusable_address_to_the_listener() -> None:
    spec = replace(SPEC, envelope=None, localdomains=("client.example",))
    for hostile in (
        "a\x01b@client.example",
        "x..y@client.example",
        "caf\xe9@client.example",
    ):
        routing = route(header(f"To: {hostile}"), spec, NAMES, ("pm",))
        assert routing.recipients == ("pm",), hostile
        assert "not a usable address" in routing.matches[0].rule


def test_an_envelope_that_matches_nobody_does_not_fall_back_to_guessing() -> None:
    block = header("X-Original-To: nobody@client.example", "To: alice@client.example")
    routing = route(block, replace(SPEC, envelope="X-Original-To"), NAMES, ("pm",))
    assert routing.recipients == ("pm",)


# --- whole polls --------------------------------------------------------------------


def multidrop_spec(
    pop: FakePop3Server, listener: SmtpListener, **multidrop: object
) -> MailboxSpec:
    spec = make_spec(pop)
    return replace(
        spec,
        server=replace(spec.server, host=SERVER),
        delivery=DeliverySpec(
            kind=DeliveryKind.SMTP,
            hosts=(f"{listener.host}/{listener.port}",),
            smtpaddress="client.example",
            postmaster="postmaster",
            timeout=5,
        ),
        multidrop=replace(SPEC, **multidrop),  # type: ignore[arg-type]
    )


def msg(n: int, *lines: str, message_id: str | None = None) -> bytes:
    mid = message_id or f"<m{n}@sender.example>"
    return header(f"Message-ID: {mid}", f"Subject: test {n}", *lines) + b"\r\nbody\r\n"


def test_a_poll_routes_every_message_and_suppresses_copies(
    smtp_listener: SmtpListener,
) -> None:
    copies = [
        # One message to alice, bob and an unknown user, as three envelope copies.
        msg(
            1,
            "X-Original-To: alice@client.example",
            "To: alice@client.example, bob@client.example, zed@client.example",
        ),
        msg(
            1,
            "X-Original-To: bob@client.example",
            "To: alice@client.example, bob@client.example, zed@client.example",
        ),
        msg(
            1,
            "X-Original-To: zed@client.example",
            "To: alice@client.example, bob@client.example, zed@client.example",
        ),
        # The same message again (a list copy) for alice: not twice.
        msg(1, "X-Original-To: alice@client.example", "List-Id: <team.lists.example>"),
        # No envelope field: guessed from the header.
        msg(2, "To: bob@client.example", "Cc: alice@client.example"),
    ]
    with FakePop3Server(copies) as pop:
        spec = multidrop_spec(pop, smtp_listener, envelope="X-Original-To")
        transcript = ListTranscript()
        report = poll(spec, ledger=MemoryLedger(), transcript=transcript)
    assert report.exit_code is ExitCode.SUCCESS, report.error
    got = [
        (r.rcpt_tos, r.data.split(b"Subject: ")[1][:6]) for r in smtp_listener.messages
    ]
    assert got == [
        (["alice@client.example"], b"test 1"),
        (["robert@client.example"], b"test 1"),
        (["postmaster@client.example"], b"test 1"),
        (["robert@client.example", "alice@client.example"], b"test 2"),
    ]
    assert all(m.status is MessageStatus.DELIVERED for m in report.messages)
    assert all(m.deleted for m in report.messages)  # the duplicate too
    text = transcript.text()
    assert "multidrop: recipients from X-Original-To (envelope)" in text
    assert "zed@client.example -> not ours" in text
    assert "no recipient matched; to postmaster" in text
    assert "alice already got <m1@sender.example> in this poll: not again" in text
    assert "recipients from To/Cc/Bcc (header guess)" in text
    assert b"(multi-drop)" in smtp_listener.messages[0].data


def test_header_guessing_delivers_one_of_several_identical_copies(
    smtp_listener: SmtpListener,
) -> None:
    same = msg(3, "To: alice@client.example, bob@client.example")
    with FakePop3Server([same, same]) as pop:
        spec = multidrop_spec(pop, smtp_listener, envelope=None)
        report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
    assert len(smtp_listener.messages) == 1
    assert [m.deleted for m in report.messages] == [True, True]


def test_duplicate_suppression_can_be_turned_off(smtp_listener: SmtpListener) -> None:
    same = msg(3, "To: alice@client.example")
    with FakePop3Server([same, same]) as pop:
        spec = multidrop_spec(
            pop, smtp_listener, envelope=None, suppress_duplicates=False
        )
        poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
    assert len(smtp_listener.messages) == 2


def test_a_copy_the_listener_deferred_is_not_a_duplicate(
    smtp_listener: SmtpListener,
) -> None:
    smtp_listener.fail_at("RCPT", 451, times=1)
    same = msg(4, "To: alice@client.example")
    with FakePop3Server([same, same]) as pop:
        spec = multidrop_spec(pop, smtp_listener, envelope=None)
        report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
    assert [m.status for m in report.messages] == [
        MessageStatus.DEFERRED,
        MessageStatus.DELIVERED,
    ]
    assert len(smtp_listener.messages) == 1


def test_without_a_postmaster_unmatched_mail_goes_to_the_mailbox_user(
    smtp_listener: SmtpListener,
) -> None:
    with FakePop3Server([msg(5, "To: nobody@elsewhere.example")]) as pop:
        spec = multidrop_spec(pop, smtp_listener, envelope=None)
        spec = replace(spec, delivery=replace(spec.delivery, postmaster=""))
        report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
    assert report.exit_code is ExitCode.SUCCESS
    assert smtp_listener.messages[0].rcpt_tos == ["joe@client.example"]


def test_dropdelivered_removes_the_envelope_field_after_routing(
    smtp_listener: SmtpListener,
) -> None:
    raw = msg(6, "Delivered-To: catchall+bob@client.example", "To: x@y.example")
    with FakePop3Server([raw]) as pop:
        spec = multidrop_spec(
            pop, smtp_listener, envelope="Delivered-To", qvirtual="catchall+"
        )
        spec = replace(spec, message=replace(spec.message, dropdelivered=True))
        poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
    (received,) = smtp_listener.messages
    assert received.rcpt_tos == ["robert@client.example"]
    assert b"Delivered-To" not in received.data


# --- from an rcfile -------------------------------------------------------------------


def test_rcfile_multidrop_options_become_the_spec() -> None:
    from retrieval.rcfile import Environment, parse_text, to_mailbox_specs

    rc = (
        'poll pop.isp.example proto pop3 envelope 2 "X-Envelope-To" qvirtual "vd-"\n'
        "  localdomains client.example aka mx.isp.example dns checkalias\n"
        '  user "box" pass "pw" is alice "boss@partner.example"=carol * here\n'
        'poll single.example proto pop3 no envelope user "me" pass "pw" is joe here\n'
        "poll etrn.example proto etrn fetchdomains a.example b.example\n"
    )
    multi, single, etrn = to_mailbox_specs(parse_text(rc), Environment.fixed("root"))
    assert multi.multidrop == MultidropSpec(
        names=(("alice", "alice"), ("boss@partner.example", "carol")),
        wildcard=True,
        envelope="X-Envelope-To",
        envskip=2,
        qvirtual="vd-",
        localdomains=("client.example",),
        aka=("mx.isp.example",),
        dns=True,
        checkalias=True,
    )
    assert not any(key in ("envelope", "localnames", "aka") for key, _ in multi.extra)
    assert single.multidrop is None
    assert etrn.fetchdomains == ("a.example", "b.example")
    default = to_mailbox_specs(
        parse_text('poll x.example user "b" pass "p" is a b here\n'),
        Environment.fixed("root"),
    )[0]
    assert default.multidrop is not None
    assert default.multidrop.envelope == "Received"
    assert not default.multidrop.dns  # fetchmail's default-on DNS is opt-in here


def test_polls_on_a_kept_listener_connection_route_as_polls_that_connect(
    smtp_listener: SmtpListener,
) -> None:
    """Multidrop through a listener connection kept between polls
    (deliver/kept_listeners.py): each message's own envelope on the one
    connection, the same recipients as when every poll connects."""
    from retrieval.engine.deliver.kept_listeners import KeptListeners

    def two_polls(listeners: KeptListeners | None) -> tuple[list[list[str]], int]:
        """The recipients of each message of two polls, and the connections."""
        before = len(smtp_listener.messages), smtp_listener.connections
        for n, line in ((1, "X-Original-To: alice@client.example"), (2, "")):
            lines = [line] if line else ["To: bob@client.example"]
            with FakePop3Server([msg(n, *lines)]) as pop:
                spec = multidrop_spec(pop, smtp_listener, envelope="X-Original-To")
                report = poll(
                    spec,
                    ledger=MemoryLedger(),
                    transcript=ListTranscript(),
                    listeners=listeners,
                )
                assert report.exit_code is ExitCode.SUCCESS, report.error
        routed = [m.rcpt_tos for m in smtp_listener.messages[before[0] :]]
        return routed, smtp_listener.connections - before[1]

    listeners = KeptListeners(300)
    expected = [["alice@client.example"], ["robert@client.example"]]
    assert two_polls(None) == (expected, 2)
    assert two_polls(listeners) == (expected, 1)
    listeners.close_all()
