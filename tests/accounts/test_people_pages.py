"""Domains and people in the browser (issue 13 item 6): each role on each page,
invitations by mail, disabling, removing, domain defaults, time zones, the audit
log. The statuses of every URL for every role are in tests/security/matrix.py;
these follow the work itself."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, DeliveryTarget, Domain, User
from retrieval import services
from retrieval.models import Mailbox
from retrieval.push.supervisor import wanted_mailboxes
from tests.factories import make_domain, make_mailbox, make_user

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"  # tests/factories.py
NEW = "a-fresh-Password-42"
PUBLIC = "1.1.1.1"


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class People:
    one: Domain
    two: Domain
    alice: User  # user of one
    bob: User  # user of two
    admin1: User  # administers one
    admin2: User  # administers two
    root: User


@pytest.fixture
def people() -> People:
    one, two = make_domain("one.example"), make_domain("two.example")
    admin1 = make_user("admin1@one.example", domain=one)
    admin2 = make_user("admin2@two.example", domain=two)
    one.admins.add(admin1)
    two.admins.add(admin2)
    return People(
        one=one,
        two=two,
        alice=make_user("alice@one.example", domain=one),
        bob=make_user("bob@two.example", domain=two),
        admin1=admin1,
        admin2=admin2,
        root=make_user("root@operator.example", superuser=True),
    )


def _as(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _text(response) -> str:
    return response.content.decode()


# --- each role on each page ---------------------------------------------------------

PAGES = [
    ("people:people", ()),
    ("people:domains", ()),
    ("people:person-add", ()),
    ("people:person-invite", ()),
    ("people:audit", ()),
    ("people:delivery-targets", ()),
    ("people:domain-add", ()),
]


def test_a_user_gets_none_of_the_people_pages_but_the_time_zone(people):
    client = _as(people.alice)
    for name, args in PAGES:
        assert client.get(reverse(name, args=args)).status_code == 403, name
    for view in ("people:person", "people:person-remove"):
        assert client.get(reverse(view, args=[people.alice.pk])).status_code == 403
    home = _text(client.get(reverse("home")))
    assert reverse("people:people") not in home
    assert reverse("people:time-zone") in home
    assert client.get(reverse("people:time-zone")).status_code == 200


def test_a_domain_admin_sees_the_people_of_their_domain_only(people):
    client = _as(people.admin1)
    page = _text(client.get(reverse("people:people")))
    assert "alice@one.example" in page and "admin1@one.example" in page
    assert "bob@two.example" not in page and "two.example" not in page
    assert "root@operator.example" not in page
    domains = _text(client.get(reverse("people:domains")))
    assert "one.example" in domains and "two.example" not in domains
    # The navigation offers them people and domains, not the audit log.
    assert reverse("people:people") in domains
    assert reverse("people:audit") not in domains
    for name in ("people:audit", "people:delivery-targets", "people:domain-add"):
        assert client.get(reverse(name)).status_code == 403
    assert (
        client.get(reverse("people:domain-edit", args=[people.one.pk])).status_code
        == 403
    )


def test_a_superuser_sees_everyone_and_every_domain(people):
    client = _as(people.root)
    page = _text(client.get(reverse("people:people")))
    for person in ("alice@one.example", "bob@two.example", "root@operator.example"):
        assert person in page
    domains = _text(client.get(reverse("people:domains")))
    assert "one.example" in domains and "two.example" in domains
    assert "admin2@two.example" in domains  # each domain's administrators
    assert client.get(reverse("people:audit")).status_code == 200
    # The people list filters by domain and by name.
    only_two = _text(client.get(reverse("people:people"), {"domain": people.two.pk}))
    assert "bob@two.example" in only_two and "alice@one.example" not in only_two
    found = _text(client.get(reverse("people:people"), {"q": "alic"}))
    assert "alice@one.example" in found and "bob@two.example" not in found


def test_another_domains_person_does_not_exist_for_a_domain_admin(people):
    client = _as(people.admin1)
    for victim in (people.bob, people.admin2, people.root):
        for view in ("people:person", "people:person-remove"):
            url = reverse(view, args=[victim.pk])
            assert client.get(url).status_code == 404
            assert client.post(url, {"action": "disable"}).status_code == 404
        victim.refresh_from_db()
        assert victim.is_active
    defaults = reverse("people:domain-defaults", args=[people.two.pk])
    assert client.get(defaults).status_code == 404
    assert client.post(defaults, {"default_poll_interval": "900"}).status_code == 404
    people.two.refresh_from_db()
    assert people.two.default_poll_interval is None


def test_a_member_who_administers_another_domain_is_left_to_superusers(people):
    """Their page would name the other domain and their mailboxes there."""
    three = make_domain("three.example")
    three.admins.add(people.alice)
    make_mailbox(people.alice, domain=three, host=PUBLIC, name="THREE-BOX")
    client = _as(people.admin1)
    page = _text(client.get(reverse("people:people")))
    assert "alice@one.example" not in page and "three.example" not in page
    url = reverse("people:person", args=[people.alice.pk])
    assert client.get(url).status_code == 404
    assert "THREE-BOX" in _text(_as(people.root).get(url))


def test_a_domain_admin_adds_only_to_their_domain_and_never_a_superuser(people):
    client = _as(people.admin1)
    refused = client.post(
        reverse("people:person-add"),
        {
            "email": "carol@two.example",
            "domain": people.two.pk,
            "password1": NEW,
            "password2": NEW,
        },
    )
    assert refused.status_code == 200
    assert "Select a valid choice" in _text(refused)
    assert not User.objects.filter(email="carol@two.example").exists()
    added = client.post(
        reverse("people:person-add"),
        {
            "email": "Carol@One.example",
            "full_name": "Carol",
            "domain": people.one.pk,
            "password1": NEW,
            "password2": NEW,
            "is_superuser": "on",  # not a field of the form: ignored
            "is_staff": "on",
        },
    )
    carol = User.objects.get(email="carol@one.example")
    assert added["Location"] == reverse("people:person", args=[carol.pk])
    assert not carol.is_superuser and not carol.is_staff
    assert carol.domain == people.one and carol.check_password(NEW)
    assert Client().login(username="carol@one.example", password=NEW)
    # The same address twice is refused in words.
    again = client.post(
        reverse("people:person-add"),
        {
            "email": "carol@one.example",
            "domain": people.one.pk,
            "password1": NEW,
            "password2": NEW,
        },
    )
    assert "Someone already signs in with this address." in _text(again)


# --- the invitation -----------------------------------------------------------------


def _link(message: mail.EmailMessage) -> str:
    found = re.search(r"https?://[^/\s]+(/account/reset/[^\s]+/)", str(message.body))
    assert found, message.body
    return found.group(1)


def test_an_invitation_lets_the_person_choose_a_password_once(
    people, django_capture_on_commit_callbacks
):
    admin = _as(people.admin1)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            reverse("people:person-invite"),
            {"email": "dave@one.example", "full_name": "Dave", "domain": people.one.pk},
        )
    dave = User.objects.get(email="dave@one.example")
    assert response["Location"] == reverse("people:person", args=[dave.pk])
    assert not dave.has_usable_password() and dave.domain == people.one
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["dave@one.example"]
    assert "one.example" in message.subject
    assert "admin1@one.example" in str(message.body)
    link = _link(message)
    # The invitee opens the link (signed out), is sent to the form, sets a password.
    invitee = Client()
    opened = invitee.get(link)
    assert opened.status_code == 302
    form_url = opened["Location"]
    done = invitee.post(form_url, {"new_password1": NEW, "new_password2": NEW})
    assert done["Location"] == reverse("accounts:password-reset-complete")
    assert invitee.login(username="dave@one.example", password=NEW)
    # The link has done its work: opened again it says so and sets nothing.
    again = Client().get(link, follow=True)
    assert "it has been used already" in _text(again)
    dave.refresh_from_db()
    assert dave.check_password(NEW)
    page = _text(admin.get(reverse("people:people")))
    assert "dave@one.example" in page


def test_an_invitation_that_is_refused_sends_nothing(
    people, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _as(people.admin1).post(
            reverse("people:person-invite"),
            {"email": "alice@one.example", "domain": people.one.pk},
        )
    assert response.status_code == 200
    assert not mail.outbox


# --- resending an invitation -------------------------------------------------------

RESENT = "invitation mailed again"  # the audit log's words


@pytest.fixture
def fresh_cache(settings):
    """The mail limit counts in the cache: none carried over from another test."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        }
    }


