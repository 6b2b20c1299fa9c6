"""The retrieval side against a real Dovecot: pipelining, batches, SASL, APOP,
client certificates, pins, \\Seen handling, IDLE, expunge N and fastuidl.

No Django: runs with ``pytest tests/live/test_engine_protocols_dovecot.py -p no:django``.
A second Dovecot (module scope) adds what the suite's one does not offer: APOP,
EXTERNAL and a demanded client certificate from a CA made here.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import socket
import ssl
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
import trustme

from retrieval.engine.fetch.pop3 import Pop3Session
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus, PollReport
from retrieval.engine.run import poll
from retrieval.engine.spec import (
    DeliveryKind,
    DeliverySpec,
    MailboxSpec,
    MailProtocol,
    Secret,
    ServerSpec,
    TlsMode,
    TlsSpec,
)
from tests.support.dovecot import Dovecot, MailUser

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.support.smtp_listener import SmtpListener

pytestmark = pytest.mark.live


def sample(n: int, size: int = 0) -> bytes:
    body = (f"line {n} " * 12 + "\r\n") * max(1, size // 100)
    return (
        f"From: sender{n}@example.net\r\nSubject: message {n}\r\n"
        f"Message-ID: <m{n}@example.net>\r\n\r\n{body}"
    ).encode()


def spec_for(
    dovecot: Dovecot,
    user: MailUser,
    listener: SmtpListener | None,
    *,
    protocol: MailProtocol = MailProtocol.IMAP,
    tls: TlsMode = TlsMode.IMPLICIT,
    port: int | None = None,
    via: tuple[str, int] | None = None,
    auth: str = "any",
    **options: object,
) -> MailboxSpec:
    if port is None:
        implicit = tls is TlsMode.IMPLICIT
        port = {
            (MailProtocol.IMAP, True): dovecot.imaps_port,
            (MailProtocol.IMAP, False): dovecot.imap_port,
            (MailProtocol.POP3, True): dovecot.pop3s_port,
            (MailProtocol.POP3, False): dovecot.pop3_port,
        }[(protocol, implicit)]
    spec = MailboxSpec(
        server=ServerSpec(
            host="localhost",  # the certificate's name; connect to the address
            via=via[0] if via else dovecot.host,
            protocol=protocol,
            port=via[1] if via else port,
            tls=TlsSpec(mode=tls, ca_file=dovecot.ca_file),
            timeout=10,
            auth=auth,
        ),
        username=user.name,
        password=Secret(user.password),
        delivery=DeliverySpec(
            kind=DeliveryKind.SMTP,
            hosts=(f"{listener.host}/{listener.port}",) if listener else (),
            recipients=("joe@example.org",),
            timeout=10,
        ),
    )
    return replace(spec, **options)  # type: ignore[arg-type]


def with_tls(spec: MailboxSpec, **tls: Any) -> MailboxSpec:
    return replace(
        spec, server=replace(spec.server, tls=replace(spec.server.tls, **tls))
    )


def run(
    spec: MailboxSpec, ledger: MemoryLedger | None = None, **kwargs: object
) -> tuple[PollReport, MemoryLedger, ListTranscript]:
    ledger = ledger if ledger is not None else MemoryLedger()
    transcript = ListTranscript()
    report = poll(spec, ledger=ledger, transcript=transcript, **kwargs)  # type: ignore[arg-type]
    return report, ledger, transcript


def body_of(data: bytes) -> bytes:
    """A delivered message without our three-line Received header."""
    return b"\r\n".join(data.split(b"\r\n")[3:])


def client_runs(transcript: ListTranscript, verbs: tuple[str, ...]) -> list[list[str]]:
    """Mail-server commands grouped by the replies between them."""
    runs: list[list[str]] = [[]]
    for direction, text in transcript.lines:
        if direction == "C" and text.split(" ")[0].upper() in verbs:
            runs[-1].append(text)
        elif direction == "S" and runs[-1]:
            runs.append([])
    return [r for r in runs if r]


# -- a link with latency, for the pipelining measurement ---------------------------


class LatencyProxy:
    """TCP relay on 127.0.0.1 adding ``delay`` seconds each way (no bandwidth cap)."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target, self.delay = target, delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                near, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            far = socket.create_connection(self.target)
            for a, b in ((near, far), (far, near)):
                line: queue.Queue[tuple[float, bytes]] = queue.Queue()
                threading.Thread(target=self._read, args=(a, line), daemon=True).start()
                threading.Thread(
                    target=self._write, args=(b, line), daemon=True
                ).start()

    def _read(
        self, sock: socket.socket, line: queue.Queue[tuple[float, bytes]]
    ) -> None:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            line.put((time.monotonic() + self.delay, data))
            if not data:
                return

    def _write(
        self, sock: socket.socket, line: queue.Queue[tuple[float, bytes]]
    ) -> None:
        while True:
            due, data = line.get()
            time.sleep(max(0.0, due - time.monotonic()))
            if not data:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                return
            try:
                sock.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@pytest.fixture
