"""What is measured: a case is a protocol plus modifiers, named like ``imaps-keep``.

``pop3`` and ``imap`` are the plain ports with no TLS at all (``sslproto ''``:
fetchmail would otherwise upgrade with STARTTLS when offered); ``pop3s`` and
``imaps`` are implicit TLS with the certificate checked. Modifiers:

* ``keep``: leave the messages on the server (the default deletes them);
* ``delayed``: the listener with the kernel's ordinary delayed ACKs;
* ``lmtp``: deliver into Dovecot's own LMTP instead of the bench listener;
* ``slow``: through the latency proxy (10 ms each way by default);
* ``big``: one message of ``--big-mb`` MB, where peak RSS is the figure;
* ``many``: ``--users`` mailboxes of ``--per-user`` messages, one rcfile.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOLS = {
    "pop3": ("pop3", False),
    "pop3s": ("pop3", True),
    "imap": ("imap", False),
    "imaps": ("imap", True),
}
MODIFIERS = ("keep", "delayed", "lmtp", "slow", "big", "many")

DEFAULT_CASES = (
    "pop3",
    "pop3s",
    "imap",
    "imaps",
    "pop3-keep",
    "pop3s-keep",
    "imap-keep",
    "imaps-keep",
    "pop3-delayed",
    "pop3s-delayed",
    "imap-delayed",
    "imaps-delayed",
    "pop3-lmtp",
    "imap-lmtp",
    "pop3-slow",
    "imap-slow",
    "pop3-big",
    "imap-big",
    "pop3-many",
    "imap-many",
)

# Messages per run. Latency-bound cases get fewer: fetchmail needs ~43 ms a
# message there, and the per-message cost is what is measured, not the total.
FULL_MESSAGES = 2000
LATENCY_MESSAGES = 500


@dataclass(frozen=True)
class Case:
    name: str
    protocol: str  # "pop3" | "imap"
    tls: bool
    keep: bool = False
    delayed: bool = False
    lmtp: bool = False
    slow: bool = False
    big: bool = False
    many: bool = False

    @property
    def latency_bound(self) -> bool:
        return self.delayed or self.slow

    @property
    def single(self) -> bool:
        return not (self.big or self.many)

    @property
    def ack(self) -> str:
        return "delayed" if self.delayed else "quick"


class CaseError(ValueError):
    pass


def parse_case(name: str) -> Case:
    base, *mods = name.strip().lower().split("-")
    if base not in PROTOCOLS:
        raise CaseError(f"{name}: starts with one of {', '.join(PROTOCOLS)}")
    unknown = [m for m in mods if m not in MODIFIERS]
    if unknown:
        raise CaseError(
            f"{name}: unknown modifier {unknown[0]!r} (known: {', '.join(MODIFIERS)})"
        )
    flags = {m: True for m in mods}
    if flags.get("lmtp") and flags.get("delayed"):
        raise CaseError(
            f"{name}: 'delayed' is a mode of the bench listener, not of LMTP"
        )
    if flags.get("big") and flags.get("many"):
        raise CaseError(f"{name}: 'big' and 'many' exclude each other")
    protocol, tls = PROTOCOLS[base]
    canonical = "-".join([base, *(m for m in MODIFIERS if m in flags)])
    return Case(name=canonical, protocol=protocol, tls=tls, **flags)


def parse_cases(text: str) -> list[Case]:
    names = DEFAULT_CASES if text.strip() in ("", "all") else text.split(",")
    cases = [parse_case(n) for n in names if n.strip()]
    return list({c.name: c for c in cases}.values())  # first of each name, in order


def messages_for(case: Case, override: int | None) -> int:
    """Messages in the single mailbox of a run (``big`` and ``many`` have their
    own sizes)."""
    if override is not None:
        return override
    return LATENCY_MESSAGES if case.latency_bound else FULL_MESSAGES