def _resend_url(person: User) -> str:
    return reverse("people:person-resend-invitation", args=[person.pk])


@pytest.mark.parametrize("role", ["admin1", "root"])
def test_an_invitation_is_mailed_again_with_a_link_that_works(
    people, role, fresh_cache, django_capture_on_commit_callbacks
):
    dave = services.person_add(email="dave@one.example", domain=people.one)
    actor = getattr(people, role)
    client = _as(actor)
    listed = _text(client.get(reverse("people:people")))
    # Offered for the person who has not chosen a password, not for the others.
    assert _resend_url(dave) in listed and _resend_url(people.alice) not in listed
    assert _resend_url(dave) in _text(
        client.get(reverse("people:person", args=[dave.pk]))
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_resend_url(dave))
    assert response["Location"] == reverse("people:person", args=[dave.pk])
    assert [message.to for message in mail.outbox] == [["dave@one.example"]]
    assert actor.email in str(mail.outbox[0].body)
    event = AuditEvent.objects.get(object_id=str(dave.pk), summary=RESENT)
    assert (event.actor, event.action) == (actor, AuditEvent.Action.UPDATE)
    invitee = Client()
    opened = invitee.get(_link(mail.outbox[0]))
    invitee.post(opened["Location"], {"new_password1": NEW, "new_password2": NEW})
    assert invitee.login(username="dave@one.example", password=NEW)
    # Once the password is chosen there is nothing to send again.
    after = client.post(_resend_url(dave), follow=True)
    assert "has chosen a password already" in _text(after)
    assert len(mail.outbox) == 1
    assert AuditEvent.objects.filter(summary=RESENT).count() == 1


