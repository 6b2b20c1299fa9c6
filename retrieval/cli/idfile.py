"""The command line's ledger: seen UIDs in one JSON file plus an append-only journal.

Layout of the file (``FORMAT``, version 1)::

    {"format": "fetchweb-idfile", "version": 1,
     "mailboxes": {"pop3://alice@mail.example.org":
                     {"INBOX": {"uidvalidity": null, "uids": {"UID": "<message-id>"},
                                "dates": {"UID": "2026-12-04T15:58:57+00:00"},
                                "partial": {"UID": ["rcpt@example.org"]}}}}}

``dates`` holds when each UID was first delivered (``--delete-after-days``
counts from it). It was added without a new version number: an idfile written
before has no ``dates``, and loads as before; the first poll that needs the age
of such an undated UID records that poll's time for it, so the message goes
N days after that poll, never earlier than the option asked. Older fetchweb
versions read a file with ``dates`` and keep the key as it is.

``partial`` lists, for a message still on the server, the recipients that
already have it (an LMTP listener that accepted some recipients and deferred
others): the engine's optional ``RecipientLedger``.

A mailbox is named by protocol, login and server (not port: moving to TLS on
another port keeps the record, as fetchmail's ``user@server`` key does; POP3 and
IMAP UIDs of one account differ, so the protocol is part of the name). A folder
keeps the UIDs of its latest UIDVALIDITY only: recording a UID under a new
UIDVALIDITY drops the old numbering, whose UIDs mean nothing any more.

Durability, by group commit (the engine's ``Ledger`` contract): every change is
one JSON line appended to ``IDFILE.journal`` with ``write`` before the call
returns, so it is in the kernel's hands and survives the death of this process;
:meth:`IdFile.sync` (``Ledger.sync``, which the engine calls before the server
may commit a deletion: POP3 QUIT, IMAP EXPUNGE) flushes all of them with one
``fdatasync``. The directory is synced once, when the journal is created. A
crash of the machine can lose lines written since the last sync: their messages
were not deleted yet, so they are delivered again, never lost. The journal is folded
into the file (written to a temporary file, synced, renamed over the idfile,
directory synced; then the journal is removed) when the idfile is closed, when
the journal passes ``COMPACT_BYTES``, and on opening after a crash. Replaying
a change twice does nothing more, so a crash at any point of that fold loses
nothing; a line torn by a crash while it was appended, and the zeros a machine
crash may leave where unsynced lines were to go, are ignored.

One process at a time: :meth:`IdFile.open` takes an exclusive ``flock`` on
``IDFILE.lock``; a second poll with the same idfile is refused (exit 8, as
fetchmail refuses a second instance).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Collection

    from retrieval.engine.ports import MessageKey
    from retrieval.engine.spec import MailboxSpec

FORMAT = "fetchweb-idfile"
VERSION = 1
# The journal's compact form, built once (json.dumps with separators builds
# an encoder per call).
_JOURNAL_ENCODER = json.JSONEncoder(separators=(",", ":"))
MAX_BYTES = 256 * 1024 * 1024
JOURNAL_SUFFIX = ".journal"
# A journal this long is folded into the file even while the idfile stays open.
COMPACT_BYTES = 1024 * 1024


class IdfileError(Exception):
    """The idfile cannot be used: unreadable, not ours, or not private (exit 6)."""


class IdfileBusy(IdfileError):
    """Another process holds the idfile's lock (exit 8)."""


def insecure_file(path: str) -> str | None:
    """fetchmail 6.4's ``prc_filecheck()``: why ``path`` may not be used, or None.

    It applies to the rcfile and the idfile alike, whether or not they hold a
    password: a missing file is fine; otherwise it must be a regular file
    (symbolic links are followed), owned by the effective user, with no group
    read or write and no access at all for others (group execute is tolerated,
    as fetchmail does).
    """
    if path in ("/dev/null", "-"):
        return None
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return f"File {path} must be a regular file."
    loose = stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH | stat.S_IWOTH | stat.S_IXOTH
    if st.st_mode & loose:
        return (
            f"File {path} must have no more than -rwx------ (0700) permissions "
            f"(it has {stat.filemode(st.st_mode)}; chmod 600 it)."
        )
    if st.st_uid != os.geteuid():
        return f"File {path} must be owned by you."
    return None


def mailbox_key(spec: MailboxSpec) -> str:
    return f"{spec.server.protocol.value}://{spec.username}@{spec.server.host}"


