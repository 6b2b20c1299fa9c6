"""``fetchall`` through the service and its database ledger (issue 10.1).

The same faults as tests/live/test_fetchall_cuts.py, but polled the way the
application polls: ``services.mailbox_poll`` on a stored mailbox whose ledger is
the SeenMessage table. Copies are counted per Message-ID at the listener.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import pytest

from retrieval import services
from retrieval.models import SeenMessage
from tests.factories import make_mailbox, make_user
from tests.live.test_crash_invariants import ids, message
from tests.live.test_fetchall_cuts import EVERY, FAULTS
from tests.support.cutting_proxy import CuttingProxy, Trigger

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.support.dovecot import Dovecot, MailUser
    from tests.support.smtp_listener import SmtpListener

pytestmark = [pytest.mark.live, pytest.mark.django_db]

COUNT = 12
MAX_POLLS = 30


@pytest.fixture
def proxies() -> Iterator[list[CuttingProxy]]:
    made: list[CuttingProxy] = []
    yield made
    for proxy in made:
        proxy.close()


@pytest.mark.parametrize("fault", ["server-cut", "listener-drop-after-dot"])
@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_a_fetchall_mailbox_polled_by_the_service_redelivers_nothing(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    proxies: list[CuttingProxy],
    protocol: str,
    fault: str,
) -> None:
    for n in range(1, COUNT + 1):
        dovecot.put(mailuser.name, message(n))
    everything = {f"crash-{n}@example.net" for n in range(1, COUNT + 1)}
    to_server, marker, action, after = FAULTS[fault]
    trigger = Trigger(marker, EVERY, action, from_server=to_server, after=after)
    server_port = dovecot.pop3_port if protocol == "pop3" else dovecot.imap_port
    proxy = CuttingProxy(server_port if to_server else smtp_listener.port, trigger)
    proxies.append(proxy)
    mailbox = make_mailbox(
        make_user("root@example.org", superuser=True),
        password=mailuser.password,
        protocol=protocol,
        host=dovecot.host,
        port=proxy.port if to_server else server_port,
        tls_mode="none",
        username=mailuser.name,
        delivery_host="127.0.0.1",
        delivery_port=smtp_listener.port if to_server else proxy.port,
        recipient="alice@example.org",
        timeout=10,
        fetchall=True,
    )

    for _ in range(MAX_POLLS):
        services.mailbox_poll(mailbox_id=mailbox.pk)
        if not dovecot.messages(mailuser.name):
            break

    assert dovecot.messages(mailuser.name) == []
    assert trigger.fired >= 2
    got = Counter(ids([r.data for r in smtp_listener.received]))
    assert set(got) == everything, "a message was lost"
    lost = Counter(trigger.lost)
    assert all(n - 1 <= lost[mid] for mid, n in got.items()), (got, lost)
    if to_server:
        assert max(got.values()) == 1, got
    # Delivered and deleted: the server no longer lists them, the ledger forgot.
    assert SeenMessage.objects.filter(mailbox=mailbox).count() <= COUNT
