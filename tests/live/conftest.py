"""Fixtures of the live tests that need more than Dovecot: the ISP's Postfix."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import pytest

from tests.support.dovecot import MailUser
from tests.support.postfix import CATCHALL, Postfix, have_postfix

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.support.dovecot import Dovecot


@pytest.fixture(scope="session")
def postfix(dovecot: Dovecot) -> Iterator[Postfix]:
    """A private Postfix on a loopback port, delivering the client domain into
    the fixture Dovecot's catch-all mailbox (see tests/support/postfix.py)."""
    if not have_postfix():
        pytest.skip("Postfix is not installed (bin/install-system-deps installs it)")
    server = Postfix.start(dovecot.lmtp_port)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def catchall(dovecot: Dovecot, postfix: Postfix) -> MailUser:
    """The domain's catch-all account, empty, with a fresh password."""
    user = MailUser(name=CATCHALL, password=secrets.token_urlsafe(12))
    dovecot.add_user(user.name, user.password)
    dovecot.doveadm("expunge", "-u", user.name, "mailbox", "INBOX", "all")
    return user