class IdFile:
    """The loaded idfile, locked for this process; :meth:`ledger` per mailbox."""

    def __init__(self, path: str, lock_fd: int, mailboxes: dict[str, Any]) -> None:
        self.path = path
        self.journal_path = path + JOURNAL_SUFFIX
        self._lock_fd = lock_fd
        self._mailboxes: dict[str, dict[str, dict[str, Any]]] = mailboxes
        self._journal_fd = -1
        self._journal_size = 0
        self._synced_size = 0  # journal bytes known to be on stable storage

    @classmethod
    def open(cls, path: str) -> IdFile:
        """Check, lock and read ``path`` (a missing file is an empty ledger).

        A journal left by a poll that did not close the idfile (a crash) is
        replayed and folded into the file before anything else happens.
        """
        if path == os.devnull:
            # Remember nothing, as fetchmail does with it (and never write
            # beside it: a rename over /dev/null would replace the device).
            return cls(path, -1, {})
        problem = insecure_file(path) or insecure_file(path + JOURNAL_SUFFIX)
        if problem:
            raise IdfileError(problem)
        directory = Path(path).parent
        if not os.access(directory, os.W_OK | os.X_OK):
            raise IdfileError(
                f"The idfile {path} cannot be written: its directory is missing or "
                "not writable."
            )
        lock_fd = _lock(path + ".lock")
        try:
            mailboxes = _read(path)
            ids = cls(path, lock_fd, mailboxes)
            if _replay(ids.journal_path, mailboxes):
                ids.save()
        except BaseException:
            os.close(lock_fd)
            raise
        return ids

    def close(self) -> None:
        """Fold the journal into the file and release the lock.

        A fold that fails leaves the journal, which is as durable as the file:
        the next :meth:`open` replays it.
        """
        if self._lock_fd < 0:
            return
        if self._journal_fd >= 0:
            with contextlib.suppress(IdfileError):
                self.save()
            self._close_journal()
        os.close(self._lock_fd)  # releases the flock
        self._lock_fd = -1

    def __enter__(self) -> IdFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ledger(self, key: str) -> FileLedger:
        return FileLedger(self, key)

    def folders(self, key: str) -> dict[str, dict[str, Any]]:
        return self._mailboxes.setdefault(key, {})

    def sync(self) -> None:
        """Make every journal line written so far durable: one ``fdatasync``."""
        if self._journal_fd < 0 or self._synced_size == self._journal_size:
            return
        try:
            os.fdatasync(self._journal_fd)
        except OSError as exc:
            raise IdfileError(
                f"The idfile {self.path} could not be written: {exc.strerror or exc}."
            ) from exc
        self._synced_size = self._journal_size

    def commit(self, change: dict[str, Any]) -> None:
        """Journal ``change`` (written, not yet synced), then apply it to the
        loaded record."""
        if self.path == os.devnull:
            _apply(self._mailboxes, change)
            return
        line = _JOURNAL_ENCODER.encode(change).encode() + b"\n"
        try:
            self._append(line)
        except OSError as exc:
            raise IdfileError(
                f"The idfile {self.path} could not be written: {exc.strerror or exc}."
            ) from exc
        _apply(self._mailboxes, change)
        if self._journal_size > COMPACT_BYTES:
            self.save()

    def _append(self, line: bytes) -> None:
        if self._journal_fd < 0:
            self._journal_fd = os.open(
                self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
            )
            self._journal_size = os.fstat(self._journal_fd).st_size
            self._synced_size = 0  # what it held before is older than this process
            _sync_directory(Path(self.path).parent)  # the journal must be found
        try:
            written = 0
            while written < len(line):
                written += os.write(self._journal_fd, line[written:])
        except OSError:
            # Cut a torn line off, so that the next change starts a clean one.
            with contextlib.suppress(OSError):
                os.ftruncate(self._journal_fd, self._journal_size)
            raise
        self._journal_size += len(line)

    def _close_journal(self) -> None:
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
            self._journal_fd = -1
            self._journal_size = 0
            self._synced_size = 0

    def save(self) -> None:
        """Replace the file atomically and durably with the current record, then
        drop the journal it now contains."""
        try:
            self._write()
            if self._journal_fd >= 0:
                os.ftruncate(self._journal_fd, 0)
                self._journal_size = self._synced_size = 0
            Path(self.journal_path).unlink(missing_ok=True)
            self._close_journal()
        except OSError as exc:
            raise IdfileError(
                f"The idfile {self.path} could not be written: {exc.strerror or exc}."
            ) from exc

    def _write(self) -> None:
        live = {k: v for k, v in self._mailboxes.items() if v}
        data = json.dumps(
            {"format": FORMAT, "version": VERSION, "mailboxes": live}, indent=1
        ).encode()
        target = Path(self.path)
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
        temporary = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            temporary.replace(target)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        _sync_directory(target.parent)  # the rename itself must survive a crash


