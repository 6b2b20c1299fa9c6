"""The idfile's journal: durable per change, folded into the file, replayed after
a crash (see :mod:`retrieval.cli.idfile`).

A crash is a forked child that records changes and leaves with ``os._exit``:
nothing is closed or flushed behind its back, as after a kill.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.cli import idfile
from retrieval.cli.idfile import IdFile, IdfileError
from retrieval.engine.ports import MessageKey

if TYPE_CHECKING:
    from collections.abc import Callable

BOX = "pop3://alice@mail.example.org"


def crash_after(path: Path, work: Callable[[IdFile], None]) -> None:
    """Run ``work`` on the idfile in a child process that then dies abruptly."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            work(IdFile.open(str(path)))
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def on_disk(path: Path) -> dict[str, object]:
    mailboxes: dict[str, object] = json.loads(path.read_bytes())["mailboxes"]
    return mailboxes


def test_mark_delivered_survives_a_crash_right_after_it_returns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ids"
    crash_after(
        path,
        lambda ids: ids.ledger(BOX).mark_delivered(
            MessageKey("INBOX", 7, "101"),
            "<m1@x>",
            at=datetime(2026, 12, 4, 15, 58, tzinfo=UTC),
        ),
    )
    assert not path.exists()  # only the journal holds it
    assert (tmp_path / "ids.journal").stat().st_mode & 0o777 == 0o600
    with IdFile.open(str(path)) as ids:
        ledger = ids.ledger(BOX)
        assert ledger.delivered_uids("INBOX", 7) == {"101"}
        assert ledger.delivered_uids("INBOX", 8) == set()
        assert ledger.last_uidvalidity("INBOX") == 7
        assert ledger.last_uidvalidity("Other") is None
    # Opening folded the journal into the file.
    assert on_disk(path) == {
        BOX: {
            "INBOX": {
                "uidvalidity": 7,
                "uids": {"101": "<m1@x>"},
                "dates": {"101": "2026-12-04T15:58:00+00:00"},
            }
        }
    }
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids", "ids.lock"]


