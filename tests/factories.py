"""Rows for Django-side tests: people, domains and mailboxes with sensible defaults."""

from __future__ import annotations

import itertools
from typing import Any

from accounts.models import Domain, User
from retrieval.models import Mailbox

_seq = itertools.count(1)


def make_user(
    email: str | None = None, *, superuser: bool = False, **extra: Any
) -> User:
    email = email or f"user{next(_seq)}@example.org"
    if superuser:
        return User.objects.create_superuser(email, "correct horse battery", **extra)
    return User.objects.create_user(email, "correct horse battery", **extra)


def make_domain(name: str | None = None, *, admins: tuple[User, ...] = ()) -> Domain:
    domain = Domain.objects.create(name=name or f"d{next(_seq)}.example.org")
    domain.admins.add(*admins)
    return domain


def make_mailbox(
    owner: User | None = None, *, password: str = "", **fields: Any
) -> Mailbox:
    values: dict[str, Any] = {
        "owner": owner or make_user(),
        "protocol": Mailbox.Protocol.IMAP,
        "host": "imap.example.org",
        "username": f"remote{next(_seq)}",
    }
    values.update(fields)
    mailbox = Mailbox(**values)
    mailbox.set_password(password)
    mailbox.save()
    return mailbox


def make_dovecot_mailbox(
    owner: User, dovecot: Any, mailuser: Any, listener: Any, **fields: Any
) -> Mailbox:
    """A mailbox of the suite's Dovecot account ``mailuser`` (IMAP over TLS unless
    ``fields`` say otherwise), delivering to the SMTP ``listener``."""
    values: dict[str, Any] = {
        "password": mailuser.password,
        "protocol": "imap",
        "host": dovecot.host,
        "port": dovecot.imaps_port,
        "tls_mode": "implicit",
        "ca_file": dovecot.ca_file,
        "username": mailuser.name,
        "delivery_host": listener.host,
        "delivery_port": listener.port,
        "recipient": owner.email,
        "timeout": 30,
    }
    values.update(fields)
    return make_mailbox(owner, **values)
