"""check_login: log in and out, touching no message, against the scripted servers."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from retrieval.engine.memory import ListTranscript
from retrieval.engine.probe import check_login
from retrieval.engine.spec import MailProtocol, TlsMode
from tests.support.fake_servers import FakeImapServer, FakePop3Server, refused_port

from .conftest import PASSWORD, make_spec, message

if TYPE_CHECKING:
    import ssl


class CheckLoginTests:
    def test_it_logs_in_and_out_without_opening_the_mailbox(self) -> None:
        with FakePop3Server([message(1)], password=PASSWORD) as server:
            transcript = ListTranscript()
            result = check_login(make_spec(server, password=PASSWORD), transcript)
        assert result.ok and result.error == ""
        assert result.greeting.startswith("+OK fake POP3 server ready")
        verbs = [c.split()[0] for c in server.commands]
        assert {"STAT", "UIDL", "LIST", "RETR", "DELE"}.isdisjoint(verbs)
        assert verbs[-1] == "QUIT"
        assert len(server.mailbox) == 1
        assert (
            PASSWORD not in transcript.text() and "PASS ********" in transcript.text()
        )

    def test_it_says_in_words_when_the_password_is_refused(self) -> None:
        with FakePop3Server(password="other") as server:
            result = check_login(make_spec(server, password=PASSWORD))
        assert not result.ok
        assert result.greeting.startswith("+OK")
        assert result.error.startswith("Wrong user name or password")
        assert PASSWORD not in result.error

    def test_it_masks_a_password_the_server_echoes_back(self) -> None:
        echo = f"-ERR wrong password {PASSWORD}\r\n".encode()
        with FakePop3Server(overrides={"PASS": echo}) as server:
            result = check_login(make_spec(server, password=PASSWORD))
        assert not result.ok
        assert PASSWORD not in result.error

    def test_a_rude_goodbye_does_not_fail_a_good_login(self) -> None:
        with FakePop3Server(password=PASSWORD, drop_on="QUIT") as server:
            result = check_login(make_spec(server, password=PASSWORD))
        assert result.ok

    def test_it_refuses_to_send_a_password_without_the_required_starttls(self) -> None:
        with FakePop3Server(password=PASSWORD, capabilities=["USER", "UIDL"]) as server:
            result = check_login(
                make_spec(server, password=PASSWORD, tls=TlsMode.STARTTLS)
            )
        assert not result.ok
        assert "does not offer STARTTLS" in result.error
        assert not any(c.startswith(("USER", "PASS")) for c in server.commands)

    def test_it_logs_in_to_imap_over_tls(
        self, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        with FakeImapServer([message(1)], password=PASSWORD, tls=server_tls) as server:
            result = check_login(
                make_spec(
                    server,
                    protocol=MailProtocol.IMAP,
                    tls=TlsMode.IMPLICIT,
                    ca_file=ca_file,
                    password=PASSWORD,
                )
            )
        assert result.ok, result.error
        assert not any("SELECT" in c or "EXAMINE" in c for c in server.commands)

    def test_it_reports_a_refused_connection(self) -> None:
        with FakePop3Server() as server:
            spec = make_spec(server)
        spec = replace(spec, server=replace(spec.server, port=refused_port()))
        result = check_login(spec)
        assert not result.ok and result.greeting == ""
        assert result.error
