"""retrieval.rcmap: one mapping between rows and the rcfile model, and the spec a
poll gets from a row (services.mailbox_spec goes through it)."""

from __future__ import annotations

import dataclasses
import io
from typing import TYPE_CHECKING

import pytest
from django.core.management import call_command

from retrieval import rcmap, services
from retrieval.models import Mailbox, MultidropRule
from retrieval.rcfile import parse_file, parse_text
from retrieval.rcfile.specs import user_spec
from tests.factories import make_mailbox, make_user
from tests.retrieval.test_rcfile_export import (
    ACCEPTED,
    ENV,
    LOGIN,
    NOT_IMPORTABLE,
    fast_passwords,
)

if TYPE_CHECKING:
    from pathlib import Path

    from retrieval.engine.spec import MailboxSpec
    from retrieval.rcfile.model import UserOptions

pytestmark = pytest.mark.django_db
__all__ = ["fast_passwords"]  # the autouse fixture, shared

IMPORTABLE = [p for p in ACCEPTED if p.name not in NOT_IMPORTABLE]
NOT_APPLICABLE_EXTRAS = {f"set {name}" for name in rcmap.NOT_APPLICABLE}


def _import_text(text: str, tmp_path: Path, owner: str) -> list[Mailbox]:
    path = tmp_path / "rc"
    path.write_text(text)
    call_command(
        "import_fetchmailrc",
        str(path),
        owner=owner,
        netrc="/nonexistent",
        stdout=io.StringIO(),
    )
    return list(Mailbox.objects.order_by("pk"))


def _comparable(spec: MailboxSpec, u: UserOptions) -> MailboxSpec:
    """What the row decides. The service adds its own recipients, caps and
    postmaster; the login a missing ``is`` stands for and this host's name come
    from the environment, which differs between the two on purpose."""
    delivery = dataclasses.replace(spec.delivery, timeout=0, postmaster="")
    if not (u.smtpname or u.localnames) or spec.multidrop is not None:
        delivery = dataclasses.replace(delivery, recipients=())
    multidrop = spec.multidrop
    if multidrop is not None and not u.localnames:
        multidrop = dataclasses.replace(multidrop, names=())
    return dataclasses.replace(
        spec,
        delivery=delivery,
        multidrop=multidrop,
        fetchdomains=tuple(u.fetchdomains),
        extra=tuple(e for e in spec.extra if e[0] not in NOT_APPLICABLE_EXTRAS),
    )


@pytest.mark.parametrize("path", IMPORTABLE, ids=[p.name for p in IMPORTABLE])
def test_a_row_polls_exactly_as_its_rcfile_entry_would(path: Path, settings) -> None:
    """One path: the spec from the database equals the spec from the file."""
    settings.FETCH_TIMEOUT = 10**6
    owner = make_user(f"{LOGIN}@example.org", superuser=True)
    config = parse_file(str(path))
    call_command(
        "import_fetchmailrc",
        str(path),
        owner=owner.email,
        netrc="/nonexistent",
        stdout=io.StringIO(),
    )
    entries = [(s.options, u) for s in config.servers for u in s.users]
    rows = Mailbox.objects.order_by("pk")
    assert len(rows) == len(entries)
    for row, (s, u) in zip(rows, entries, strict=True):
        expected = _comparable(user_spec(config.globals, s, u, ENV), u)
        got = _comparable(services.mailbox_spec(row), u)
        assert got == expected