class FileLedger:
    """:class:`~retrieval.engine.ports.Ledger` for one mailbox of an :class:`IdFile`."""

    def __init__(self, idfile: IdFile, key: str) -> None:
        self._idfile = idfile
        self._key = key
        self._folders = idfile.folders(key)

    def _record(self, folder: str, uidvalidity: int | None) -> dict[str, Any] | None:
        return _record(self._folders, folder, uidvalidity)

    def _commit(
        self, op: str, folder: str, uidvalidity: int | None, **fields: Any
    ) -> None:
        self._idfile.commit(
            {
                "op": op,
                "mailbox": self._key,
                "folder": folder,
                "uidvalidity": uidvalidity,
                **fields,
            }
        )

    def delivered_uids(self, folder: str, uidvalidity: int | None) -> set[str]:
        record = self._record(folder, uidvalidity)
        return set(record["uids"]) if record else set()

    def mark_delivered(
        self, key: MessageKey, message_id: str = "", at: datetime | None = None
    ) -> None:
        folder, uidvalidity, uid = key
        self._commit(
            _DELIVERED,
            folder,
            uidvalidity,
            uid=uid,
            message_id=message_id,
            at=_stamp(at or datetime.now(UTC)),
        )

    def delivery_dates(
        self, folder: str, uidvalidity: int | None, *, now: datetime
    ) -> dict[str, datetime]:
        record = self._record(folder, uidvalidity)
        if record is None:
            return {}
        undated = sorted(set(record["uids"]) - set(record.get("dates", {})))
        if undated:  # an idfile from before dates were kept: from now on
            self._commit(_DATED, folder, uidvalidity, uids=undated, at=_stamp(now))
        dates = record.get("dates", {})
        return {uid: datetime.fromisoformat(dates[uid]) for uid in record["uids"]}

    def delivered_recipients(self, key: MessageKey) -> set[str]:
        record = self._record(key.folder, key.uidvalidity)
        return set(record.get("partial", {}).get(key.uid, ())) if record else set()

    def mark_recipients_delivered(
        self, key: MessageKey, recipients: Collection[str]
    ) -> None:
        folder, uidvalidity, uid = key
        self._commit(
            _RECIPIENTS, folder, uidvalidity, uid=uid, recipients=list(recipients)
        )

    def last_uidvalidity(self, folder: str) -> int | None:
        record = self._folders.get(folder)
        return None if record is None else record["uidvalidity"]

    def sync(self) -> None:
        self._idfile.sync()

    def forget_missing(
        self, folder: str, uidvalidity: int | None, present: set[str]
    ) -> None:
        record = self._record(folder, uidvalidity)
        if record is None:
            return
        gone = (set(record["uids"]) | set(record.get("partial", {}))) - present
        if gone:
            self._commit(_FORGET, folder, uidvalidity, uids=sorted(gone))


# The journal's changes; each is idempotent, so a replay may repeat any tail.
_DELIVERED, _RECIPIENTS, _FORGET = "delivered", "recipients", "forget"
_DATED = "dated"  # undated UIDs (an older idfile) get a delivery date