def test_another_domains_administrator_gets_404_and_a_user_403(people, fresh_cache):
    dave = services.person_add(email="dave@one.example", domain=people.one)
    assert _as(people.admin2).post(_resend_url(dave)).status_code == 404
    assert _as(people.alice).post(_resend_url(dave)).status_code == 403
    assert _as(people.admin1).get(_resend_url(dave)).status_code == 405
    assert _as(people.admin2).post(_resend_url(people.bob)).status_code == 302
    assert not mail.outbox
    assert not AuditEvent.objects.filter(summary=RESENT).exists()


def test_resending_is_held_to_the_limit_of_the_password_mails(
    people, settings, fresh_cache, django_capture_on_commit_callbacks
):
    settings.RESET_REQUESTS_PER_EMAIL = 2  # the invitation, then one more
    client = _as(people.admin1)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("people:person-invite"),
            {"email": "dave@one.example", "domain": people.one.pk},
        )
        dave = User.objects.get(email="dave@one.example")
        client.post(_resend_url(dave))
        refused = client.post(_resend_url(dave), follow=True)
    assert len(mail.outbox) == 2
    assert "as many invitation and password mails as one address may get" in _text(
        refused
    )
    assert AuditEvent.objects.filter(summary=RESENT).count() == 1


# --- disable, enable, remove --------------------------------------------------------


def test_disabling_stops_sign_in_and_polling_and_enabling_resumes_both(people):
    box = make_mailbox(people.alice, domain=people.one, host=PUBLIC)
    other = make_mailbox(people.bob, domain=people.two, host=PUBLIC)
    signed_in = _as(people.alice)
    admin = _as(people.admin1)
    response = admin.post(
        reverse("people:person", args=[people.alice.pk]), {"action": "disable"}
    )
    assert response["Location"] == reverse("people:person", args=[people.alice.pk])
    people.alice.refresh_from_db()
    assert not people.alice.is_active
    assert not Client().login(username="alice@one.example", password=PASSWORD)
    # An open session ends at its next request.
    assert signed_in.get(reverse("home"))["Location"].startswith(reverse("login"))
    due = services.mailboxes_claim_due()
    assert other.pk in due and box.pk not in due
    # The mailboxes themselves are untouched.
    box.refresh_from_db()
    assert box.enabled
    page = _text(admin.get(reverse("people:person", args=[people.alice.pk])))
    assert "their mailboxes are not polled" in page

    admin.post(reverse("people:person", args=[people.alice.pk]), {"action": "enable"})
    assert Client().login(username="alice@one.example", password=PASSWORD)
    Mailbox.objects.filter(pk=box.pk).update(next_poll_at=None)
    assert box.pk in services.mailboxes_claim_due()


