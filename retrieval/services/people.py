"""People and domains from the pages: what domain administrators and superusers do
in the browser (the admin's and the API's writes are in ``users`` and ``domains``).

Who may act on whom is checked by the pages (retrieval.selectors.people_visible_to
and friends) before these are called; the rules that hold for every caller live
here: nobody disables or removes themselves, and a person is never made a
superuser here (superusers are made with createsuperuser or the admin).

Decisions written down (issue 13 item 6):

* disabling a person turns ``is_active`` off: they cannot sign in (Django refuses
  an inactive account, and their open sessions end at their next request), and
  their mailboxes are not polled, by the schedule or by the IDLE process, while
  the mailboxes themselves are kept as they are, enabled or paused; enabling the
  person again resumes polling where it stopped;
* removing a person deletes them with their mailboxes, those mailboxes' polls and
  ledgers (``user_delete``); the confirmation page says so and counts them. It is
  refused while one of their mailboxes is being polled (MailboxBusy), as deleting
  that mailbox alone would be.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts import audit, throttle
from accounts.models import AuditEvent, DeliveryTarget, Domain, User
from retrieval.models import Mailbox
from retrieval.services.mailboxes import MailboxBusy
from retrieval.services.users import user_delete, user_save

if TYPE_CHECKING:
    from django.db.models import QuerySet


class SelfRefused(Exception):
    """Nobody disables or removes their own account here (they would lock
    themselves out, perhaps as the last administrator)."""


def person_add(
    *,
    email: str,
    full_name: str = "",
    domain: Domain | None,
    password: str = "",
) -> User:
    """A new person who is not a superuser, with ``password`` (already validated),
    or with none usable (an invitation sets it)."""
    person = User(email=email.strip().lower(), full_name=full_name, domain=domain)
    if password:
        person.set_password(password)
    else:
        person.set_unusable_password()
    return user_save(user=person)


def invite_link(*, person: User, site_url: str) -> str:
    """The one-time set-password link of ``person``: Django's password reset token,
    which stops working once the password is set (the token hashes it) or after
    PASSWORD_RESET_TIMEOUT seconds."""
    path = reverse(
        "accounts:password-reset-confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(person.pk)),
            "token": default_token_generator.make_token(person),
        },
    )
    return site_url.rstrip("/") + path


class InvitationRefused(Exception):
    """The invitation is not mailed again; the text says why, in words."""


def _mail_invitation(*, person: User, site_url: str, invited_by: User) -> None:
    """The invitation mail, sent when the transaction commits (a refused save
    sends nothing); counted with the password reset mails of that address
    (accounts.throttle), the limit a resend is held to."""
    context = {
        "person": person,
        "domain": person.domain,
        "invited_by": invited_by,
        "link": invite_link(person=person, site_url=site_url),
        "valid_days": max(1, settings.PASSWORD_RESET_TIMEOUT // 86400),
    }
    subject = render_to_string("accounts/invite_subject.txt", context).strip()
    body = render_to_string("accounts/invite_email.txt", context)
    throttle.record_reset(person.email, None)
    transaction.on_commit(
        lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [person.email])
    )


@transaction.atomic
def person_invite(
    *,
    email: str,
    full_name: str = "",
    domain: Domain | None,
    site_url: str,
    invited_by: User,
) -> User:
    """Add a person without a password and mail them a link to set one."""
    person = person_add(email=email, full_name=full_name, domain=domain)
    _mail_invitation(person=person, site_url=site_url, invited_by=invited_by)
    return person


@transaction.atomic
def person_invite_resend(*, person: User, site_url: str, invited_by: User) -> User:
    """Mail ``person`` the invitation again, with a fresh link, while they have not
    set a password (InvitationRefused otherwise, and past the mails allowed to
    one address: RESET_REQUESTS_PER_EMAIL within RESET_REQUEST_WINDOW, the
    invitation and the password resets counted together). Recorded in the audit
    log, by whom, as the invitation's creation of the person is."""
    if not person.is_active:
        raise InvitationRefused(
            f"{person.email} is disabled: enable them before inviting them again."
        )
    if person.has_usable_password():
        raise InvitationRefused(
            f"{person.email} has chosen a password already: there is no invitation "
            "to send again (they can reset a forgotten password themselves)."
        )
    refusal = throttle.reset_refusal(person.email, None)
    if refusal is not None:
        raise InvitationRefused(
            f"{person.email} was sent as many invitation and password mails as one "
            f"address may get for now; try again in about {refusal.minutes} "
            f"minute{'s' if refusal.minutes != 1 else ''}."
        )
    _mail_invitation(person=person, site_url=site_url, invited_by=invited_by)
    audit.record(
        AuditEvent.Action.UPDATE, obj=person, summary="invitation mailed again"
    )
    return person


def _not_self(person: User, actor: User) -> None:
    if person.pk == actor.pk:
        raise SelfRefused("You cannot do that to your own account.")


def person_set_active(*, person: User, active: bool, actor: User) -> User:
    """Enable or disable ``person`` (see the module's decisions)."""
    _not_self(person, actor)
    person.is_active = active
    return user_save(user=person)


def person_remove(*, person: User, actor: User) -> int:
    """Delete ``person`` and their mailboxes; returns how many mailboxes went."""
    _not_self(person, actor)
    with transaction.atomic():
        mailboxes = Mailbox.objects.select_for_update().filter(owner=person)
        now = timezone.now()
        if any(m.lease_until and m.lease_until > now for m in mailboxes):
            raise MailboxBusy(
                "One of this person's mailboxes is being polled right now; remove "
                "them when the poll has ended."
            )
        count = len(mailboxes)
        user_delete(user=person)
    return count


def domain_defaults_set(
    *,
    domain: Domain,
    delivery: DeliveryTarget | None,
    postmaster: str,
    poll_interval: int | None,
) -> Domain:
    """The defaults of the domain's new mailboxes (existing ones keep theirs)."""
    domain.default_delivery = delivery
    domain.default_postmaster = postmaster.strip()
    domain.default_poll_interval = poll_interval
    domain.save(
        update_fields=[
            "default_delivery",
            "default_postmaster",
            "default_poll_interval",
        ]
    )
    return domain


def delivery_target_save(*, target: DeliveryTarget) -> DeliveryTarget:
    target.save()
    return target


def delivery_target_delete(*, target: DeliveryTarget) -> None:
    """Refused by the database (ProtectedError) while a domain uses it."""
    target.delete()


def delivery_targets_delete(*, targets: QuerySet[DeliveryTarget]) -> int:
    """The admin's bulk delete: each one as ``delivery_target_delete``, all or
    none (a target a domain uses refuses the lot); returns how many."""
    with transaction.atomic():
        count = 0
        for target in targets:
            delivery_target_delete(target=target)
            count += 1
    return count


def user_time_zone_set(*, user: User, time_zone: str) -> User:
    """The zone the pages show ``user`` times in (a name from zoneinfo, checked by
    the form; "" for the installation's)."""
    user.time_zone = time_zone
    user.save(update_fields=["time_zone"])
    return user
