"""IMAP commands sent together (retrieval/engine/fetch/imap.py): the two
searches of a listing where results carry their tag (ESEARCH), and the STORE
and UID EXPUNGE of the deletes (and UNSELECT of a kept session) in one write."""

from __future__ import annotations

import pytest

from retrieval.engine.errors import ServerError
from retrieval.engine.fetch.imap import ImapSession, Response
from retrieval.engine.fetch.kept import KeptSessions
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus
from retrieval.engine.run import poll
from retrieval.engine.spec import MailProtocol
from tests.support.fake_servers import FakeImapServer, FakeSmtpServer

from .conftest import make_spec, message, without_trace

PLAIN = ["IMAP4rev1", "AUTH=PLAIN"]


def run(server: FakeImapServer, listener: FakeSmtpServer, **options: object):
    transcript = ListTranscript()
    spec = make_spec(server, listener, protocol=MailProtocol.IMAP, **options)  # type: ignore[arg-type]
    report = poll(spec, ledger=MemoryLedger(), transcript=transcript)
    return report, transcript.text()


def one_write(text: str, *commands: str) -> bool:
    """``commands`` were sent one after the other with no reply between them
    (the transcript records a write's lines before anything is read)."""
    lines = [line for line in text.splitlines() if line.startswith(("C: ", "S: "))]

    def sent(line: str, command: str) -> bool:  # "C: A0005 UID SEARCH ..."
        return line.startswith("C: ") and line[3:].partition(" ")[2].startswith(command)

    for at, line in enumerate(lines):
        if sent(line, commands[0]):
            following = lines[at : at + len(commands)]
            return len(following) == len(commands) and all(
                sent(f, c) for f, c in zip(following, commands, strict=True)
            )
    return False


class RoundTripTests:
    @pytest.mark.parametrize(
        ("fewer", "richer"),
        [
            (PLAIN, [*PLAIN, "UIDPLUS"]),
            ([*PLAIN, "UIDPLUS"], [*PLAIN, "UIDPLUS", "ESEARCH"]),
        ],
        ids=["store-and-expunge", "searches"],
    )
    def test_each_extension_saves_one_round_trip(
        self, fewer: list[str], richer: list[str]
    ) -> None:
        turns, outcomes = [], []
        for capabilities in (fewer, richer):
            with (
                FakeSmtpServer() as listener,
                FakeImapServer(
                    [message(1), message(2), message(3)], capabilities=capabilities
                ) as server,
            ):
                server.messages[1].flags.add("\\Seen")
                report, _ = run(server, listener)
                assert report.exit_code is ExitCode.SUCCESS, report.error
                outcomes.append(
                    (
                        [without_trace(r.data) for r in listener.received],
                        [(m.uid, sorted(m.flags)) for m in server.messages],
                    )
                )
                turns.append(server.turns)
        assert (
            outcomes[0]
            == outcomes[1]
            == ([message(1), message(3)], [(102, ["\\Seen"])])
        )
        assert turns[0] - turns[1] == 1

    def test_the_searches_go_out_together_with_esearch(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer([message(1)], capabilities=[*PLAIN, "ESEARCH"]) as server:
            _, text = run(server, listener)
        assert one_write(
            text,
            "UID SEARCH RETURN (ALL) NOT DELETED",
            "UID SEARCH RETURN (ALL) UNSEEN NOT DELETED",
        )

    def test_one_after_the_other_without_it(self, listener: FakeSmtpServer) -> None:
        with FakeImapServer([message(1)], capabilities=PLAIN) as server:
            _, text = run(server, listener)
        assert not one_write(text, "UID SEARCH NOT DELETED", "UID SEARCH UNSEEN")
        assert "UID SEARCH UNSEEN NOT DELETED" in text

    def test_a_kept_session_leaves_the_folder_in_the_same_write(
        self, listener: FakeSmtpServer
    ) -> None:
        kept = KeptSessions(300)
        caps = [*PLAIN, "UIDPLUS", "UNSELECT"]
        with FakeImapServer([message(1)], capabilities=caps) as server:
            spec = make_spec(server, listener, protocol=MailProtocol.IMAP)
            transcript = ListTranscript()
            report = poll(spec, ledger=MemoryLedger(), transcript=transcript, kept=kept)
            kept.close_all()
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert one_write(
            transcript.text(), "UID STORE 101", "UID EXPUNGE 101", "UNSELECT"
        )
        assert server.messages == []


class RefusalTests:
    def test_a_refused_store_deletes_nothing_and_says_so(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer(
            [message(1)],
            capabilities=[*PLAIN, "UIDPLUS"],
            overrides={"UID STORE": b"{tag} NO [CANNOT] not now\r\n"},
        ) as server:
            report, _ = run(server, listener)
        # Delivered and recorded; the delete waits for the next poll.
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert "refused to mark messages for deletion" in "\n".join(report.notes)
        assert [without_trace(r.data) for r in listener.received] == [message(1)]
        assert [m.status for m in report.messages] == [MessageStatus.DELIVERED]
        assert not report.messages[0].deleted
        # The UID EXPUNGE that went with it removed nothing unflagged.
        assert [(m.uid, m.flags) for m in server.messages] == [(101, set())]

    def test_a_refused_expunge_leaves_the_messages_flagged(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer(
            [message(1)],
            capabilities=[*PLAIN, "UIDPLUS"],
            overrides={"UID EXPUNGE": b"{tag} NO [CANNOT] not now\r\n"},
        ) as server:
            report, text = run(server, listener)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert not report.messages[0].deleted
        assert "EXPUNGE refused; the messages stay flagged for next time" in text
        assert [(m.uid, m.flags) for m in server.messages] == [(101, {"\\Deleted"})]


def esearch(tag: str, uids: str) -> bytes:
    return f'* ESEARCH (TAG "{tag}") UID ALL {uids}'.encode()


class SearchResultTests:
    """Results of searches sent together, whatever order they come back in."""

    def test_each_result_goes_to_the_command_whose_tag_it_names(self) -> None:
        first = Response("A5", "OK", "done", [esearch("A6", "2"), esearch("A5", "1:3")])
        second = Response("A6", "OK", "done", [])
        assert ImapSession._search_result(first, second.untagged) == [1, 2, 3]
        assert ImapSession._search_result(second, first.untagged) == [2]

    def test_a_result_naming_no_tag_counts_only_where_it_came(self) -> None:
        first = Response("A5", "OK", "done", [b"* ESEARCH UID ALL 1:2"])
        second = Response("A6", "OK", "done", [b"* SEARCH 7"])
        assert ImapSession._search_result(first, second.untagged) == [1, 2]
        assert ImapSession._search_result(second, first.untagged) == [7]

    def test_a_refused_search_is_a_server_error(self) -> None:
        with pytest.raises(ServerError, match="could not list the folder"):
            ImapSession._search_result(Response("A5", "NO", "busy"), [])
