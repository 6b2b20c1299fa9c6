"""The suite's own servers behave as the other tests assume.

Dovecot answers POP3/IMAP/LMTP with the CA it advertises, stores what ``put``
gives it byte for byte, and ``messages()`` follows deletions; the SMTP/LMTP
listener captures exactly and fails as scripted; PostgreSQL and Redis are the
private ones. Only the PostgreSQL test needs Django: the module also runs with
``-p no:django``.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import smtplib
import socket
import ssl
from typing import TYPE_CHECKING

import pytest

from tests import services_plugin
from tests.support.network_guard import NetworkBlockedError, is_local_address
from tests.support.smtp_listener import SmtpListener

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.dovecot import Dovecot, MailUser

pytestmark = pytest.mark.live

MESSAGE = (
    b"From: sender@example.net\r\n"
    b"To: someone@example.org\r\n"
    b"Subject: dots and bytes\r\n"
    b"\r\n"
    b".a line that starts with a dot\r\n"
    b"..two dots\r\n"
    b".\r\n"
    b"caf\xc3\xa9 and \xff raw 8-bit\r\n"
    b"last line\r\n"
)


def _tls(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def _imap_bodies(client: imaplib.IMAP4, folder: str = "INBOX") -> list[bytes]:
    client.select(folder)
    _, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
    return [part[1] for part in data if isinstance(part, tuple)]


def _message(n: int) -> bytes:
    return MESSAGE.replace(b"dots and bytes", f"message {n}".encode())


# ---- Dovecot ---------------------------------------------------------------


class DovecotTests:
    def test_it_serves_pop3_in_clear_with_stls_and_over_implicit_tls(
        self, dovecot: Dovecot, mailuser: MailUser
    ) -> None:
        dovecot.put(mailuser.name, MESSAGE)

        clear = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=5)
        assert "STLS" in clear.capa()
        clear.stls(_tls(dovecot.ca_file))
        clear.user(mailuser.name)
        clear.pass_(mailuser.password)
        assert clear.stat() == (1, len(MESSAGE))
        clear.quit()

        secure = poplib.POP3_SSL(
            dovecot.host, dovecot.pop3s_port, context=_tls(dovecot.ca_file), timeout=5
        )
        secure.user(mailuser.name)
        secure.pass_(mailuser.password)
        _, lines, _ = secure.retr(1)
        secure.quit()
        # poplib removes the dot-stuffing and the line ends; put them back.
        assert b"\r\n".join(lines) + b"\r\n" == MESSAGE

    def test_it_serves_imap_with_starttls_and_over_implicit_tls(
        self, dovecot: Dovecot, mailuser: MailUser
    ) -> None:
        dovecot.put(mailuser.name, MESSAGE)

        clear = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=5)
        assert "STARTTLS" in clear.capabilities
        clear.starttls(_tls(dovecot.ca_file))
        clear.login(mailuser.name, mailuser.password)
        assert _imap_bodies(clear) == [MESSAGE]
        clear.logout()

        secure = imaplib.IMAP4_SSL(
            dovecot.host, dovecot.imaps_port, ssl_context=_tls(dovecot.ca_file)
        )
        secure.login_cram_md5(mailuser.name, mailuser.password)
        assert _imap_bodies(secure) == [MESSAGE]
        secure.logout()

    def test_it_presents_a_certificate_only_its_own_ca_verifies(
        self, dovecot: Dovecot
    ) -> None:
        with pytest.raises(ssl.SSLCertVerificationError):
            poplib.POP3_SSL(
                dovecot.host,
                dovecot.pop3s_port,
                context=_tls(dovecot.wrong_ca_file),
                timeout=5,
            )
        with pytest.raises(ssl.SSLCertVerificationError):  # the system store
            imaplib.IMAP4_SSL(
                dovecot.host,
                dovecot.imaps_port,
                ssl_context=ssl.create_default_context(),
            )
        # Valid for the name "localhost" as well as for 127.0.0.1.
        context = _tls(dovecot.ca_file)
        with (
            socket.create_connection((dovecot.host, dovecot.imaps_port), 5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.recv(100).startswith(b"* OK")

    def test_it_rejects_a_wrong_password_and_knows_new_users_at_once(
        self, dovecot: Dovecot, mailuser: MailUser
    ) -> None:
        client = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=5)
        with pytest.raises(imaplib.IMAP4.error):
            client.login(mailuser.name, mailuser.password + "x")
        client.login(mailuser.name, mailuser.password)
        client.logout()

    def test_put_keeps_order_uids_and_bytes_and_messages_follows_pop3_deletes(
        self, dovecot: Dovecot, mailuser: MailUser
    ) -> None:
        originals = [_message(n) for n in range(4)]
        for raw in originals:
            dovecot.put(mailuser.name, raw)

        def session() -> poplib.POP3:
            client = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=5)
            client.user(mailuser.name)
            client.pass_(mailuser.password)
            return client

        first = session()
        uidls = first.uidl()[1]
        fetched = [b"\r\n".join(first.retr(n)[1]) + b"\r\n" for n in (1, 2, 3, 4)]
        first.dele(1)
        first.dele(3)
        first.quit()
        assert fetched == originals
        # pop3_uidl_format %08Xu%08Xv: UID then UIDVALIDITY (Dovecot prints lower case).
        validity = dovecot.uidvalidity(mailuser.name)
        assert uidls == [f"{n} {n:08x}{validity:08x}".encode() for n in (1, 2, 3, 4)]

        assert dovecot.messages(mailuser.name) == [originals[1], originals[3]]
        second = session()
        assert second.uidl()[1] == [
            b"1 " + uidls[1].split()[1],
            b"2 " + uidls[3].split()[1],
        ]
        second.quit()

    def test_messages_follows_imap_expunge_and_folders(
        self, dovecot: Dovecot, mailuser: MailUser
    ) -> None:
        dovecot.put(mailuser.name, _message(1))
        dovecot.put(mailuser.name, _message(2), folder="Archive/2024")
        assert {"INBOX", "Archive/2024"} <= set(dovecot.folders(mailuser.name))

        client = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=5)
        client.login(mailuser.name, mailuser.password)
        assert _imap_bodies(client, "Archive/2024") == [_message(2)]
        client.select("INBOX")
        client.uid("STORE", "1", "+FLAGS.SILENT", r"(\Deleted)")
        assert dovecot.messages(mailuser.name) == [_message(1)]  # only flagged
        client.expunge()
        client.logout()

        assert dovecot.messages(mailuser.name) == []
        assert dovecot.messages(mailuser.name, "Archive/2024") == [_message(2)]

    def test_a_uidvalidity_change_is_visible_to_imap(
        self, dovecot: Dovecot, mailuser: MailUser
    ) -> None:
        dovecot.put(mailuser.name, MESSAGE)
        before = dovecot.uidvalidity(mailuser.name)
        dovecot.set_uidvalidity(mailuser.name, before + 1000)

        client = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=5)
        client.login(mailuser.name, mailuser.password)
        _, data = client.status("INBOX", "(UIDVALIDITY)")
        client.logout()
        assert f"UIDVALIDITY {before + 1000}".encode() in data[0]

    def test_its_lmtp_delivers_into_the_mailbox(
        self, dovecot: Dovecot, mailuser: MailUser
    ) -> None:
        with smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=5) as lmtp:
            refused = lmtp.sendmail("sender@example.net", [mailuser.address], MESSAGE)
            assert refused == {}
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                lmtp.sendmail("sender@example.net", ["nobody-here@localhost"], b"x")
        (delivered,) = dovecot.messages(mailuser.name)
        # Dovecot prepends Return-Path, Delivered-To and Received, and stores
        # LMTP deliveries with bare LF line ends (IMAP gives CRLF back).
        assert delivered.startswith(b"Return-Path: <sender@example.net>\n")
        assert delivered.endswith(MESSAGE.replace(b"\r\n", b"\n"))


# ---- SMTP and LMTP listeners -----------------------------------------------


class SmtpListenerTests:
    def test_it_captures_bytes_exactly_without_the_dot_stuffing(
        self, smtp_listener: SmtpListener
    ) -> None:
        with smtplib.SMTP(smtp_listener.host, smtp_listener.port, timeout=5) as smtp:
            smtp.sendmail(
                "from@example.net", ["a@example.org", "b@example.org"], MESSAGE
            )
        (message,) = smtp_listener.messages
        assert message.data == MESSAGE
        assert message.mail_from == "from@example.net"
        assert message.rcpt_tos == ["a@example.org", "b@example.org"]
        assert message.replies == ("250 2.0.0 OK queued",)
        assert smtp_listener.connections == 1

    @pytest.mark.parametrize(
        ("stage", "error"),
        [
            ("MAIL", smtplib.SMTPSenderRefused),
            ("RCPT", smtplib.SMTPRecipientsRefused),
            ("DATA", smtplib.SMTPDataError),
            ("DATA_END", smtplib.SMTPDataError),
        ],
    )
    def test_it_fails_once_at_each_stage_as_scripted(
        self,
        smtp_listener: SmtpListener,
        stage: str,
        error: type[Exception],
    ) -> None:
        smtp_listener.fail_at(stage, 451, times=1)  # type: ignore[arg-type]
        with smtplib.SMTP(smtp_listener.host, smtp_listener.port, timeout=5) as smtp:
            with pytest.raises(error) as failure:
                smtp.sendmail("from@example.net", ["a@example.org"], MESSAGE)
            assert "451" in str(failure.value)
            smtp.rset()
            smtp.sendmail("from@example.net", ["a@example.org"], MESSAGE)
        assert [m.data for m in smtp_listener.messages] == [MESSAGE]
        expected_received = 2 if stage == "DATA_END" else 1
        assert len(smtp_listener.received) == expected_received

    def test_it_refuses_one_recipient_and_keeps_the_others(
        self, smtp_listener: SmtpListener
    ) -> None:
        smtp_listener.fail_at("RCPT", "550 5.1.1 no such user", rcpt="b@example.org")
        with smtplib.SMTP(smtp_listener.host, smtp_listener.port, timeout=5) as smtp:
            refused = smtp.sendmail(
                "from@example.net", ["a@example.org", "b@example.org"], MESSAGE
            )
        assert refused == {"b@example.org": (550, b"5.1.1 no such user")}
        assert smtp_listener.messages[0].rcpt_tos == ["a@example.org"]

    def test_it_drops_the_connection_after_the_dot(
        self, smtp_listener: SmtpListener
    ) -> None:
        smtp_listener.drop_after_dot()
        with (
            pytest.raises(smtplib.SMTPServerDisconnected),
            smtplib.SMTP(smtp_listener.host, smtp_listener.port, timeout=5) as smtp,
        ):
            smtp.sendmail("from@example.net", ["a@example.org"], MESSAGE)
        (received,) = smtp_listener.received
        assert received.data == MESSAGE and received.replies == ()
        assert smtp_listener.messages == []

    def test_it_stalls_after_the_dot(self, smtp_listener: SmtpListener) -> None:
        smtp_listener.stall_after_dot()
        smtp = smtplib.SMTP(smtp_listener.host, smtp_listener.port, timeout=5)
        smtp.sock.settimeout(0.5)  # type: ignore[union-attr]
        # smtplib reports its read timeout as a disconnection.
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            smtp.sendmail("from@example.net", ["a@example.org"], MESSAGE)
        smtp.close()
        assert len(smtp_listener.received) == 1
        assert smtp_listener.messages == []

    def test_lmtp_replies_once_per_recipient_after_the_dot(
        self, lmtp_listener: SmtpListener
    ) -> None:
        lmtp_listener.fail_at(
            "DATA_END", "452 4.2.2 Mailbox full", rcpt="b@example.org"
        )
        replies = _lmtp_dialog(
            lmtp_listener, ["a@example.org", "b@example.org", "c@example.org"]
        )
        assert [r[:3] for r in replies] == [b"250", b"452", b"250"]
        (received,) = lmtp_listener.received
        assert received.data == MESSAGE
        assert received.replies[1] == "452 4.2.2 Mailbox full"
        assert not received.accepted and lmtp_listener.messages == []

    def test_lmtp_listens_on_a_unix_socket_too(self, tmp_path: Path) -> None:
        listener = SmtpListener.start(lmtp=True, unix_socket=tmp_path / "lmtp.sock")
        try:
            with smtplib.LMTP(str(tmp_path / "lmtp.sock"), timeout=5) as lmtp:
                lmtp.sendmail("from@example.net", ["a@example.org"], MESSAGE)
            assert [m.data for m in listener.messages] == [MESSAGE]
        finally:
            listener.stop()


def _lmtp_dialog(listener: SmtpListener, recipients: list[str]) -> list[bytes]:
    """A raw LMTP transaction; smtplib reads only one reply after the dot."""
    with socket.create_connection((listener.host, listener.port), 5) as sock:
        reader = sock.makefile("rb")

        def reply() -> bytes:
            while (line := reader.readline())[3:4] == b"-":
                pass
            return line

        def command(text: str) -> bytes:
            sock.sendall(text.encode() + b"\r\n")
            return reply()

        assert reply().startswith(b"220")
        assert command("LHLO client.test").startswith(b"250")
        assert command("MAIL FROM:<from@example.net>").startswith(b"250")
        for rcpt in recipients:
            assert command(f"RCPT TO:<{rcpt}>").startswith(b"250")
        assert command("DATA").startswith(b"354")
        stuffed = b"".join(
            (b"." + line if line.startswith(b".") else line)
            for line in MESSAGE.splitlines(keepends=True)
        )
        sock.sendall(stuffed + b".\r\n")
        replies = [reply() for _ in recipients]
        command("QUIT")
        return replies


# ---- PostgreSQL, Redis, the network guard, the plugin -----------------------


def test_the_database_is_the_private_postgresql(request: pytest.FixtureRequest) -> None:
    if not request.config.pluginmanager.has_plugin("django"):
        pytest.skip("pytest-django is disabled (-p no:django)")
    request.getfixturevalue("django_db_setup")
    blocker = request.getfixturevalue("django_db_blocker")
    from django.db import connection

    with blocker.unblock():
        try:
            if "DATABASE_URL" not in os.environ:
                assert os.environ.get("FETCHWEB_TEST_DB") == "sqlite"
                assert connection.vendor == "sqlite"
                return
            assert connection.vendor == "postgresql"
            cluster = services_plugin.postgres_cluster()
            if cluster is not None:  # not an inherited DATABASE_URL
                assert int(connection.settings_dict["PORT"]) == cluster.port
                with connection.cursor() as cursor:
                    cursor.execute("SHOW fsync")
                    assert cursor.fetchone() == ("off",)
        finally:
            connection.close()


def test_redis_answers_ping(redis_url: str) -> None:
    host, port = redis_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), 5) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert sock.recv(16) == b"+PONG\r\n"
    assert os.environ["REDIS_URL"] == redis_url


def test_connections_beyond_loopback_are_refused() -> None:
    with pytest.raises(NetworkBlockedError):
        socket.create_connection(("192.0.2.1", 25), timeout=1)
    with pytest.raises(NetworkBlockedError), socket.socket() as sock:
        sock.connect(("198.51.100.7", 110))
    # A name that does not resolve fails as usual, for tests of DNS errors.
    with pytest.raises(socket.gaierror):
        socket.create_connection(("no-such-host.invalid", 110), timeout=1)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        socket.create_connection(("localhost", port), timeout=1).close()
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert is_local_address(("127.0.0.5", 1))
    assert is_local_address(("::1", 1, 0, 0))
    assert is_local_address(("::ffff:127.0.0.1", 1, 0, 0))
    assert is_local_address("/run/lmtp.sock")
    assert not is_local_address(("10.0.0.1", 1))
    assert not is_local_address(("0.0.0.0", 1))


@pytest.mark.parametrize(
    ("args", "needs"),
    [
        ([], True),
        (["tests/engine"], False),
        (["tests/engine/test_x.py::test_y", "tests/rcfile"], False),
        (["tests/engine", "tests/live"], True),
        (["tests/live/test_real_servers.py::DovecotTests"], True),
    ],
)
def test_the_plugin_skips_postgresql_only_for_django_free_paths(
    args: list[str], needs: bool
) -> None:
    root = services_plugin.DJANGO_FREE_DIRS[0].parent.parent
    assert services_plugin._paths_need_django(args, root) is needs
