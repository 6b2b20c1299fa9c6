import json
import smtplib
import socket
import threading

import pytest

from bench.listener import Listener
from bench.verify import Expected, Manifest

SOURCE = (
    b"Message-ID: <1@example.net>\r\nSubject: dots\r\n\r\n"
    b".one dot\r\n..two dots\r\n.\r\nend\r\n"
)


@pytest.fixture(params=["quick", "delayed"])
def listener(request, tmp_path):
    def start(lmtp=False):
        server = Listener(
            lmtp=lmtp,
            quickack=request.param == "quick",
            manifest=Manifest({"<1@example.net>": Expected.of(SOURCE)}),
            records=tmp_path / "records.jsonl",
            failures=tmp_path,
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    return start


def records(server):
    path = server.failures / "records.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_smtp_delivery_is_dot_unstuffed_checked_and_recorded(listener):
    server = listener()
    with smtplib.SMTP("127.0.0.1", server.port) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("pipelining")
        smtp.sendmail("a@example.net", ["b@example.org"], b"Received: x\r\n" + SOURCE)
        smtp.sendmail(
            "a@example.net", ["b@example.org"], SOURCE.replace(b"end", b"END")
        )
    rows = records(server)
    assert [r["ok"] for r in rows] == [True, False]
    assert rows[0]["mid"] == "<1@example.net>"
    assert rows[1]["why"] == "body differs from the source"
    assert len(list(server.failures.glob("failed-*.eml"))) == 1


def test_pipelined_commands_get_their_replies_in_order(listener):
    server = listener()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
        lines = [f.readline() for _ in range(8)]
        assert lines[-1].startswith(b"354")
        stuffed = SOURCE.replace(b"\r\n.", b"\r\n..")
        s.sendall(stuffed + b".\r\nRSET\r\nNOOP\r\nVRFY x\r\nQUIT\r\n")
        replies = [f.readline()[:3] for _ in range(5)]
    assert replies == [b"250", b"250", b"250", b"502", b"221"]
    assert records(server)[0]["ok"]


def test_lmtp_answers_once_per_recipient(listener):
    server = listener(lmtp=True)
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"LHLO me\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        s.sendall(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n")
        assert [f.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
        s.sendall(SOURCE + b".\r\n")
        assert [f.readline()[:3] for _ in range(2)] == [b"250", b"250"]
    assert records(server)[0]["rcpts"] == 2


def test_data_without_recipients_is_refused(listener):
    server = listener()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"HELO me\r\nDATA\r\nQUIT\r\n")
        assert [f.readline()[:3] for _ in range(3)] == [b"250", b"503", b"221"]