def slow_link(dovecot: Dovecot) -> Iterator[Callable[[int], LatencyProxy]]:
    proxies: list[LatencyProxy] = []

    def make(port: int) -> LatencyProxy:
        proxies.append(LatencyProxy((dovecot.host, port), delay=0.005))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


class PipeliningTests:
    MESSAGES = 40

    def test_pop3_pipelining_saves_round_trips_on_a_slow_link(
        self,
        dovecot: Dovecot,
        mailuser: MailUser,
        smtp_listener: SmtpListener,
        slow_link: Callable[[int], LatencyProxy],
        monkeypatch: pytest.MonkeyPatch,
        record_property: Callable[[str, object], None],
    ) -> None:
        """Both ways deliver the same; timings are recorded, never asserted."""
        proxy = slow_link(dovecot.pop3s_port)
        results: dict[str, tuple[float, int]] = {}
        for mode in ("pipelined", "one-by-one"):
            bodies = [sample(n + len(results) * 100) for n in range(self.MESSAGES)]
            for body in bodies:
                dovecot.put(mailuser.name, body)
            if mode == "one-by-one":
                monkeypatch.setattr(
                    Pop3Session, "pipelining", property(lambda s: False)
                )
            spec = spec_for(
                dovecot,
                mailuser,
                smtp_listener,
                protocol=MailProtocol.POP3,
                via=("127.0.0.1", proxy.port),
            )
            started = time.monotonic()
            report, _, transcript = run(spec)
            elapsed = time.monotonic() - started
            assert report.exit_code is ExitCode.SUCCESS, report.error
            got = smtp_listener.wait_for(len(bodies))[-len(bodies) :]
            assert [body_of(r.data) for r in got] == bodies
            assert dovecot.messages(mailuser.name) == []
            verbs = ("LIST", "UIDL", "TOP", "RETR", "DELE", "QUIT")
            results[mode] = (elapsed, len(client_runs(transcript, verbs)))
            record_property(f"pop3 {mode} seconds", round(elapsed, 3))
        # Deterministic: far fewer waits for the server when pipelining.
        assert results["pipelined"][1] * 5 < results["one-by-one"][1]
        print(f"\nPOP3 over 5 ms each way, {self.MESSAGES} messages: {results}")

    def test_imap_fetches_bodies_in_one_command_per_batch(
        self, dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
    ) -> None:
        bodies = [sample(n, size=3000) for n in range(10)]
        for body in bodies:
            dovecot.put(mailuser.name, body)
        report, _, transcript = run(spec_for(dovecot, mailuser, smtp_listener))
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert [body_of(r.data) for r in smtp_listener.wait_for(10)] == bodies
        fetches = [t for d, t in transcript.lines if d == "C" and "BODY.PEEK" in t]
        assert [f.split(" ", 1)[1] for f in fetches] == [
            "UID FETCH 1:10 (UID BODY.PEEK[])"
        ]
        assert dovecot.messages(mailuser.name) == []


# -- authentication ------------------------------------------------------------------