def _stamp(at: datetime) -> str:
    """``at`` to the second, in UTC (one journal line per delivery carries it)."""
    if at.tzinfo is UTC:
        return _utc_second(int(at.timestamp() // 1))
    return at.astimezone(UTC).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=2)
def _utc_second(second: int) -> str:
    # Hundreds of deliveries share a second: formatted once.
    return datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")


def _record(
    folders: dict[str, dict[str, Any]], folder: str, uidvalidity: int | None
) -> dict[str, Any] | None:
    record = folders.get(folder)
    if record is None or record["uidvalidity"] != uidvalidity:
        return None
    return record


def _writable(
    folders: dict[str, dict[str, Any]], folder: str, uidvalidity: int | None
) -> dict[str, Any]:
    """The folder's record for this numbering; a new numbering drops the old."""
    record = _record(folders, folder, uidvalidity)
    if record is None:
        record = {"uidvalidity": uidvalidity, "uids": {}}
        folders[folder] = record
    return record


def _apply(mailboxes: dict[str, Any], change: dict[str, Any]) -> None:
    folders = mailboxes.setdefault(change["mailbox"], {})
    folder, uidvalidity, op = change["folder"], change["uidvalidity"], change["op"]
    if op == _FORGET:
        record = _record(folders, folder, uidvalidity)
        if record is not None:
            partial, dates = record.get("partial", {}), record.get("dates", {})
            for uid in change["uids"]:
                record["uids"].pop(uid, None)
                partial.pop(uid, None)
                dates.pop(uid, None)
        return
    if op == _DATED:
        record = _record(folders, folder, uidvalidity)
        if record is not None:
            dates = record.setdefault("dates", {})
            for uid in change["uids"]:
                if uid in record["uids"]:
                    dates.setdefault(uid, change["at"])
        return
    record = _writable(folders, folder, uidvalidity)
    uid = change["uid"]
    if op == _DELIVERED:
        record["uids"][uid] = change["message_id"]
        record.get("partial", {}).pop(uid, None)
        if change.get("at") is not None:  # absent in an older journal
            # The first delivery's date stays (fetchall with keep delivers again).
            record.setdefault("dates", {}).setdefault(uid, change["at"])
    else:
        done = record.setdefault("partial", {}).setdefault(uid, [])
        done.extend(r for r in change["recipients"] if r not in done)


def _replay(path: str, mailboxes: dict[str, Any]) -> bool:
    """Apply the journal at ``path`` to ``mailboxes``; True when it held changes."""
    try:
        with open(path, "rb") as fh:  # noqa: PTH123
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise IdfileError(f"{path}: {exc.strerror or exc}") from exc
    lines = raw.split(b"\n")
    # The last piece is empty, or a line torn by a crash: its call never returned.
    for line in lines[:-1]:
        if not line.strip(b"\0"):
            continue  # zeros where a machine crash lost unsynced lines
        try:
            change = json.loads(line)
        except ValueError:
            change = None
        if not _valid_change(change):
            raise IdfileError(f"{path} is damaged; move it away.")
        _apply(mailboxes, change)
    return bool(raw)


def _valid_change(change: Any) -> bool:
    if not isinstance(change, dict) or not isinstance(change.get("mailbox"), str):
        return False
    if not isinstance(change.get("folder"), str):
        return False
    validity = change.get("uidvalidity")
    if validity is not None and not isinstance(validity, int):
        return False
    op = change.get("op")
    if op == _FORGET:
        return _strings(change.get("uids"))
    if op == _DATED:
        return _strings(change.get("uids")) and _date(change.get("at"))
    if not isinstance(change.get("uid"), str):
        return False
    if op == _DELIVERED:
        at = change.get("at")
        return isinstance(change.get("message_id"), str) and (at is None or _date(at))
    return op == _RECIPIENTS and _strings(change.get("recipients"))


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _date(value: Any) -> bool:
    """An ISO 8601 time with its offset, as :func:`_stamp` writes it."""
    if not isinstance(value, str):
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _sync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _lock(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise IdfileError(f"{path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise IdfileBusy(
            f"Another poll is using the idfile {path.removesuffix('.lock')}; "
            "try again when it has finished."
        ) from None
    return fd


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:  # noqa: PTH123
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise IdfileError(f"{path}: {exc.strerror or exc}") from exc
    if not raw.strip():
        return {}
    if not raw.lstrip().startswith(b"{"):
        raise IdfileError(
            f"{path} is not a fetchweb idfile (fetchmail's own .fetchids cannot be "
            "shared); give another --idfile."
        )
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise IdfileError(f"{path} is damaged ({exc}); move it away.") from None
    if not _valid(data):
        raise IdfileError(
            f"{path} is not a {FORMAT} version {VERSION} file; move it away."
        )
    mailboxes: dict[str, Any] = data["mailboxes"]
    return mailboxes


def _valid(data: Any) -> bool:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return False
    if data.get("version") != VERSION or not isinstance(data.get("mailboxes"), dict):
        return False
    for folders in data["mailboxes"].values():
        if not isinstance(folders, dict):
            return False
        for record in folders.values():
            if not isinstance(record, dict) or not isinstance(record.get("uids"), dict):
                return False
            validity = record.get("uidvalidity")
            if validity is not None and not isinstance(validity, int):
                return False
            if not all(isinstance(v, str) for v in record["uids"].values()):
                return False
            partial = record.get("partial", {})
            if not isinstance(partial, dict) or not all(
                isinstance(v, list) for v in partial.values()
            ):
                return False
            dates = record.get("dates", {})
            if not isinstance(dates, dict) or not all(map(_date, dates.values())):
                return False
    return True
