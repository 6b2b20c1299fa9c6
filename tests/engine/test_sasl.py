"""SASL mechanisms, the choice among them, and the dialogue rules (no network)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from retrieval.engine.errors import (
    AuthError,
    ConfigError,
    EngineError,
    ProtocolError,
    SaslError,
)
from retrieval.engine.wire import sasl


def test_plain_sends_everything_at_once() -> None:
    mech = sasl.Plain("joe", "pw")
    assert mech.initial() == b"\0joe\0pw"
    with pytest.raises(SaslError):
        mech.respond(b"more?")


def test_login_answers_user_then_password_then_nothing() -> None:
    mech = sasl.Login("joe", "pw")
    assert [mech.respond(b"Username:"), mech.respond(b"Password:")] == [b"joe", b"pw"]
    with pytest.raises(SaslError):
        mech.respond(b"Again:")


def test_cram_md5_answers_one_nonempty_challenge() -> None:
    mech = sasl.CramMd5("joe", "pw")
    challenge = b"<1.2@host>"
    digest = hmac.new(b"pw", challenge, hashlib.md5).hexdigest()
    assert mech.respond(challenge) == f"joe {digest}".encode()
    with pytest.raises(SaslError):
        mech.respond(challenge)
    with pytest.raises(SaslError):
        sasl.CramMd5("joe", "pw").respond(b"")


def test_token_mechanisms_carry_the_token_and_read_the_error() -> None:
    xoauth = sasl.XOAuth2("joe@example.org", "T0K")
    assert xoauth.initial() == b"user=joe@example.org\x01auth=Bearer T0K\x01\x01"
    assert xoauth.respond(b'{"status":"400","scope":"x"}') == b""
    assert xoauth.failure_detail == "status 400, scope x"
    bearer = sasl.OAuthBearer("a,b=c", "T0K", "imap.example.org", 993)
    assert bearer.initial() == (
        b"n,a=a=2Cb=3Dc,\x01host=imap.example.org\x01port=993\x01"
        b"auth=Bearer T0K\x01\x01"
    )
    assert bearer.respond(b"not json") == b"\x01"
    assert bearer.failure_detail == "unreadable error details"


def test_external_sends_an_empty_authorization_identity() -> None:
    assert sasl.External().initial() == b""


@pytest.mark.parametrize(
    ("text", "data"),
    [("", b""), ("=", b""), ("PDEuMkBob3N0Pg==", b"<1.2@host>")],
)
def test_it_decodes_challenges(text: str, data: bytes) -> None:
    assert sasl.decode(text) == data


@pytest.mark.parametrize(
    "text", ["!!!", "abc", "QUFB" * 2000, "QUFB\x00"], ids=["junk", "pad", "big", "nul"]
)
def test_it_refuses_bad_challenges(text: str) -> None:
    with pytest.raises(SaslError):
        sasl.decode(text)


def offer(*names: str, cleartext: tuple[str, ...] = (sasl.USER_PASS,)) -> sasl.Offer:
    return sasl.Offer(sasl=frozenset(names), cleartext=cleartext)


@pytest.mark.parametrize(
    ("auth", "server", "cert", "expected"),
    [
        ("any", offer("PLAIN", "CRAM-MD5"), False, ["CRAM-MD5", "PLAIN"]),
        (
            "any",
            offer("EXTERNAL", "CRAM-MD5"),
            True,
            ["EXTERNAL", "CRAM-MD5", "USER/PASS"],
        ),
        ("any", offer("EXTERNAL"), False, ["USER/PASS"]),
        ("any", offer("XOAUTH2", "OAUTHBEARER"), False, ["USER/PASS"]),
        ("any", offer(), False, ["USER/PASS"]),
        ("password", offer("CRAM-MD5"), False, ["USER/PASS"]),
        ("password", offer("PLAIN"), False, ["PLAIN"]),
        ("cram-md5", offer("CRAM-MD5", "PLAIN"), False, ["CRAM-MD5"]),
        ("XOAUTH2", offer("XOAUTH2"), False, ["XOAUTH2"]),
        ("external", offer("EXTERNAL"), True, ["EXTERNAL"]),
    ],
)
def test_it_plans_strongest_first_and_never_below_the_configuration(
    auth: str, server: sasl.Offer, cert: bool, expected: list[str]
) -> None:
    assert sasl.plan(auth, server, client_cert=cert) == expected


def test_it_refuses_before_sending_anything() -> None:
    with pytest.raises(AuthError, match="does not offer CRAM-MD5"):
        sasl.plan("cram-md5", offer("PLAIN"), client_cert=False)
    with pytest.raises(AuthError, match="LOGINDISABLED"):
        sasl.plan(
            "any",
            sasl.Offer(sasl=frozenset(), cleartext=(), logindisabled=True),
            client_cert=False,
        )
    with pytest.raises(AuthError, match="no APOP timestamp"):
        sasl.plan("apop", offer(), client_cert=False)
    with pytest.raises(ConfigError, match="client certificate"):
        sasl.plan("external", offer("EXTERNAL"), client_cert=False)
    with pytest.raises(ConfigError, match="NTLM is not supported"):
        sasl.plan("ntlm", offer("NTLM"), client_cert=False)
    with pytest.raises(ConfigError, match="GSSAPI authentication is not available"):
        sasl.plan("gssapi", offer("GSSAPI"), client_cert=False)


def test_apop_digest_and_timestamp_checks() -> None:
    greeting = "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>"
    # RFC 1939's own example.
    assert sasl.apop_digest(greeting, "tanstaaf") == "c4c9334bac560ecc979e58001b3e22fb"
    for bad in ("+OK <no-at-sign>", "+OK <a@b c>", "+OK <@host>", "+OK no stamp"):
        with pytest.raises(AuthError):
            sasl.apop_digest(bad, "pw")


class ScriptedWire:
    """A server's side of one exchange, as a list of replies."""

    def __init__(self, replies: list[sasl.Reply]) -> None:
        self.replies = replies
        self.sent: list[str] = []

    def start(self, name: str, initial: str | None) -> None:
        self.sent.append(f"START {name} {initial}")

    def answer(self, line: str) -> None:
        self.sent.append(line)

    def cancel(self) -> None:
        self.sent.append("*")

    def read(self) -> sasl.Reply:
        return self.replies.pop(0)

    def refusal(self, text: str) -> EngineError:
        return AuthError(f"refused: {text}")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_the_exchange_sends_a_client_first_message_after_an_empty_challenge() -> None:
    wire = ScriptedWire([sasl.Reply("continue", ""), sasl.Reply("ok", "")])
    sasl.exchange(sasl.Plain("joe", "pw"), wire, initial_response=False)
    assert wire.sent == ["START PLAIN None", b64(b"\0joe\0pw")]