AUTH_PATHS = [
    pytest.param(MailProtocol.POP3, auth, expected, id=f"pop3-{auth}")
    for auth, expected in [
        ("any", "AUTH CRAM-MD5"),
        ("password", "AUTH PLAIN"),
        ("plain", "AUTH PLAIN"),
        ("login", "AUTH LOGIN"),
        ("cram-md5", "AUTH CRAM-MD5"),
    ]
] + [
    pytest.param(MailProtocol.IMAP, auth, expected, id=f"imap-{auth}")
    for auth, expected in [
        ("any", "AUTHENTICATE CRAM-MD5"),
        ("password", "AUTHENTICATE PLAIN"),
        ("plain", "AUTHENTICATE PLAIN"),
        ("login", "AUTHENTICATE LOGIN"),
        ("cram-md5", "AUTHENTICATE CRAM-MD5"),
    ]
]


@pytest.mark.parametrize(("protocol", "auth", "expected"), AUTH_PATHS)
def test_each_mechanism_dovecot_offers_logs_in(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    protocol: MailProtocol,
    auth: str,
    expected: str,
) -> None:
    dovecot.put(mailuser.name, sample(1))
    spec = spec_for(
        dovecot,
        mailuser,
        smtp_listener,
        protocol=protocol,
        tls=TlsMode.STARTTLS,
        auth=auth,
    )
    report, _, transcript = run(spec)
    assert report.exit_code is ExitCode.SUCCESS, report.error
    sent = [t for d, t in transcript.lines if d == "C"]
    assert any(expected in t for t in sent), sent
    assert mailuser.password not in transcript.text()


def test_a_mechanism_dovecot_lacks_ends_the_poll_before_any_secret(
    dovecot: Dovecot, mailuser: MailUser
) -> None:
    spec = spec_for(dovecot, mailuser, None, protocol=MailProtocol.POP3, auth="xoauth2")
    report, _, transcript = run(spec)
    assert report.exit_code is ExitCode.AUTHFAIL
    assert "does not offer XOAUTH2" in report.error
    assert [t for d, t in transcript.lines if d == "C"] == ["CAPA"]


class SpecialDovecot(Dovecot):
    """The suite's Dovecot plus APOP, EXTERNAL and a demanded client certificate."""

    client_ca: str = ""

    def _write_config(self, ports: list[int]) -> None:
        super()._write_config(ports)
        with self.config_file.open("a") as config:
            config.write(
                "auth_mechanisms = plain login cram-md5 apop external\n"
                f"ssl_ca = <{self.client_ca}\n"
                "ssl_verify_client_cert = yes\n"
                "ssl_require_crl = no\n"
                "auth_ssl_require_client_cert = yes\n"
                "auth_ssl_username_from_cert = yes\n"
                "ssl_cert_username_field = commonName\n"
                # EXTERNAL has no password to check: this passdb vouches for it.
                "passdb {\n  driver = static\n  args = nopassword=y\n"
                "  mechanisms = external\n}\n"
            )


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("clientca")
    directory.chmod(0o755)  # Dovecot's processes read the CA file
    ca = trustme.CA(organization_name="fetchweb client CA")
    paths = {name: str(directory / name) for name in ("ca.pem", "cert.pem", "key.pem")}
    ca.cert_pem.write_to_path(paths["ca.pem"])
    (directory / "ca.pem").chmod(0o644)
    leaf = ca.issue_cert("carol@example.org", common_name="carol")
    leaf.cert_chain_pems[0].write_to_path(paths["cert.pem"])
    leaf.private_key_pem.write_to_path(paths["key.pem"])
    return paths


@pytest.fixture(scope="module")
def special(
    tmp_path_factory: pytest.TempPathFactory, certificates: dict[str, str]
) -> Iterator[SpecialDovecot]:
    SpecialDovecot.client_ca = certificates["ca.pem"]
    server = SpecialDovecot.start(tmp_path_factory.mktemp("special-dovecot"))
    try:
        server.add_user("carol", "carols-password")
        yield server  # type: ignore[misc]
    finally:
        server.stop()