class MappingTests:
    def test_options_hold_exactly_what_no_column_holds(self, tmp_path) -> None:
        owner = make_user(f"{LOGIN}@example.org", superuser=True)
        corpus = next(p for p in ACCEPTED if p.name == "all-keywords.rc")
        (mailbox,) = _import_text(corpus.read_text(), tmp_path, owner.email)
        stored = {
            f"{scope}.{name}"
            for scope, part in mailbox.options.items()
            for name in part
        }
        assert stored == {
            # the rest of the language
            "globals.postmaster", "globals.bouncemail", "globals.spambounce",
            "globals.softbounce", "globals.properties", "globals.invisible",
            "globals.showdots", "server.envelope", "server.envskip", "server.qvirtual",
            "server.aka", "server.localdomains", "server.dns", "server.checkalias",
            "server.uidl", "server.interface", "server.monitor", "server.plugin",
            "server.plugout", "server.principal", "server.esmtpname",
            "server.tracepolls", "server.badheader", "user.fetchdomains",
            "user.smtpaddress", "user.antispam", "user.bsmtp", "user.preconnect",
            "user.postconnect", "user.flush", "user.limitflush", "user.rewrite",
            "user.forcecr", "user.stripcr", "user.pass8bits", "user.dropstatus",
            "user.dropdelivered", "user.mimedecode", "user.idle", "user.sslkey",
            "user.sslcert", "user.sslcertpath", "user.sslcommonname",
            "user.sslfingerprint", "user.limit", "user.warnings", "user.fetchlimit",
            "user.fetchsizelimit", "user.fastuidl", "user.batchlimit", "user.expunge",
            "user.properties", "user.sslproto",
            # hints: finer than their columns
            "globals.daemon", "server.interval", "user.mda", "user.lmtp", "user.sslcertck",
        }  # fmt: skip
        assert (mailbox.protocol, mailbox.port, mailbox.auth) == (
            "pop3",
            110,
            "password",
        )
        assert (mailbox.name, mailbox.host) == ("example.com", "real.example.com")
        assert (mailbox.delivery_kind, mailbox.delivery_host) == ("mda", "h1")
        assert mailbox.delivery_port == 2525 and mailbox.poll_interval == 1800
        assert mailbox.recipient == "x@y" and mailbox.timeout == 20
        assert mailbox.get_esmtp_password() == "esmtp pw"
        assert "pw" not in str(mailbox.options)

    @pytest.mark.parametrize(
        ("words", "columns"),
        [
            ("ssl", ("implicit", True, "")),
            ("", ("starttls", True, "")),
            ("no ssl", ("starttls", True, "")),
            ("sslproto ''", ("none", True, "")),
            ("ssl sslproto ''", ("implicit", True, "")),
            ("sslproto tls1.2+ no sslcertck", ("starttls", False, "")),
            ("ssl sslcertfile /etc/ca.pem", ("implicit", True, "/etc/ca.pem")),
        ],
    )
    def test_tls_columns_agree_with_the_rcfile_spec(self, words, columns) -> None:
        config = parse_text(f"poll h user u pass p {words}\n", "/etc/rc")
        server = config.servers[0]
        row = rcmap.rc_to_row(config.globals, server.options, server.users[0], ENV)
        assert (
            row.columns["tls_mode"],
            row.columns["verify_tls"],
            row.columns["ca_file"],
        ) == columns
        tls = user_spec(config.globals, server.options, server.users[0], ENV).server.tls
        assert (tls.mode, tls.verify, tls.ca_file or "") == columns

    def test_a_hint_gives_way_when_its_column_changes(self, tmp_path) -> None:
        owner = make_user(f"{LOGIN}@example.org", superuser=True)
        (mailbox,) = _import_text(
            "poll h proto apop service pop3s timeout 300\n"
            "  user u pass p no keep smtphost a/2525 b\n",
            tmp_path,
            owner.email,
        )
        _, s, u = rcmap.mailbox_to_rc(mailbox)
        assert (s.protocol, s.service, s.timeout, u.keep) == (
            "apop",
            "pop3s",
            300,
            False,
        )
        assert u.smtphost == ["a/2525", "b"]

        mailbox.auth, mailbox.port, mailbox.timeout, mailbox.keep = (
            "any",
            1995,
            60,
            True,
        )
        mailbox.delivery_host = "lmtp.example.org"
        _, s, u = rcmap.mailbox_to_rc(mailbox)

        assert (s.protocol, s.service, s.timeout, u.keep) == ("pop3", "1995", 60, True)
        assert u.smtphost == ["lmtp.example.org/2525"]

    def test_a_row_made_in_the_browser_reads_as_plain_rcfile(self) -> None:
        mailbox = make_mailbox(
            host="imap.example.net",
            username="bob",
            poll_interval=600,
            delivery_kind="lmtp",
            delivery_host="::1",
            delivery_port=24,
            recipient="bob@example.org",
        )
        MultidropRule.objects.create(mailbox=mailbox, position=0, remote="*")
        g, s, u = rcmap.mailbox_to_rc(mailbox)
        assert (g.daemon, s.pollname, s.via, s.protocol, s.auth, s.timeout) == (
            600,
            "imap.example.net",
            None,
            "imap",
            None,
            120,
        )
        assert (u.remote, u.ssl, u.sslproto, u.sslcertck, u.password) == (
            "bob",
            True,
            None,
            None,
            None,
        )
        assert (u.smtphost, u.lmtp, u.smtpname, u.wildcard) == (
            ["[::1]/24"],
            True,
            "bob@example.org",
            True,
        )

    def test_options_that_do_not_fit_the_model_are_ignored(self) -> None:
        mailbox = make_mailbox(
            options={
                "user": {"keep": "yes", "limit": 5, "password": "x", "antispam": ["a"]},
                "server": {"plugin": 7, "nonsense": True},
                "globals": {"logfile": "/tmp/x", "postmaster": "pm"},
            }
        )
        g, s, u = rcmap.mailbox_to_rc(mailbox)
        assert (u.keep, u.limit, u.password, u.antispam) == (None, 5, None, [])
        assert (s.plugin, g.logfile, g.postmaster) == (None, None, "pm")


