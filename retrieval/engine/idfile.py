"""The command line's ledger: seen UIDs in one JSON file, replaced atomically.

Layout (``FORMAT``, version 1)::

    {"format": "fetchweb-idfile", "version": 1,
     "mailboxes": {"pop3://alice@mail.example.org":
                     {"INBOX": {"uidvalidity": null, "uids": {"UID": "<message-id>"},
                                "partial": {"UID": ["rcpt@example.org"]}}}}}

``partial`` lists, for a message still on the server, the recipients that
already have it (an LMTP listener that accepted some recipients and deferred
others): the engine's optional ``RecipientLedger``.

A mailbox is named by protocol, login and server (not port: moving to TLS on
another port keeps the record, as fetchmail's ``user@server`` key does; POP3 and
IMAP UIDs of one account differ, so the protocol is part of the name). A folder
keeps the UIDs of its latest UIDVALIDITY only: recording a UID under a new
UIDVALIDITY drops the old numbering, whose UIDs mean nothing any more.

Every change is written to a temporary file in the same directory, flushed with
``fsync``, renamed over the idfile, and the directory is synced, before the
call returns: ``mark_delivered`` is durable when it returns, as the engine's
``Ledger`` contract requires, and a crash leaves either the old file or the new
one, never a torn one. The whole file is rewritten each time: cheap for the
hundreds of UIDs a mailbox usually holds, linear in their number.

One process at a time: :meth:`IdFile.open` takes an exclusive ``flock`` on
``IDFILE.lock``; a second poll with the same idfile is refused (exit 8, as
fetchmail refuses a second instance).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Collection

    from retrieval.engine.spec import MailboxSpec

FORMAT = "fetchweb-idfile"
VERSION = 1
MAX_BYTES = 256 * 1024 * 1024


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
        self._lock_fd = lock_fd
        self._mailboxes: dict[str, dict[str, dict[str, Any]]] = mailboxes

    @classmethod
    def open(cls, path: str) -> IdFile:
        """Check, lock and read ``path`` (a missing file is an empty ledger)."""
        problem = insecure_file(path)
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
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, lock_fd, mailboxes)

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def __enter__(self) -> IdFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ledger(self, key: str) -> FileLedger:
        return FileLedger(self, self._mailboxes.setdefault(key, {}))

    def save(self) -> None:
        """Replace the file atomically and durably with the current record."""
        try:
            self._write()
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
        dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a crash
        finally:
            os.close(dir_fd)


class FileLedger:
    """:class:`~retrieval.engine.ports.Ledger` for one mailbox of an :class:`IdFile`."""

    def __init__(self, idfile: IdFile, folders: dict[str, dict[str, Any]]) -> None:
        self._idfile = idfile
        self._folders = folders

    def _record(self, folder: str, uidvalidity: int | None) -> dict[str, Any] | None:
        record = self._folders.get(folder)
        if record is None or record["uidvalidity"] != uidvalidity:
            return None
        return record

    def _writable(self, folder: str, uidvalidity: int | None) -> dict[str, Any]:
        """The folder's record for this numbering; a new numbering drops the old."""
        record = self._record(folder, uidvalidity)
        if record is None:
            record = {"uidvalidity": uidvalidity, "uids": {}}
            self._folders[folder] = record
        return record

    def delivered_uids(self, folder: str, uidvalidity: int | None) -> set[str]:
        record = self._record(folder, uidvalidity)
        return set(record["uids"]) if record else set()

    def mark_delivered(
        self,
        folder: str,
        uidvalidity: int | None,
        uid: str,
        message_id: str = "",
    ) -> None:
        record = self._writable(folder, uidvalidity)
        record["uids"][uid] = message_id
        record.get("partial", {}).pop(uid, None)
        self._idfile.save()

    def delivered_recipients(
        self, folder: str, uidvalidity: int | None, uid: str
    ) -> set[str]:
        record = self._record(folder, uidvalidity)
        return set(record.get("partial", {}).get(uid, ())) if record else set()

    def mark_recipients_delivered(
        self,
        folder: str,
        uidvalidity: int | None,
        uid: str,
        recipients: Collection[str],
    ) -> None:
        record = self._writable(folder, uidvalidity)
        done = record.setdefault("partial", {}).setdefault(uid, [])
        done.extend(r for r in recipients if r not in done)
        self._idfile.save()

    def last_uidvalidity(self, folder: str) -> int | None:
        record = self._folders.get(folder)
        return None if record is None else record["uidvalidity"]

    def forget_missing(
        self, folder: str, uidvalidity: int | None, present: set[str]
    ) -> None:
        record = self._record(folder, uidvalidity)
        if record is None:
            return
        uids, partial = record["uids"], record.get("partial", {})
        gone = (set(uids) | set(partial)) - present
        if not gone:
            return
        for uid in gone:
            uids.pop(uid, None)
            partial.pop(uid, None)
        self._idfile.save()


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
    return True