@pytest.mark.django_db(transaction=True)
def test_the_idle_process_lets_go_of_a_disabled_persons_mailboxes(people):
    idle = make_mailbox(
        people.alice, domain=people.one, host=PUBLIC, options={"user": {"idle": True}}
    )
    assert idle.pk in wanted_mailboxes(0, 1)
    services.person_set_active(person=people.alice, active=False, actor=people.root)
    assert idle.pk not in wanted_mailboxes(0, 1)


def test_nobody_disables_or_removes_themselves(people):
    admin = _as(people.admin1)
    me = reverse("people:person", args=[people.admin1.pk])
    page = admin.post(me, {"action": "disable"}, follow=True)
    assert "You cannot do that to your own account." in _text(page)
    removed = admin.post(reverse("people:person-remove", args=[people.admin1.pk]))
    assert removed.status_code == 200
    people.admin1.refresh_from_db()
    assert people.admin1.is_active


def test_removing_says_what_goes_and_takes_the_mailboxes(people):
    keep = make_mailbox(people.bob, domain=people.two, host=PUBLIC, name="bobs")
    make_mailbox(people.alice, domain=people.one, host=PUBLIC, name="ALICE-BOX-1")
    make_mailbox(people.alice, domain=people.one, host=PUBLIC, name="ALICE-BOX-2")
    admin = _as(people.admin1)
    url = reverse("people:person-remove", args=[people.alice.pk])
    confirm = _text(admin.get(url))
    assert "their 2 mailboxes" in confirm
    assert "ALICE-BOX-1" in confirm and "ALICE-BOX-2" in confirm
    assert "stop being polled" in confirm and "cannot be undone" in confirm
    response = admin.post(url)
    assert response["Location"] == reverse("people:people")
    assert not User.objects.filter(email="alice@one.example").exists()
    assert not Mailbox.objects.filter(name__startswith="ALICE-BOX").exists()
    assert Mailbox.objects.filter(pk=keep.pk).exists()


def test_removing_waits_for_a_running_poll(people):
    box = make_mailbox(people.alice, domain=people.one, host=PUBLIC)
    Mailbox.objects.filter(pk=box.pk).update(
        lease_until=timezone.now() + dt.timedelta(minutes=5)
    )
    page = _as(people.admin1).post(
        reverse("people:person-remove", args=[people.alice.pk]), follow=True
    )
    assert "being polled right now" in _text(page)
    assert User.objects.filter(pk=people.alice.pk).exists()


# --- domains: the superuser's, their defaults ----------------------------------------


def test_a_superuser_creates_a_domain_and_names_its_administrator(people):
    carol = make_user("carol@operator.example")
    client = _as(people.root)
    response = client.post(
        reverse("people:domain-add"), {"name": "Three.Example", "admins": [carol.pk]}
    )
    three = Domain.objects.get(name="three.example")
    assert response["Location"] == reverse("people:domain-edit", args=[three.pk])
    assert list(three.admins.all()) == [carol]
    assert _as(carol).get(reverse("people:people")).status_code == 200
    client.post(
        reverse("people:domain-edit", args=[three.pk]),
        {"name": "three.example", "admins": []},
    )
    assert not three.admins.exists()
    assert _as(carol).get(reverse("people:people")).status_code == 403


def test_domain_defaults_apply_to_a_new_mailbox(people, settings):
    root = _as(people.root)
    root.post(
        reverse("people:delivery-targets"),
        {"name": "Tenant LMTP", "kind": "lmtp", "host": "lmtp.internal", "port": "24"},
    )
    target = DeliveryTarget.objects.get(name="Tenant LMTP")
    admin = _as(people.admin1)
    form = _text(admin.get(reverse("people:domain-defaults", args=[people.one.pk])))
    assert "Tenant LMTP" in form  # the superuser's list is the choice
    response = admin.post(
        reverse("people:domain-defaults", args=[people.one.pk]),
        {
            "default_delivery": target.pk,
            "default_postmaster": "postmaster@one.example",
            "default_poll_interval": "900",
        },
    )
    assert response.status_code == 302
    alice = _as(people.alice)
    added = alice.post(
        reverse("retrieval:mailbox-add"),
        {
            "name": "with-defaults",
            "enabled": "on",
            "poll_interval": str(settings.FETCH_DEFAULT_INTERVAL),
            "protocol": "imap",
            "host": PUBLIC,
            "tls_mode": "implicit",
            "verify_tls": "on",
            "auth": "any",
            "username": "remote-alice",
            "new_password": "secret",
            "folders": "",
        },
    )
    assert added.status_code == 302, _text(added)
    box = Mailbox.objects.get(name="with-defaults")
    assert (box.delivery_kind, box.delivery_host, box.delivery_port) == (
        "lmtp",
        "lmtp.internal",
        24,
    )
    assert box.poll_interval == 900
    assert box.options["globals"]["postmaster"] == "postmaster@one.example"
    # Another domain's new mailbox keeps the installation's.
    other = services.mailbox_save(mailbox=_new(), owner=people.bob)
    assert other.delivery_host == settings.FETCH_DEFAULT_DELIVERY_HOST
    assert other.poll_interval == settings.FETCH_DEFAULT_INTERVAL
    # A target in use cannot be deleted.
    root.post(reverse("people:delivery-targets"), {"delete": target.pk})
    assert DeliveryTarget.objects.filter(pk=target.pk).exists()