def test_marks_are_written_at_once_and_synced_together_by_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: each mark is written (a killed process keeps it), and one
    fdatasync at ``sync`` makes all of them durable (a machine crash too)."""
    synced: list[tuple[str, str]] = []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def name(fd: int) -> str:
        return str(Path(f"/proc/self/fd/{fd}").readlink())

    def fsync(fd: int) -> None:
        synced.append(("fsync", name(fd)))
        real_fsync(fd)

    def fdatasync(fd: int) -> None:
        synced.append(("fdatasync", name(fd)))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    with IdFile.open(str(tmp_path / "ids")) as ids:
        ledger = ids.ledger(BOX)
        ledger.mark_delivered(MessageKey("INBOX", None, "u1"))
        journal = str(tmp_path / "ids.journal")
        # The directory once (the new journal must be found); the line is written.
        assert synced == [("fsync", str(tmp_path))]
        assert b'"u1"' in Path(journal).read_bytes()
        ledger.mark_delivered(MessageKey("INBOX", None, "u2"))
        ledger.mark_recipients_delivered(MessageKey("INBOX", None, "u3"), ["a@b"])
        assert synced == [("fsync", str(tmp_path))]
        ledger.sync()
        assert synced[1:] == [("fdatasync", journal)]
        ledger.sync()  # nothing new: no second flush
        assert synced[1:] == [("fdatasync", journal)]
        ledger.mark_delivered(MessageKey("INBOX", None, "u4"))
        ledger.sync()
        assert synced[1:] == [("fdatasync", journal)] * 2
        synced.clear()
    # Closing writes the file the safe way: temporary file, then directory.
    assert synced[0][0] == "fsync"
    assert Path(synced[0][1]).name.startswith(".ids.")
    assert synced[1] == ("fsync", str(tmp_path))


def test_a_failed_write_records_nothing_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ids"
    with IdFile.open(str(path)) as ids:
        ledger = ids.ledger(BOX)
        ledger.mark_delivered(MessageKey("INBOX", None, "u1"))
        journal = (tmp_path / "ids.journal").read_bytes()

        real_write = os.write

        def full_disk_write(fd: int, data: bytes) -> int:
            real_write(fd, data[: len(data) // 2])  # half a line, then the error
            raise OSError(28, "No space left on device")

        with monkeypatch.context() as patch:
            patch.setattr(os, "write", full_disk_write)
            with pytest.raises(IdfileError, match="No space left on device"):
                ledger.mark_delivered(MessageKey("INBOX", None, "u2"))
        assert ledger.delivered_uids("INBOX", None) == {"u1"}
        # The unsynced line was cut off: the journal is as it was.
        assert (tmp_path / "ids.journal").read_bytes() == journal
        # The next change goes on.
        ledger.mark_delivered(MessageKey("INBOX", None, "u3"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids", "ids.lock"]
    with IdFile.open(str(path)) as ids:
        assert ids.ledger(BOX).delivered_uids("INBOX", None) == {"u1", "u3"}


def test_a_failed_sync_is_an_error_and_the_next_open_keeps_every_mark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ids"
    ids = IdFile.open(str(path))
    ids.ledger(BOX).mark_delivered(MessageKey("INBOX", None, "u1"))

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fdatasync", failing)
        with pytest.raises(IdfileError, match="Input/output error"):
            ids.ledger(BOX).sync()
    os.close(ids._lock_fd)  # the process dies here: no fold at close
    with IdFile.open(str(path)) as again:
        assert again.ledger(BOX).delivered_uids("INBOX", None) == {"u1"}


def test_zeros_left_by_a_machine_crash_in_the_journal_are_ignored(
    tmp_path: Path,
) -> None:
    """Lines written but never synced may come back as zeros after a power cut:
    they belong to messages whose deletion was never committed."""
    path = tmp_path / "ids"
    crash_after(
        path, lambda ids: ids.ledger(BOX).mark_delivered(MessageKey("INBOX", 1, "5"))
    )
    journal = tmp_path / "ids.journal"
    with journal.open("ab") as fh:
        fh.write(b"\0" * 70 + b"\n" + b"\0" * 30)
    with IdFile.open(str(path)) as ids:
        assert ids.ledger(BOX).delivered_uids("INBOX", 1) == {"5"}


def test_a_failed_fold_at_close_keeps_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ids"
    with IdFile.open(str(path)) as ids:
        ids.ledger(BOX).mark_delivered(MessageKey("INBOX", None, "u1"))

        def full_disk(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", full_disk)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.journal", "ids.lock"]
    with IdFile.open(str(path)) as ids:
        assert ids.ledger(BOX).delivered_uids("INBOX", None) == {"u1"}


def test_a_line_torn_by_a_crash_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "ids"
    crash_after(
        path, lambda ids: ids.ledger(BOX).mark_delivered(MessageKey("INBOX", 1, "5"))
    )
    journal = tmp_path / "ids.journal"
    whole = journal.read_bytes()
    with journal.open("ab") as fh:
        fh.write(whole[: len(whole) // 2].replace(b'"5"', b'"6"'))
    with IdFile.open(str(path)) as ids:
        assert ids.ledger(BOX).delivered_uids("INBOX", 1) == {"5"}


@pytest.mark.parametrize(
    "line",
    [
        b"{not json}\n",
        b'{"op": "delivered", "mailbox": "k", "folder": "INBOX"}\n',
        b'{"op": "delivered", "mailbox": "k", "folder": "I", "uidvalidity": "1",'
        b' "uid": "u", "message_id": ""}\n',
        b'{"op": "forget", "mailbox": "k", "folder": "I", "uids": [1]}\n',
        b'{"op": "other", "mailbox": "k", "folder": "I", "uid": "u"}\n',
        b"[]\n",
    ],
)
def test_a_damaged_journal_is_refused(tmp_path: Path, line: bytes) -> None:
    journal = tmp_path / "ids.journal"
    journal.write_bytes(line)
    journal.chmod(0o600)
    with pytest.raises(IdfileError, match="is damaged"):
        IdFile.open(str(tmp_path / "ids"))
    assert journal.read_bytes() == line  # left for a person to look at


def test_a_journal_readable_by_others_is_refused(tmp_path: Path) -> None:
    journal = tmp_path / "ids.journal"
    journal.write_bytes(b"")
    journal.chmod(0o644)
    with pytest.raises(IdfileError, match="no more than -rwx------"):
        IdFile.open(str(tmp_path / "ids"))


def test_a_long_journal_is_folded_while_the_idfile_stays_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idfile, "COMPACT_BYTES", 400)  # three changes
    path = tmp_path / "ids"
    journal = tmp_path / "ids.journal"
    with IdFile.open(str(path)) as ids:
        ledger = ids.ledger(BOX)
        ledger.mark_delivered(MessageKey("INBOX", None, "u0"))
        assert journal.exists()
        assert not path.exists()
        for n in range(1, 10):
            ledger.mark_delivered(MessageKey("INBOX", None, f"u{n}"))
        folded = on_disk(path)[BOX]  # folded at least once already
        assert isinstance(folded, dict)
        assert 3 <= len(folded["INBOX"]["uids"]) < 10
    inbox = on_disk(path)[BOX]["INBOX"]  # type: ignore[index]
    assert inbox["uids"] == {f"u{n}": "" for n in range(10)}
    assert set(inbox["dates"]) == set(inbox["uids"])


def test_a_fold_interrupted_before_the_journal_is_gone_changes_nothing(
    tmp_path: Path,
) -> None:
    """The crash window of a fold: new file in place, old journal still there."""
    path = tmp_path / "ids"
    journal = tmp_path / "ids.journal"
    with IdFile.open(str(path)) as ids:
        ledger = ids.ledger(BOX)
        ledger.mark_delivered(MessageKey("INBOX", 1, "a"))
        ledger.mark_recipients_delivered(MessageKey("INBOX", 1, "b"), ["x@y"])
        ledger.mark_recipients_delivered(MessageKey("INBOX", 1, "b"), ["z@y", "x@y"])
        ledger.mark_delivered(MessageKey("INBOX", 2, "c"))
        ledger.mark_recipients_delivered(MessageKey("INBOX", 2, "d"), ["x@y"])
        ledger.mark_delivered(MessageKey("INBOX", 2, "e"))
        ledger.forget_missing("INBOX", 2, {"d"})
        ledger.mark_delivered(MessageKey("INBOX", 2, "f"))
        left = journal.read_bytes()
    folded = path.read_bytes()
    journal.write_bytes(left)
    journal.chmod(0o600)
    with IdFile.open(str(path)):
        pass
    assert path.read_bytes() == folded
    inbox = on_disk(path)[BOX]["INBOX"]  # type: ignore[index]
    assert set(inbox.pop("dates")) == {"f"}  # the forgotten UIDs' dates went too
    assert inbox == {"uidvalidity": 2, "uids": {"f": ""}, "partial": {"d": ["x@y"]}}


_UID = st.sampled_from(["u1", "u2", "u3", "u4"])
_CHANGE = st.one_of(
    st.tuples(st.just("delivered"), st.sampled_from([None, 1, 2]), _UID),
    st.tuples(
        st.just("recipients"),
        st.sampled_from([None, 1, 2]),
        _UID,
        st.lists(st.sampled_from(["a@x", "b@x"]), max_size=2),
    ),
    st.tuples(
        st.just("forget"), st.sampled_from([None, 1, 2]), st.sets(_UID, max_size=4)
    ),
)


@settings(max_examples=40, deadline=None)
@given(changes=st.lists(_CHANGE, max_size=12), crash=st.booleans())
def test_what_was_recorded_is_what_is_read_back(
    tmp_path_factory: pytest.TempPathFactory,
    changes: list[tuple[object, ...]],
    crash: bool,
) -> None:
    """Closed or crashed, the next open sees the state the ledger had."""
    path = tmp_path_factory.mktemp("ids") / "ids"

    def record(ids: IdFile) -> None:
        ledger = ids.ledger(BOX)
        for change in changes:
            op, validity = change[0], change[1]
            assert validity is None or isinstance(validity, int)
            if op == "delivered":
                ledger.mark_delivered(
                    MessageKey("INBOX", validity, str(change[2])), "<id>"
                )
            elif op == "recipients":
                recipients = change[3]
                assert isinstance(recipients, list)
                ledger.mark_recipients_delivered(
                    MessageKey("INBOX", validity, str(change[2])), recipients
                )
            else:
                present = change[2]
                assert isinstance(present, set)
                ledger.forget_missing("INBOX", validity, present)
        with (path.parent / "expected").open("w") as fh:
            json.dump(ids.folders(BOX), fh)

    if crash:
        crash_after(path, record)
    else:
        with IdFile.open(str(path)) as ids:
            record(ids)
    expected = json.loads((path.parent / "expected").read_text())
    with IdFile.open(str(path)) as ids:
        assert ids.folders(BOX) == expected


def test_dev_null_remembers_for_the_run_only_and_stays_a_device() -> None:
    with IdFile.open(os.devnull) as ids:
        ledger = ids.ledger(BOX)
        ledger.mark_delivered(MessageKey("INBOX", None, "u1"))
        assert ledger.delivered_uids("INBOX", None) == {"u1"}
    assert Path(os.devnull).is_char_device()
    assert not Path(os.devnull + ".journal").exists()
    assert not Path(os.devnull + ".lock").exists()
    with IdFile.open(os.devnull) as ids:
        assert ids.ledger(BOX).delivered_uids("INBOX", None) == set()
