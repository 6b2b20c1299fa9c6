"""How a poll begins and ends, whatever happens to the worker (issue 10, items 4, 5).

* The delete never precedes the commit: the service refuses to run inside a
  transaction, where the ledger's row would only commit after the delete.
* No run stays "running" forever: the dispatcher closes the runs of workers that
  died; a Celery soft time limit is an outcome of its own.
"""

from __future__ import annotations

import pytest
from django.db import transaction

from retrieval import services
from retrieval.models import PollRun
from tests.factories import make_mailbox

pytestmark = pytest.mark.django_db


class AutocommitTests:
    def test_a_poll_inside_a_transaction_is_refused_before_anything_happens(self):
        mailbox = make_mailbox()
        with (
            transaction.atomic(),
            pytest.raises(services.InsideTransaction, match="autocommit"),
        ):
            services.mailbox_poll(mailbox_id=mailbox.pk)
        mailbox.refresh_from_db()
        # Refused before the lease was taken or a run recorded.
        assert mailbox.lease_until is None
        assert PollRun.objects.filter(mailbox=mailbox).count() == 0