CAROL = MailUser("carol", "carols-password")


class ClientCertificateTests:
    @pytest.mark.parametrize("protocol", [MailProtocol.POP3, MailProtocol.IMAP])
    def test_a_demanded_certificate_is_presented(
        self,
        special: SpecialDovecot,
        certificates: dict[str, str],
        smtp_listener: SmtpListener,
        protocol: MailProtocol,
    ) -> None:
        special.put("carol", sample(1))
        spec = spec_for(special, CAROL, smtp_listener, protocol=protocol)
        without, _, _ = run(spec)
        assert without.exit_code is ExitCode.AUTHFAIL
        assert "valid SSL certificate" in without.error
        spec = with_tls(
            spec, cert_file=certificates["cert.pem"], key_file=certificates["key.pem"]
        )
        report, _, _ = run(spec)
        assert report.exit_code is ExitCode.SUCCESS, report.error

    @pytest.mark.parametrize("protocol", [MailProtocol.POP3, MailProtocol.IMAP])
    def test_external_logs_in_with_the_certificate_alone(
        self,
        special: SpecialDovecot,
        certificates: dict[str, str],
        smtp_listener: SmtpListener,
        protocol: MailProtocol,
    ) -> None:
        special.put("carol", sample(2))
        spec = replace(
            spec_for(special, CAROL, smtp_listener, protocol=protocol, auth="external"),
            password=None,
        )
        spec = with_tls(
            spec, cert_file=certificates["cert.pem"], key_file=certificates["key.pem"]
        )
        report, _, transcript = run(spec)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert any("EXTERNAL" in t for d, t in transcript.lines if d == "C")

    def test_apop_against_dovecot(
        self,
        special: SpecialDovecot,
        certificates: dict[str, str],
        smtp_listener: SmtpListener,
    ) -> None:
        special.put("carol", sample(3))
        spec = spec_for(
            special,
            CAROL,
            smtp_listener,
            protocol=MailProtocol.POP3,
            tls=TlsMode.STARTTLS,
            auth="apop",
        )
        spec = with_tls(
            spec, cert_file=certificates["cert.pem"], key_file=certificates["key.pem"]
        )
        report, _, transcript = run(spec)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert ("C", "APOP carol ********") in transcript.lines
        wrong = replace(spec, password=Secret("not-it"))
        assert run(wrong)[0].exit_code is ExitCode.AUTHFAIL


# -- TLS pins and versions --------------------------------------------------------------


