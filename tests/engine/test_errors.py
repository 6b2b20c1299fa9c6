"""One error hierarchy (issue 12 item 5): every engine exception lives in
``errors.py``, and ``permanent`` says whether retrying can help."""

from __future__ import annotations

import importlib
import inspect
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from retrieval.engine import errors
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode
from retrieval.engine.run import poll
from retrieval.engine.spec import TlsMode
from retrieval.engine.wire.transport import _name_does_not_exist
from tests.support.fake_servers import FakePop3Server, FakeSmtpServer

from .conftest import make_spec, message

if TYPE_CHECKING:
    import ssl

ENGINE = Path(errors.__file__).parent


def engine_module_names() -> list[str]:
    names = []
    for path in sorted(ENGINE.rglob("*.py")):
        parts = list(path.relative_to(ENGINE.parents[1]).with_suffix("").parts)
        if parts[-1] in ("__init__", "__main__"):
            continue
        names.append(".".join(parts))
    return names


@pytest.mark.parametrize("name", engine_module_names())
def test_every_engine_exception_is_defined_in_errors(name: str) -> None:
    module = importlib.import_module(name)
    defined = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and obj.__module__ == name
        and issubclass(obj, BaseException)
    ]
    if name == "retrieval.engine.errors":
        assert all(issubclass(cls, errors.EngineError) for cls in defined)
    else:
        assert defined == []


@pytest.mark.parametrize(
    "cls",
    [
        errors.AuthError,
        errors.CertificateError,
        errors.HostUnknown,
        errors.ConfigError,
    ],
)
def test_what_retrying_cannot_mend_is_permanent(cls: type[errors.EngineError]) -> None:
    assert cls.permanent


@pytest.mark.parametrize(
    "cls",
    [
        errors.DnsError,
        errors.TransportError,
        errors.TimeoutFault,
        errors.TlsError,
        errors.ProtocolError,
        errors.ServerError,
        errors.MailboxInUse,
        errors.MessageFetchError,
        errors.ListenerError,
        errors.ListenerUnavailable,
    ],
)
def test_what_may_pass_is_not_permanent(cls: type[errors.EngineError]) -> None:
    assert not cls.permanent


def test_a_refused_turn_is_permanent_only_when_it_wants_a_login() -> None:
    assert errors.TurnRefused("530", ExitCode.AUTHFAIL).permanent
    assert not errors.TurnRefused("451", ExitCode.EXCLUDE).permanent


def test_a_name_that_does_not_exist_is_told_from_a_resolver_failure() -> None:
    assert _name_does_not_exist(socket.gaierror(socket.EAI_NONAME, "unknown"))
    assert _name_does_not_exist(UnicodeError("label too long"))
    assert not _name_does_not_exist(socket.gaierror(socket.EAI_AGAIN, "try again"))


def test_an_untrusted_certificate_ends_the_poll_for_good(
    listener: FakeSmtpServer, server_tls: ssl.SSLContext, other_ca_file: str
) -> None:
    with FakePop3Server([message(1)], tls=server_tls) as server:
        spec = make_spec(server, listener, tls=TlsMode.IMPLICIT, ca_file=other_ca_file)
        report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
    assert report.exit_code is ExitCode.SOCKET
    assert "could not be verified" in report.error
    assert report.permanent


def test_a_refused_login_is_permanent_and_a_reset_is_not(
    listener: FakeSmtpServer,
) -> None:
    with FakePop3Server([message(1)], overrides={"PASS": b"-ERR no\r\n"}) as server:
        refused = poll(
            make_spec(server, listener, auth="password"),
            ledger=MemoryLedger(),
            transcript=ListTranscript(),
        )
    with FakePop3Server(
        [message(1)], capabilities=["USER", "UIDL"], drop_on="RETR"
    ) as server:
        dropped = poll(
            make_spec(server, listener, auth="password"),
            ledger=MemoryLedger(),
            transcript=ListTranscript(),
        )
    assert refused.exit_code is ExitCode.AUTHFAIL, refused.error
    assert refused.permanent
    assert dropped.exit_code is ExitCode.SOCKET, dropped.error
    assert not dropped.permanent