class ServiceSpecTests:
    def test_commands_fail_the_poll_unless_the_owner_is_a_superuser(self) -> None:
        for options in (
            {"user": {"preconnect": "true"}},
            {"user": {"postconnect": "true"}},
            {"server": {"plugin": "nc %h %p"}},
            {"server": {"plugout": "nc localhost 25"}},
            {"user": {"bsmtp": "/tmp/x"}},
        ):
            mailbox = make_mailbox(
                make_user(), host="imap.example.net", options=options
            )
            with pytest.raises(
                services.SpecError, match="only a mailbox of an administrator"
            ):
                services.mailbox_spec(mailbox)
        for options in ({"user": {"mda": "procmail"}}, {}):
            mailbox = make_mailbox(make_user(), delivery_kind="mda", options=options)
            with pytest.raises(services.SpecError, match=r"on the server \(mda\)"):
                services.mailbox_spec(mailbox)

    def test_an_mda_the_columns_do_not_choose_is_not_run(self) -> None:
        """Columns are the truth: an mda left in options with SMTP delivery is
        not used, so it needs no guard."""
        root = make_user(superuser=True)
        mailbox = make_mailbox(root, options={"user": {"mda": "procmail"}})
        assert services.mailbox_spec(mailbox).delivery.kind == "smtp"

    def test_the_refusal_is_recorded_in_plain_words(self) -> None:
        mailbox = make_mailbox(make_user(), options={"user": {"postconnect": "x"}})
        summary = services.mailbox_poll(mailbox_id=mailbox.pk)
        assert summary.outcome == "error" and summary.exit_code == 5
        assert "postconnect" in mailbox.runs.get().error

    def test_a_superusers_mailbox_may_run_its_mda(self) -> None:
        root = make_user(superuser=True)
        mailbox = make_mailbox(
            root,
            delivery_kind="mda",
            options={"user": {"mda": "/usr/bin/procmail -d %T"}},
        )
        spec = services.mailbox_spec(mailbox)
        assert spec.delivery.kind == "mda"
        assert spec.delivery.mda == ("/usr/bin/procmail", "-d", "%T")
        mailbox.options = {}
        with pytest.raises(services.SpecError, match="no command is set"):
            services.mailbox_spec(mailbox)

    def test_recipients_are_the_owner_unless_the_row_says(self, settings) -> None:
        settings.FETCH_ALLOW_PRIVATE_HOSTS = True
        owner = make_user("dan@example.org")
        mailbox = make_mailbox(owner)
        assert services.mailbox_spec(mailbox).delivery.recipients == (
            "dan@example.org",
        )
        MultidropRule.objects.create(mailbox=mailbox, position=0, remote="dan")
        assert services.mailbox_spec(mailbox).delivery.recipients == ("dan",)
        MultidropRule.objects.create(mailbox=mailbox, position=1, remote="eve")
        # several names: multidrop, which the engine does not do yet; the owner gets it
        assert services.mailbox_spec(mailbox).delivery.recipients == (
            "dan@example.org",
        )
        mailbox.recipient = "sales@example.org"
        assert services.mailbox_spec(mailbox).delivery.recipients == (
            "sales@example.org",
        )

    def test_an_unreadable_password_is_a_spec_error(self) -> None:
        mailbox = make_mailbox(make_user(), password="pw")
        mailbox.password_encrypted = mailbox.password_encrypted[:-4] + "AAAA"
        with pytest.raises(services.SpecError, match="stored password cannot be read"):
            services.mailbox_spec(mailbox)

    def test_the_timeout_is_capped_by_the_settings(self, settings) -> None:
        settings.FETCH_TIMEOUT = 30
        spec = services.mailbox_spec(
            make_mailbox(make_user(superuser=True), timeout=600)
        )
        assert spec.server.timeout == spec.delivery.timeout == 30


@pytest.mark.parametrize("entry", ["mx/\u00b2", "mx/\u0663", "[::1]/\u00b2\u00b2"])
def test_a_port_of_non_ascii_digits_is_not_understood(entry: str) -> None:
    assert rcmap.delivery_target(entry) is None
