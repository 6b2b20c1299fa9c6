"""Key rotation covers every secret at rest, not only the mailbox password.

Found while writing docs/security.md: ``rotate_secrets`` re-encrypted
``password_encrypted`` only, so removing the old key afterwards made the
listener's SMTP AUTH password (fetchmail's ``esmtppassword``) unreadable.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from retrieval import crypto
from retrieval.models import Mailbox
from tests.factories import make_mailbox

pytestmark = pytest.mark.django_db

REMOTE = "remote-Pa55-4c1d"
ESMTP = "esmtp-Pa55-9b2e"


def test_rotation_reencrypts_the_esmtp_password_too(settings) -> None:
    old, new = crypto.generate_key(), crypto.generate_key()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    mailbox = make_mailbox(password=REMOTE)
    mailbox.set_esmtp_password(ESMTP)
    mailbox.save()
    only_esmtp = make_mailbox()
    only_esmtp.set_esmtp_password(ESMTP)
    only_esmtp.save()

    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    out = io.StringIO()
    call_command("rotate_secrets", stdout=out)
    assert "3 password(s) re-encrypted" in out.getvalue()

    settings.FIELD_ENCRYPTION_KEYS = [new]  # the old key can go now
    again = Mailbox.objects.get(pk=mailbox.pk)
    assert again.get_password() == REMOTE
    assert again.get_esmtp_password() == ESMTP
    assert Mailbox.objects.get(pk=only_esmtp.pk).get_esmtp_password() == ESMTP


def test_a_second_rotation_has_nothing_to_do(settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [crypto.generate_key()]
    mailbox = make_mailbox(password=REMOTE)
    mailbox.set_esmtp_password(ESMTP)
    mailbox.save()
    out = io.StringIO()
    call_command("rotate_secrets", stdout=out)
    assert "0 password(s) re-encrypted" in out.getvalue()


def test_rotation_reencrypts_the_oauth2_tokens(settings) -> None:
    """Issue 16: a mailbox's OAuth2 grant is a secret at rest too."""
    from retrieval.models import OAuthGrant

    old, new = crypto.generate_key(), crypto.generate_key()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    grant = OAuthGrant(mailbox=make_mailbox(auth="xoauth2"), provider="google")
    grant.set_tokens(access="access-T0ken-1", refresh="refresh-T0ken-2")
    grant.save()

    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    out = io.StringIO()
    call_command("rotate_secrets", stdout=out)
    assert "2 password(s) re-encrypted" in out.getvalue()

    settings.FIELD_ENCRYPTION_KEYS = [new]
    again = OAuthGrant.objects.get(pk=grant.pk)
    assert again.get_access_token() == "access-T0ken-1"
    assert again.get_refresh_token() == "refresh-T0ken-2"
