from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import User
from tests.factories import make_domain, make_mailbox, make_user

pytestmark = pytest.mark.django_db


class UserTests:
    def test_it_logs_in_with_email(self, client):
        make_user("Alice@Example.org")
        response = client.post(
            reverse("login"),
            {"username": "alice@example.org", "password": "correct horse battery"},
        )
        assert response.status_code == 302
        assert response.url == reverse("home")

    def test_it_rejects_a_wrong_password_in_plain_words(self, client):
        make_user("alice@example.org")
        response = client.post(
            reverse("login"), {"username": "alice@example.org", "password": "nope"}
        )
        assert response.status_code == 200
        assert b"did not match" in response.content

    def test_it_logs_out_with_post(self, client):
        client.force_login(make_user())
        response = client.post(reverse("logout"))
        assert response.status_code == 302
        assert client.get(reverse("home")).status_code == 302  # back to login

    def test_it_stores_email_in_lower_case_and_unique(self):
        user = make_user("Bob@Example.ORG")
        assert user.email == "bob@example.org"
        with pytest.raises(Exception):  # noqa: B017  (IntegrityError, any backend)
            User.objects.create_user("BOB@example.org", "x")

    def test_superuser_comes_from_createsuperuser_noinput(self, monkeypatch):
        from django.core.management import call_command

        monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "root@example.org")
        monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long enough password")
        call_command("createsuperuser", "--noinput", verbosity=0)
        root = User.objects.get(email="root@example.org")
        assert root.is_superuser and root.is_staff
        assert root.check_password("a long enough password")


class RoleTests:
    def test_it_shows_each_person_only_their_mailboxes(self, client):
        alice, bob, charlie = make_user(), make_user(), make_user()
        domain = make_domain(admins=(bob,))
        own = make_mailbox(alice, name="alice-own")
        in_domain = make_mailbox(alice, name="alice-in-domain", domain=domain)
        make_mailbox(charlie, name="charlie-own")

        client.force_login(alice)
        page = client.get(reverse("home")).content.decode()
        assert "alice-own" in page and "alice-in-domain" in page
        assert "charlie-own" not in page

        client.force_login(bob)  # domain administrator of `domain` only
        page = client.get(reverse("home")).content.decode()
        assert in_domain.name in page
        assert own.name not in page and "charlie-own" not in page

        client.force_login(charlie)
        page = client.get(reverse("home")).content.decode()
        assert "alice" not in page

    def test_domain_admin_role(self):
        admin, member = make_user(), make_user()
        make_domain(admins=(admin,))
        assert admin.is_domain_admin
        assert not member.is_domain_admin

    def test_healthz_answers(self, client):
        assert client.get(reverse("healthz")).json()["checks"]["database"] == "ok"
