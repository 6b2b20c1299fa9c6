from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

from retrieval import crypto
from retrieval.crypto import DecryptionError
from retrieval.models import Mailbox
from tests.factories import make_mailbox

pytestmark = pytest.mark.django_db

CANARY = "canary-Pa55w0rd-7f3e"


@pytest.fixture
def two_keys(settings):
    old, new = crypto.generate_key(), crypto.generate_key()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    return old, new


class EncryptionTests:
    def test_it_round_trips(self, two_keys):
        sealed = crypto.encrypt(CANARY, bound_to="row-1")
        assert CANARY not in sealed
        assert crypto.decrypt(sealed, bound_to="row-1") == CANARY

    def test_it_refuses_a_ciphertext_moved_to_another_row(self, two_keys):
        a = make_mailbox(password=CANARY)
        b = make_mailbox()
        Mailbox.objects.filter(pk=b.pk).update(password_encrypted=a.password_encrypted)
        b.refresh_from_db()
        with pytest.raises(DecryptionError, match="does not belong"):
            b.get_password()

    def test_it_names_a_missing_key(self, settings, two_keys):
        mailbox = make_mailbox(password=CANARY)
        settings.FIELD_ENCRYPTION_KEYS = [two_keys[1]]
        with pytest.raises(DecryptionError, match="not in FIELD_ENCRYPTION_KEYS"):
            Mailbox.objects.get(pk=mailbox.pk).get_password()

    def test_rotation_reencrypts_with_the_first_key(self, settings, two_keys):
        old, new = two_keys
        mailbox = make_mailbox(password=CANARY)
        settings.FIELD_ENCRYPTION_KEYS = [new, old]
        out = io.StringIO()
        call_command("rotate_secrets", stdout=out)
        assert "1 password(s) re-encrypted" in out.getvalue()
        settings.FIELD_ENCRYPTION_KEYS = [new]  # the old key can go now
        assert Mailbox.objects.get(pk=mailbox.pk).get_password() == CANARY

    def test_the_password_is_stored_only_encrypted(self, two_keys):
        make_mailbox(password=CANARY, name="canary box")
        tables = connection.introspection.table_names()
        with connection.cursor() as cursor:
            for table in tables:
                cursor.execute(f'SELECT * FROM "{table}"')
                for row in cursor.fetchall():
                    assert CANARY not in " ".join(map(str, row)), table
