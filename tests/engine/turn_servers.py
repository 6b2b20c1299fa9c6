"""Scripted ETRN and ODMR servers (RFC 1985, RFC 2645) on 127.0.0.1, for tests.

No packaged ODMR server exists, so :class:`FakeOdmrServer` plays the ISP's side
of RFC 2645: EHLO with ``ATRN`` and ``AUTH``, CRAM-MD5 or PLAIN, ``ATRN``, then
the turnaround, where it becomes the SMTP client and sends its queued messages
over the same connection, remembering what we answered to each final dot.
:class:`FakeEtrnServer` answers ``ETRN`` with scripted codes (the real ETRN
server of the suite is Postfix, see tests/live/test_etrn_postfix.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

from tests.support.fake_servers import FakeClient, FakeServer, dot_stuff

NAME = "odmr.isp.example"


def _command(client: FakeClient) -> str:
    return client.readline().rstrip(b"\r\n").decode("utf-8", "replace")


def _reply(client: FakeClient) -> str:
    """One whole (multi-line) reply from our client-turned-server."""
    lines = []
    while True:
        line = client.readline().rstrip(b"\r\n").decode("utf-8", "replace")
        lines.append(line)
        if line[3:4] != "-":
            return "\n".join(lines)


class FakeEtrnServer(FakeServer):
    """EHLO (with or without ETRN), then ``etrn_replies[domain]`` or 250."""

    def __init__(
        self, *, offer_etrn: bool = True, etrn_replies: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self.offer_etrn = offer_etrn
        self.etrn_replies = etrn_replies or {}
        self.commands: list[str] = []

    def handle(self, client: FakeClient) -> None:
        client.send("220 mx.isp.example ESMTP\r\n")
        while True:
            line = _command(client)
            self.commands.append(line)
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                client.send(
                    "250-mx.isp.example\r\n"
                    + ("250-ETRN\r\n" if self.offer_etrn else "")
                    + "250 8BITMIME\r\n"
                )
            elif verb == "ETRN":
                client.send(
                    self.etrn_replies.get(arg, f"250 Queuing for node {arg} started")
                    + "\r\n"
                )
            elif verb == "QUIT":
                client.send("221 bye\r\n")
                return
            else:
                client.send("502 unknown\r\n")


@dataclass
class Queued:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    # What the client answered, filled in by the server.
    rcpt_replies: list[str] = field(default_factory=list)
    final_reply: str = ""


class FakeOdmrServer(FakeServer):
    """An on-demand relay holding ``queue`` for the domains it was asked about."""

    def __init__(
        self,
        queue: list[Queued],
        *,
        user: str = "client.example",
        password: str = "odmr-secret",
        mechanisms: str = "CRAM-MD5 PLAIN",
        offer_atrn: bool = True,
        atrn_reply: str | None = None,
        hang_up_after: int | None = None,
    ) -> None:
        super().__init__()
        self.queue = queue
        self.user = user
        self.password = password
        self.mechanisms = mechanisms
        self.offer_atrn = offer_atrn
        self.atrn_reply = atrn_reply
        self.hang_up_after = hang_up_after  # messages sent before a rude close
        self.commands: list[str] = []
        self.atrn_domains: list[str] = []
        self.authenticated_as = ""
        self.turned_around = False
        self.greeting_after_turn = ""

    # -- the ISP server's side before the turnaround ---------------------------------

    def handle(self, client: FakeClient) -> None:
        client.send(f"220 {NAME} ODMR service ready\r\n")
        while True:
            line = _command(client)
            self.commands.append(line)
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                caps = [NAME, f"AUTH {self.mechanisms}"]
                if self.offer_atrn:
                    caps.append("ATRN")
                text = (
                    "".join(f"250-{c}\r\n" for c in caps[:-1]) + f"250 {caps[-1]}\r\n"
                )
                client.send(text)
            elif verb == "AUTH":
                self._auth(client, arg)
            elif verb == "ATRN":
                if not self.authenticated_as:
                    client.send("530 5.7.0 authentication required\r\n")
                    continue
                self.atrn_domains = arg.split(",")
                if self.atrn_reply is not None:
                    client.send(self.atrn_reply + "\r\n")
                    continue
                client.send("250 OK now reversing the connection\r\n")
                self._send_queue(client)
                return
            elif verb == "QUIT":
                client.send("221 bye\r\n")
                return
            else:
                client.send("502 5.5.1 unknown command\r\n")

    def _auth(self, client: FakeClient, arg: str) -> None:
        mechanism, _, initial = arg.partition(" ")
        if mechanism.upper() == "CRAM-MD5":
            challenge = b"<1896.697170952@odmr.isp.example>"
            client.send(b"334 " + base64.b64encode(challenge) + b"\r\n")
            answer = base64.b64decode(_command(client)).decode()
            user, _, digest = answer.rpartition(" ")
            wanted = hmac.new(
                self.password.encode(), challenge, hashlib.md5
            ).hexdigest()
            ok = user == self.user and hmac.compare_digest(digest, wanted)
        elif mechanism.upper() == "PLAIN":
            _, user, password = base64.b64decode(initial).decode().split("\0")
            ok = user == self.user and password == self.password
        else:
            client.send("504 5.5.4 mechanism not supported\r\n")
            return
        if ok:
            self.authenticated_as = self.user
            client.send("235 2.7.0 authenticated\r\n")
        else:
            client.send("535 5.7.8 authentication failed\r\n")

    # -- after the turnaround: we are the SMTP client ----------------------------------

    def _send_queue(self, client: FakeClient) -> None:
        self.turned_around = True
        self.greeting_after_turn = _reply(client)
        client.send(f"EHLO {NAME}\r\n")
        _reply(client)
        for number, item in enumerate(self.queue):
            if self.hang_up_after is not None and number >= self.hang_up_after:
                client.close()
                return
            client.send(f"MAIL FROM:<{item.mail_from}>\r\n")
            if not _reply(client).startswith("250"):
                item.final_reply = "MAIL refused"
                continue
            for rcpt in item.rcpt_tos:
                client.send(f"RCPT TO:<{rcpt}>\r\n")
                item.rcpt_replies.append(_reply(client))
            client.send("DATA\r\n")
            answer = _reply(client)
            if not answer.startswith("354"):
                item.final_reply = answer
                continue
            client.send(dot_stuff(item.data) + b".\r\n")
            item.final_reply = _reply(client)
        client.send("QUIT\r\n")
        _reply(client)

    def delivered(self) -> list[int]:
        """Indexes of the queued messages the client accepted (250 after the dot)."""
        return [i for i, q in enumerate(self.queue) if q.final_reply.startswith("250")]