def _new() -> Mailbox:
    mailbox = services.mailbox_new()
    mailbox.host, mailbox.username = PUBLIC, "remote-bob"
    return mailbox


def test_a_chosen_interval_is_not_replaced_by_the_domains(people):
    services.domain_defaults_set(
        domain=people.one, delivery=None, postmaster="", poll_interval=900
    )
    mailbox = _new()
    mailbox.poll_interval = 60
    saved = services.mailbox_save(mailbox=mailbox, owner=people.alice)
    assert saved.poll_interval == 60
    assert "postmaster" not in (saved.options.get("globals") or {})


# --- time zones -----------------------------------------------------------------------


def test_the_time_zone_changes_the_times_shown(people):
    moment = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
    AuditEvent.objects.create(
        created_at=moment, actor_label="zone-probe", action=AuditEvent.Action.UPDATE
    )
    client = _as(people.root)
    before = _text(client.get(reverse("people:audit"), {"actor": "zone-probe"}))
    assert "2026-01-15 12:00:00" in before and "UTC" in before
    response = client.post(reverse("people:time-zone"), {"time_zone": "Asia/Tokyo"})
    assert response["Location"] == reverse("people:time-zone")
    after = _text(client.get(reverse("people:audit"), {"actor": "zone-probe"}))
    assert "2026-01-15 21:00:00" in after and "Asia/Tokyo" in after
    assert "Asia/Tokyo" in _text(client.get(reverse("people:time-zone")))
    # The mailbox pages too (retrieval.console.person_zone).
    box = make_mailbox(people.root, host=PUBLIC)
    Mailbox.objects.filter(pk=box.pk).update(next_poll_at=moment)
    detail = _text(client.get(reverse("retrieval:mailbox-detail", args=[box.pk])))
    assert "2026-01-15 21:00:00" in detail
    refused = client.post(reverse("people:time-zone"), {"time_zone": "Mars/Olympus"})
    assert refused.status_code == 200
    people.root.refresh_from_db()
    assert people.root.time_zone == "Asia/Tokyo"


# --- the audit log ------------------------------------------------------------------


def test_the_audit_log_shows_the_actions_and_filters_them(people):
    admin = _as(people.admin1)
    admin.post(reverse("people:person", args=[people.alice.pk]), {"action": "disable"})
    admin.post(
        reverse("people:domain-defaults", args=[people.one.pk]),
        {
            "default_delivery": "",
            "default_postmaster": "pm",
            "default_poll_interval": "600",
        },
    )
    root = _as(people.root)
    page = _text(root.get(reverse("people:audit")))
    assert "is_active: True -&gt; False" in page
    assert "default_poll_interval: - -&gt; 600" in page
    assert "admin1@one.example" in page
    by_actor = _text(root.get(reverse("people:audit"), {"actor": "admin1@"}))
    assert "is_active" in by_actor
    assert "root@operator.example" not in by_actor.split("<table")[1]
    created = _text(root.get(reverse("people:audit"), {"action": "create"}))
    assert "is_active: True -&gt; False" not in created
    assert "bob@two.example" in created
    # Paginated, 50 a page; read-only: no POST.
    AuditEvent.objects.bulk_create(
        AuditEvent(actor_label=f"bulk-{n}", action=AuditEvent.Action.LOGIN)
        for n in range(60)
    )
    first = _text(root.get(reverse("people:audit"), {"action": "login"}))
    assert "Page 1 of 2" in first
    assert root.post(reverse("people:audit")).status_code == 405
