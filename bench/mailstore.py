"""Mailboxes that can be refilled in milliseconds between runs.

Every message is written once, in Dovecot's own maildir form (LF line ends, the
sizes in the name as ``S=`` physical and ``W=`` CRLF size, so Dovecot never
reads a file to learn its size), into a pristine store. Before each run a
mailbox is emptied and refilled with hard links to the store: Dovecot never
rewrites a maildir file (a flag change is a rename, a delete an unlink), so the
store stays intact. The index is then built with one ``doveadm`` call, outside
the timed part, as a server in service would have it.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from bench.corpus import Corpus, write_big
from bench.verify import Expected, Manifest

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.dovecot import Dovecot

_BASE_TIME = 1_709_280_000  # the maildir names' timestamp part; only the order matters


class MailStore:
    def __init__(self, dovecot: Dovecot, root: Path, seed: str) -> None:
        self.dovecot = dovecot
        self.root = root
        self.seed = seed
        self.manifest = Manifest()  # every message stored, all users
        self._files: dict[str, list[tuple[str, str]]] = {}  # user -> [(mid, name)]

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self.dovecot.mail_uid, self.dovecot.mail_gid)

    def _name(self, n: int, lf_size: int, crlf_size: int) -> str:
        return f"{_BASE_TIME + n}.M{n:06d}P1.bench,S={lf_size},W={crlf_size}:2,"

    def fill(self, user: str, count: int) -> None:
        """Make sure the store holds the first ``count`` messages of ``user``."""
        have = self._files.setdefault(user, [])
        if len(have) >= count:
            return
        store = self.root / user
        store.mkdir(parents=True, exist_ok=True)
        corpus = Corpus(self.seed, user)
        for n in range(len(have), count):
            message = corpus.message(n)
            flat = message.raw.replace(b"\r\n", b"\n")
            name = self._name(n, len(flat), message.size)
            (store / name).write_bytes(flat)
            self._own(store / name)
            have.append((message.mid, name))
            self.manifest[message.mid] = message.expected

    def fill_big(self, user: str, size: int) -> None:
        """One message of ``size`` bytes as ``user``'s whole mailbox."""
        if user in self._files:
            return
        store = self.root / user
        store.mkdir(parents=True, exist_ok=True)
        temporary = store / "big.tmp"
        mid, expected = write_big(temporary, size, self.seed, user)
        name = self._name(0, temporary.stat().st_size, expected.size)
        temporary.rename(store / name)
        self._own(store / name)
        self._files[user] = [(mid, name)]
        self.manifest[mid] = expected

    def expected(self, user: str, count: int) -> dict[str, Expected]:
        return {mid: self.manifest[mid] for mid, _ in self._files[user][:count]}

    def maildir(self, user: str) -> Path:
        return self.dovecot.home(user) / "Maildir"

    def load(self, loads: dict[str, int]) -> None:
        """Empty each user's mailbox, refill it with its first n messages (user ->
        n), and let Dovecot index them."""
        for user, count in loads.items():
            self.empty(user)
            cur = self.maildir(user) / "cur"
            for mid_name in self._files[user][:count]:
                os.link(self.root / user / mid_name[1], cur / mid_name[1])
        self.index(list(loads))

    def empty(self, user: str) -> None:
        home = self.dovecot.home(user)
        shutil.rmtree(home, ignore_errors=True)
        for path in (
            home,
            home / "Maildir",
            *(home / "Maildir" / d for d in ("cur", "new", "tmp")),
        ):
            path.mkdir(mode=0o700)
            self._own(path)

    def index(self, users: list[str]) -> None:
        listing = self.root / "users.txt"
        listing.write_text("".join(u + "\n" for u in users))
        self.dovecot.doveadm(
            "mailbox", "status", "-F", str(listing), "messages", "INBOX"
        )

    def count(self, user: str) -> int:
        """Messages now in the mailbox (files flagged \\Deleted but not expunged
        still count: the mailbox is not empty until they are gone)."""
        return sum(
            1 for d in ("cur", "new") for _ in (self.maildir(user) / d).iterdir()
        )

    def delivered(self, user: str) -> list[bytes]:
        """What Dovecot's LMTP stored for ``user``, in CRLF form again."""
        out = []
        for sub in ("new", "cur"):
            for path in sorted((self.maildir(user) / sub).iterdir()):
                out.append(path.read_bytes().replace(b"\n", b"\r\n"))
        return out