def test_the_exchange_uses_the_initial_response_when_allowed() -> None:
    wire = ScriptedWire([sasl.Reply("ok", "")])
    sasl.exchange(sasl.Plain("joe", "pw"), wire, initial_response=True)
    assert wire.sent == ["START PLAIN " + b64(b"\0joe\0pw")]


def test_a_bad_challenge_is_cancelled_and_reported() -> None:
    wire = ScriptedWire([sasl.Reply("continue", "%%%"), sasl.Reply("fail", "bye")])
    with pytest.raises(ProtocolError, match="cannot be answered"):
        sasl.exchange(sasl.CramMd5("joe", "pw"), wire, initial_response=True)
    assert wire.sent == ["START CRAM-MD5 None", "*"]


def test_endless_challenges_are_cut_off() -> None:
    replies = [sasl.Reply("continue", b64(b"again"))] * 10 + [sasl.Reply("fail", "")]
    wire = ScriptedWire(replies)
    with pytest.raises(ProtocolError):
        sasl.exchange(sasl.Login("joe", "pw"), wire, initial_response=True)
    assert wire.sent[-1] == "*" and len(wire.sent) == 4


def test_a_refusal_carries_the_token_error() -> None:
    wire = ScriptedWire(
        [
            sasl.Reply("continue", b64(b'{"status":"401"}')),
            sasl.Reply("fail", "NO expired"),
        ]
    )
    with pytest.raises(AuthError, match="Token error: status 401"):
        sasl.exchange(sasl.XOAuth2("joe", "t"), wire, initial_response=True)
