from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from retrieval import services
from retrieval.engine.spec import DeliveryKind, MailProtocol, TlsMode
from retrieval.models import Mailbox
from tests.factories import make_mailbox, make_user

pytestmark = pytest.mark.django_db


class SpecTests:
    def test_it_builds_the_engine_spec_from_the_row(self, settings):
        settings.FETCH_ALLOW_PRIVATE_HOSTS = True
        owner = make_user("alice@example.org")
        mailbox = make_mailbox(
            owner,
            password="pw",
            protocol="pop3",
            host="127.0.0.1",
            port=1995,
            tls_mode="starttls",
            folders=["INBOX", "Lists"],
            keep=True,
            delivery_kind="lmtp",
            delivery_host="::1",
            delivery_port=24,
        )
        spec = services.mailbox_spec(mailbox)
        assert spec.server.protocol is MailProtocol.POP3
        assert spec.server.tls.mode is TlsMode.STARTTLS
        assert spec.server.tls.verify is True
        assert spec.server.effective_port == 1995
        assert spec.password is not None and spec.password.reveal() == "pw"
        assert "pw" not in repr(spec)
        assert spec.folders == ("INBOX", "Lists") and spec.keep
        assert spec.delivery.kind is DeliveryKind.LMTP
        assert spec.delivery.hosts == ("[::1]/24",)
        assert spec.delivery.recipients == ("alice@example.org",)

    @pytest.mark.parametrize(
        ("host", "port"),
        [
            ("127.0.0.1", 993),
            ("10.0.0.5", 993),
            ("169.254.169.254", 993),
            ("::1", 993),
            ("::ffff:127.0.0.1", 993),
            ("2130706433", 993),
            ("localhost", 993),
            ("100.64.0.1", 993),
            ("fd00::1", 993),
            ("192.0.2.10", 6379),
        ],
    )
    def test_self_service_users_only_reach_public_mail_ports(self, host, port):
        mailbox = make_mailbox(make_user(), host=host, port=port)
        with pytest.raises(services.SpecError, match="not allowed"):
            services.mailbox_spec(mailbox)

    def test_a_refused_address_is_recorded_in_plain_words(self):
        mailbox = make_mailbox(make_user(), host="10.1.2.3")
        summary = services.mailbox_poll(mailbox_id=mailbox.pk)
        run = mailbox.runs.get()
        assert summary.outcome == "error"
        assert run.exit_code == 5
        assert "not allowed" in run.error


class RebindingTests:
    def test_a_name_that_turns_private_after_the_check_is_refused_at_connect(
        self, monkeypatch
    ):
        """GIVEN a host the policy check saw as public
        WHEN it resolves to loopback by the time the engine connects
        THEN the poll is refused with the same words and nothing is connected."""
        from retrieval import netpolicy

        monkeypatch.setattr(netpolicy, "check_destination", lambda host, port: None)
        mailbox = make_mailbox(make_user(), host="127.0.0.1", port=993)
        assert services.mailbox_spec(mailbox).server.public_only

        summary = services.mailbox_poll(mailbox_id=mailbox.pk)

        run = mailbox.runs.get()
        assert summary.exit_code == 5
        assert "not allowed" in run.error

    def test_superusers_are_not_restricted(self):
        mailbox = make_mailbox(make_user(superuser=True), host="127.0.0.1", port=993)
        assert not services.mailbox_spec(mailbox).server.public_only


class EtrnTlsTests:
    """An imported ETRN entry polls as fetchmail would (issue 10, item 8)."""

    @pytest.mark.parametrize(
        ("words", "mode"),
        [
            ("", TlsMode.NONE),  # fetchmail never upgrades ETRN by itself
            ("sslcertck", TlsMode.STARTTLS),
            ("sslfingerprint 'AB:CD'", TlsMode.STARTTLS),
            ("ssl", TlsMode.IMPLICIT),
        ],
    )
    def test_an_imported_etrn_entry_asks_for_tls_only_when_told(
        self, tmp_path, settings, words, mode
    ) -> None:
        settings.FETCH_ALLOW_PRIVATE_HOSTS = True
        owner = make_user("etrn@example.org", superuser=True)
        path = tmp_path / "rc"
        path.write_text(
            f"poll mx.isp.example proto etrn user client fetchdomains d.example {words}\n"
        )
        call_command(
            "import_fetchmailrc",
            str(path),
            owner=owner.email,
            netrc="/nonexistent",
            stdout=io.StringIO(),
        )
        (mailbox,) = Mailbox.objects.all()
        spec = services.mailbox_spec(mailbox)
        assert spec.server.tls.mode is mode
        assert spec.server.tls.verify is True

    @pytest.mark.parametrize(
        ("tls_mode", "mode"),
        [
            ("starttls", TlsMode.STARTTLS),  # chosen in the browser: kept
            ("none", TlsMode.NONE),
            ("implicit", TlsMode.IMPLICIT),
        ],
    )
    def test_the_encryption_column_of_an_etrn_row_is_obeyed(
        self, settings, tls_mode, mode
    ) -> None:
        settings.FETCH_ALLOW_PRIVATE_HOSTS = True
        mailbox = make_mailbox(
            make_user(superuser=True),
            protocol="etrn",
            host="mx.isp.example",
            tls_mode=tls_mode,
            options={"user": {"fetchdomains": ["d.example"]}},
        )
        spec = services.mailbox_spec(mailbox)
        assert spec.server.tls.mode is mode and spec.server.tls.verify is True