def test_a_pinned_fingerprint_is_checked(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    pem = open(dovecot.cert_file).read()  # noqa: PTH123, SIM115
    first = pem[: pem.index("-----END CERTIFICATE-----") + 25]
    der = ssl.PEM_cert_to_DER_cert(first)
    dovecot.put(mailuser.name, sample(1))
    spec = spec_for(dovecot, mailuser, smtp_listener)
    good, _, _ = run(with_tls(spec, fingerprint=hashlib.sha256(der).hexdigest()))
    assert good.exit_code is ExitCode.SUCCESS, good.error
    bad, _, transcript = run(with_tls(spec, fingerprint="AA:" * 15 + "AA"))
    assert bad.exit_code is ExitCode.SOCKET
    assert not any(d == "C" for d, _ in transcript.lines)


def test_tls_1_3_is_negotiated_when_asked(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    spec = with_tls(spec_for(dovecot, mailuser, smtp_listener), min_version="tls1.3+")
    report, _, transcript = run(spec)
    assert report.exit_code is ExitCode.NOMAIL, report.error
    assert any(t.startswith("TLS established: TLSv1.3") for _, t in transcript.lines)


# -- flags, idle, expunge, fastuidl ------------------------------------------------------


def mark_seen(dovecot: Dovecot, user: str, uid: int) -> None:
    dovecot.doveadm(
        "flags", "add", "-u", user, "\\Seen", "mailbox", "INBOX", "uid", str(uid)
    )


def test_read_messages_are_old_and_flush_deletes_them(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    dovecot.put(mailuser.name, sample(1))
    dovecot.put(mailuser.name, sample(2))
    spec = spec_for(dovecot, mailuser, smtp_listener, keep=True)
    run(replace(spec, keep=True, fetchall=False, idle=False))  # Dovecot numbers them
    smtp_listener.received.clear()
    dovecot.doveadm(
        "flags", "remove", "-u", mailuser.name, "\\Seen", "mailbox", "INBOX", "all"
    )
    mark_seen(dovecot, mailuser.name, 1)
    report, _, _ = run(spec)
    assert [m.uid for m in report.messages] == ["2"]
    flushed, _, _ = run(replace(spec, flush=True))
    assert [(m.uid, m.deleted) for m in flushed.messages] == [("1", True), ("2", False)]
    assert dovecot.messages(mailuser.name) == [sample(2)]


def test_idle_delivers_what_arrives(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    dovecot.put(mailuser.name, sample(1))
    asked = []

    def stop() -> bool:
        asked.append(time.monotonic())
        if len(asked) == 2:  # the first time inside the IDLE wait
            dovecot.put(mailuser.name, sample(2))
        return False

    spec = spec_for(
        dovecot, mailuser, smtp_listener, idle=True, idle_rounds=1, idle_reissue=60
    )
    report, _, transcript = run(spec, stop=stop)
    assert report.exit_code is ExitCode.SUCCESS, report.error
    assert [body_of(r.data) for r in smtp_listener.wait_for(2)] == [
        sample(1),
        sample(2),
    ]
    assert "idle round 1: new mail" in [t for _, t in transcript.lines]
    assert dovecot.messages(mailuser.name) == []


def test_pop3_expunge_commits_every_n_deletions(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    bodies = [sample(n) for n in range(5)]
    for body in bodies:
        dovecot.put(mailuser.name, body)
    spec = spec_for(dovecot, mailuser, smtp_listener, protocol=MailProtocol.POP3, expunge=2)
    report, _, transcript = run(spec)
    assert report.exit_code is ExitCode.SUCCESS, report.error
    assert [body_of(r.data) for r in smtp_listener.wait_for(5)] == bodies
    assert sum(t == "AUTH CRAM-MD5" for d, t in transcript.lines if d == "C") == 3
    assert report.deleted == 5 and dovecot.messages(mailuser.name) == []


def test_pop3_keep_reads_with_top_and_fastuidl_lists_only_the_new(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    for n in range(10):
        dovecot.put(mailuser.name, sample(n))
    spec = spec_for(dovecot, mailuser, smtp_listener, protocol=MailProtocol.POP3, keep=True)
    first, ledger, _ = run(spec)
    assert first.delivered == 10
    # TOP leaves the messages unread on the server.
    flags = dovecot.doveadm("fetch", "-u", mailuser.name, "flags", "mailbox", "INBOX")
    assert "\\Seen" not in flags
    for n in range(10, 12):
        dovecot.put(mailuser.name, sample(n))
    report, _, transcript = run(replace(spec, fastuidl=4, poll_number=1), ledger)
    assert [m.status for m in report.messages] == [MessageStatus.DELIVERED] * 2
    sent = [t for d, t in transcript.lines if d == "C"]
    assert "UIDL" not in sent and any(t.startswith("UIDL ") for t in sent)


def test_a_renumbered_folder_in_keep_mode_is_reported_not_redelivered(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener, tmp_path: Path
) -> None:
    dovecot.put(mailuser.name, sample(1))
    spec = spec_for(dovecot, mailuser, smtp_listener, keep=True)
    _, ledger, _ = run(spec)
    dovecot.set_uidvalidity(mailuser.name, dovecot.uidvalidity(mailuser.name) + 7)
    report, _, _ = run(spec, ledger)
    assert report.exit_code is ExitCode.NOMAIL
    assert any("renumbered" in note for note in report.notes)
    assert len(smtp_listener.wait_for(1)) == 1
