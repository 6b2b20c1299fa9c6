"""import_fetchmailrc: what it creates, what it refuses and why, and that the result
polls a real server."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import pytest
from django.core.management import CommandError, call_command

from retrieval import services
from retrieval.models import Mailbox, PollRun, SeenMessage
from retrieval.rcfile.export import quote
from tests.factories import make_domain, make_user
from tests.retrieval.test_rcfile_export import fast_passwords

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.django_db
__all__ = ["fast_passwords"]  # the autouse fixture, shared

CANARY = "Canary-pw-7f3a"


def _import(path: Path, **options: Any) -> str:
    out, err = io.StringIO(), io.StringIO()
    options.setdefault("netrc", "/nonexistent")
    call_command("import_fetchmailrc", str(path), stdout=out, stderr=err, **options)
    assert err.getvalue() == ""
    return out.getvalue()


def _refusal(path: Path, **options: Any) -> str:
    with pytest.raises(CommandError) as info:
        _import(path, **options)
    assert not Mailbox.objects.exists(), "a refused import must leave nothing behind"
    return str(info.value)


@pytest.fixture
def alice() -> Any:
    return make_user("alice@example.org")


@pytest.fixture
def root() -> Any:
    return make_user("root@example.org", superuser=True)


@pytest.fixture
def rcfile(tmp_path: Path) -> Any:
    def write(text: str) -> Path:
        path = tmp_path / "fetchmailrc"
        path.write_text(text, encoding="utf-8")
        return path

    return write


GOOD = 'poll imap.example.net proto imap user "alice" there password "pw" keep\n'

# One option a person who is not a superuser may not import, and a word of the reason.
SUPERUSER_ONLY = [
    ('mda "/usr/bin/procmail -d %T"', "runs a command"),
    ('bsmtp "/tmp/out"', "writes a file"),
    ('preconnect "ssh -f tunnel"', "runs a command"),
    ('postconnect "true"', "runs a command"),
    ('sslcertfile "/etc/ssl/private/ca.pem"', "names a file"),
    ('sslcertpath "/etc/ssl/certs"', "names a file"),
    ('sslcert "/etc/ssl/c.pem"', "names a file"),
    ('sslkey "/etc/ssl/k.pem"', "names a file"),
    ('smtphost "relay.example.com"', "not a mail listener"),
    ('lmtp smtphost "localhost/24"', "not a mail listener"),
    ("sslproto ''", "turns encryption off"),
    ("no sslcertck", "not be checked"),
    ("is bob here", 'delivers to "bob"'),
    ('smtpname "bob@example.org"', 'delivers to "bob@example.org"'),
    ("is alice * here", 'delivers to "*"'),
    ('smtpaddress "example.com"', 'delivers to addresses in "example.com"'),
]
SERVER_SUPERUSER_ONLY = [
    ('plugin "openssl s_client -connect %h:%p"', "runs a command"),
    ('plugout "nc localhost 25"', "runs a command"),
    ('interface "eth0/10.0.0.1"', "network interfaces"),
    ('monitor "ppp0"', "network interfaces"),
]


class RefusalTests:
    @pytest.mark.parametrize(("option", "reason"), SUPERUSER_ONLY)
    def test_user_options_a_normal_user_may_not_set(
        self, alice, rcfile, option, reason
    ):
        path = rcfile(
            GOOD + f'poll pop.example.net user "a2" there password "x"\n    {option}\n'
        )
        message = _refusal(path, owner=alice.email)
        assert f"{path}:2: " in message
        assert reason in message
        assert "nothing was imported" in message

    @pytest.mark.parametrize(("option", "reason"), SERVER_SUPERUSER_ONLY)
    def test_server_options_a_normal_user_may_not_set(
        self, alice, rcfile, option, reason
    ):
        path = rcfile(f"\n\npoll pop.example.net {option} user a2 pass x\n")
        message = _refusal(path, owner=alice.email)
        assert f"{path}:3: " in message and reason in message

    def test_the_postmaster_must_be_the_owner_too(self, alice, rcfile):
        path = rcfile('set postmaster "bob@example.org"\n' + GOOD)
        assert 'delivers to "bob@example.org"' in _refusal(path, owner=alice.email)
        _import(rcfile('set postmaster "alice"\n' + GOOD), owner=alice.email)

    def test_every_refused_line_is_listed(self, alice, rcfile):
        path = rcfile(
            GOOD
            + 'poll a.example.net user u1 pass x mda "procmail"\n'
            + "poll b.example.net user u2 pass x\n"
            + 'poll c.example.net plugin "nc %h %p" user u3 pass x\n'
        )
        message = _refusal(path, owner=alice.email)
        assert f"{path}:2: mda" in message
        assert f"{path}:4: plugin" in message
        assert f"{path}:3:" not in message and f"{path}:1:" not in message
        assert "(2 problem(s))" in message

    @pytest.mark.parametrize(("option", "reason"), SUPERUSER_ONLY)
    def test_a_superuser_may_import_them(self, alice, root, rcfile, option, reason):
        path = rcfile(f"poll pop.example.net user a2 there password x {option}\n")
        out = _import(path, owner=alice.email, as_email=root.email)
        assert "created mailbox" in out
        assert Mailbox.objects.get().owner == alice

    def test_commands_for_a_normal_owner_are_stored_with_a_warning(
        self, alice, root, rcfile
    ):
        path = rcfile('poll pop.example.net user a2 pass x mda "procmail -d %T"\n')
        out = _import(path, owner=alice.email, as_email=root.email)
        mailbox = Mailbox.objects.get()
        assert mailbox.delivery_kind == "mda"
        assert mailbox.options["user"]["mda"] == "procmail -d %T"
        assert "warning: mda will not run while the owner" in out

    def test_a_superuser_owner_needs_no_as(self, root, rcfile):
        path = rcfile('poll pop.example.net plugin "nc %h %p" user a2 pass x\n')
        out = _import(path, owner=root.email)
        assert "warning" not in out
        assert Mailbox.objects.get().options["server"]["plugin"] == "nc %h %p"

    def test_own_address_and_login_are_fine_for_a_normal_user(self, alice, rcfile):
        path = rcfile(
            "poll a.example.net user u1 pass x is alice here\n"
            'poll b.example.net user u2 pass x smtpname "alice@example.org"\n'
        )
        _import(path, owner=alice.email)
        assert Mailbox.objects.count() == 2

    def test_the_administrator_may_allow_more_listeners(self, alice, rcfile, settings):
        settings.FETCH_ALLOWED_DELIVERY = ["localhost", "localhost/24"]
        path = rcfile(
            'poll a.example.net user u1 pass x lmtp smtphost "localhost/24"\n'
        )
        _import(path, owner=alice.email)
        mailbox = Mailbox.objects.get()
        assert (mailbox.delivery_kind, mailbox.delivery_port) == ("lmtp", 24)

    def test_text_that_is_not_utf8_is_refused_for_everyone(self, root, tmp_path):
        path = tmp_path / "latin1rc"
        path.write_bytes(b'poll a.example.net user u1 password "caf\xe9"\n')
        message = _refusal(path, owner=root.email)
        assert f"{path}:1: password: not UTF-8 text" in message
        assert "caf" not in message

    def test_a_syntax_error_exits_5_with_file_and_line(self, alice, rcfile):
        path = rcfile("poll a.example.net\n  user u1 pass x\n  bogus\n")
        with pytest.raises(CommandError) as info:
            _import(path, owner=alice.email)
        assert info.value.returncode == 5
        assert str(info.value).startswith(f"{path}:3:")

    def test_a_person_imports_only_for_themselves(self, alice, rcfile):
        make_user("eve@example.org")
        with pytest.raises(CommandError, match="may not manage the mailboxes of alice"):
            _import(rcfile(GOOD), owner=alice.email, as_email="eve@example.org")


class ImportTests:
    def test_it_creates_the_mailbox_and_reports_every_option(self, alice, rcfile):
        path = rcfile(
            "set daemon 600\nset logfile /var/log/fetchmail.log\nset no bouncemail\n"
            "poll imap.example.net proto imap port 993 envelope X-Original-To\n"
            '  user "alice.remote" there password "pw" is alice here\n'
            '  ssl folder INBOX "Sent Items" keep fetchall antispam 554 571\n'
            "skip pop.example.net proto pop3 user old pass x\n"
        )

        out = _import(path, owner=alice.email)

        first, second = Mailbox.objects.order_by("pk")
        assert (first.protocol, first.host, first.port, first.tls_mode) == (
            "imap",
            "imap.example.net",
            993,
            "implicit",
        )
        assert (first.username, first.get_password(), first.folders) == (
            "alice.remote",
            "pw",
            ["INBOX", "Sent Items"],
        )
        assert first.keep and first.fetchall and first.enabled
        assert first.poll_interval == 600
        assert first.options == {
            "globals": {"bouncemail": False},
            "server": {"envelope": "X-Original-To"},
            "user": {"antispam": [554, 571]},
        }
        assert list(first.rules.values_list("remote", "local")) == [("alice", "")]
        assert not second.enabled and second.protocol == "pop3"
        assert "set logfile: not applicable" in out
        assert "stored with every mailbox: set daemon 600, set no bouncemail" in out
        assert f'{path}:4: created mailbox {first.pk}: IMAP "imap.example.net"' in out
        assert 'envelope "X-Original-To"' in out and "antispam 554 571" in out
        assert f"{path}:7: created mailbox {second.pk}" in out
        assert "disabled (a skip entry)" in out
        assert "2 mailbox(es) for alice@example.org: 2 created, 0 updated." in out

    def test_importing_again_updates_the_same_mailboxes(self, alice, rcfile):
        path = rcfile(GOOD + "poll pop.example.net proto pop3 user u2 pass x\n")
        _import(path, owner=alice.email)
        before = {m.username: m for m in Mailbox.objects.all()}
        SeenMessage.objects.create(mailbox=before["alice"], uid="1")
        path.write_text(
            GOOD.replace("keep", "no keep folder Archive")
            + "poll pop.example.net proto pop3 port 110 user u2\n"
        )

        out = _import(path, owner=alice.email)

        after = {m.username: m for m in Mailbox.objects.all()}
        assert {k: m.pk for k, m in after.items()} == {
            k: m.pk for k, m in before.items()
        }
        assert not after["alice"].keep and after["alice"].folders == ["Archive"]
        assert after["alice"].seen.count() == 1  # its record of delivered mail stays
        assert after["u2"].get_password() == "x"
        assert "password: none in the file; the stored one is kept" in out
        assert out.count("updated mailbox") == 2
        assert "0 created, 2 updated" in out

    def test_two_entries_for_one_account_stay_two_mailboxes(self, alice, rcfile):
        path = rcfile(
            "poll imap.example.net user u pass x folder INBOX\n"
            "poll imap.example.net user u pass x folder Lists\n"
        )
        _import(path, owner=alice.email)
        _import(path, owner=alice.email)
        folders = list(Mailbox.objects.order_by("pk").values_list("folders", flat=True))
        assert folders == [["INBOX"], ["Lists"]]

    def test_a_password_never_appears_in_the_output(self, alice, root, rcfile):
        good = rcfile(f"poll a.example.net user u1 pass {quote(CANARY)}\n")
        out = _import(good, owner=alice.email)
        assert CANARY not in out and "password: from the file (hidden)" in out
        bad = rcfile(
            f"poll a.example.net user u1 pass {quote(CANARY)} mda {quote(CANARY)}\n"
            f'poll b.example.net esmtppassword {quote(CANARY)} user u pass "{CANARY}"\n'
        )
        Mailbox.objects.all().delete()
        out = _import(bad, owner=alice.email, as_email=root.email)
        assert out.count(CANARY) == 1  # the mda command, which is no secret
        assert "esmtppassword (hidden)" in out

    def test_passwords_missing_from_the_file_come_from_netrc(
        self, alice, rcfile, tmp_path
    ):
        netrc = tmp_path / "netrc"
        netrc.write_text(
            "machine a.example.net login other password no\n"
            "machine a.example.net login u1 password from-netrc\n"
        )
        path = rcfile("poll a.example.net user u1\npoll b.example.net user u2\n")

        out = _import(path, owner=alice.email, netrc=str(netrc))

        passwords = dict(Mailbox.objects.values_list("username", "password_encrypted"))
        assert Mailbox.objects.get(username="u1").get_password() == "from-netrc"
        assert passwords["u2"] == ""
        assert "password: from .netrc (hidden)" in out and "from-netrc" not in out

    @pytest.mark.parametrize(
        "password",
        ['quote " inside', "new\nline", "hash # not a comment", "çà-ünï-κωδ-🔑", " "],
    )
    def test_passwords_are_imported_exactly(self, alice, rcfile, password):
        _import(
            rcfile(f"poll a.example.net user u pass {quote(password)}\n"),
            owner=alice.email,
        )
        assert Mailbox.objects.get().get_password() == password

    def test_multidrop_names_become_rules_in_order(self, root, rcfile):
        path = rcfile(
            "poll mx.example.net envelope X-Original-To\n"
            '  user catchall pass x to zed alice "jdoe"=john * bob here\n'
        )
        _import(path, owner=root.email)
        rules = Mailbox.objects.get().rules.values_list("position", "remote", "local")
        assert list(rules) == [
            (0, "zed", ""),
            (1, "alice", ""),
            (2, "jdoe", "john"),
            (3, "bob", ""),
            (4, "*", ""),
        ]

    def test_a_missing_user_is_the_owners_login(self, alice, rcfile):
        _import(rcfile("poll a.example.net pass x\n"), owner=alice.email)
        assert Mailbox.objects.get().username == "alice"
        Mailbox.objects.all().delete()
        _import(rcfile("poll a.example.net pass x\n"), owner=alice.email, login="al")
        assert Mailbox.objects.get().username == "al"

    def test_a_dry_run_saves_nothing(self, alice, rcfile):
        out = _import(rcfile(GOOD), owner=alice.email, dry_run=True)
        assert "created mailbox" in out and "dry run, nothing was saved" in out
        assert not Mailbox.objects.exists()


class DomainImportTests:
    def test_mailboxes_belong_to_the_domain_and_its_first_administrator(self, rcfile):
        second = make_user("zoe@example.org")
        first = make_user("adam@example.org")
        domain = make_domain("example.org", admins=(second, first))
        path = rcfile(
            "poll mx.example.net user catchall pass x\n"
            '  is jane "kim@example.org" * here\n'
        )

        _import(path, domain="example.org")

        mailbox = Mailbox.objects.get()
        assert (mailbox.domain, mailbox.owner) == (domain, first)
        assert mailbox.rules.count() == 3

    def test_a_member_may_own_them(self, rcfile):
        admin = make_user("adam@example.org")
        domain = make_domain("example.org", admins=(admin,))
        member = make_user("kim@example.org", domain=domain)
        _import(
            rcfile(GOOD), domain="example.org", owner=member.email, as_email=admin.email
        )
        assert Mailbox.objects.get().owner == member

    def test_addresses_outside_the_domain_are_refused(self, rcfile):
        make_domain("example.org", admins=(make_user("adam@example.org"),))
        path = rcfile('poll mx.example.net user c pass x is "kim@example.com" here\n')
        message = _refusal(path, domain="example.org")
        assert 'delivers to "kim@example.com", outside example.org' in message

    def test_multidrop_passes_whole_addresses_only_in_the_domain(self, rcfile):
        make_domain("example.org", admins=(make_user("adam@example.org"),))
        path = rcfile(
            "poll mx.example.net localdomains example.org example.com\n"
            "  user c pass x is jane * here\n"
        )
        message = _refusal(path, domain="example.org")
        assert 'addresses in "example.com", outside example.org' in message
        assert '"example.org"' not in message

    def test_only_its_administrators_import_into_a_domain(self, alice, rcfile):
        make_domain("example.org", admins=(make_user("adam@example.org"),))
        with pytest.raises(CommandError, match=r"not an administrator of example\.org"):
            _import(rcfile(GOOD), domain="example.org", as_email=alice.email)
        outsider = make_user("eve@example.net")
        with pytest.raises(CommandError, match="neither a member nor an administrator"):
            _import(
                rcfile(GOOD),
                domain="example.org",
                owner=outsider.email,
                as_email="adam@example.org",
            )


@pytest.mark.live
def test_an_imported_rcfile_polls_the_real_server(
    dovecot, mailuser, smtp_listener, rcfile
):
    """Import an entry for the fixture Dovecot as a superuser; the poll delivers."""
    root = make_user("root@example.org", superuser=True)
    raw = b"From: a@example.net\r\nSubject: imported\r\nMessage-ID: <i1@x>\r\n\r\nhello\r\n"
    dovecot.put(mailuser.name, raw)
    path = rcfile(
        f"poll {dovecot.host} proto imap port {dovecot.imaps_port} timeout 10\n"
        f"  user {quote(mailuser.name)} there password {quote(mailuser.password)}\n"
        f"  ssl sslcertfile {quote(dovecot.ca_file)}\n"
        f'  smtphost "{smtp_listener.host}/{smtp_listener.port}"\n'
        '  is "alice@example.org" here\n'
    )
    _import(path, owner=root.email)
    mailbox = Mailbox.objects.get()

    summary = services.mailbox_poll(mailbox_id=mailbox.pk)

    run = PollRun.objects.get(pk=summary.run_id)
    assert run.outcome == PollRun.Outcome.SUCCESS, run.error
    assert run.delivered == 1
    assert smtp_listener.messages[0].rcpt_tos == ["alice@example.org"]
    assert smtp_listener.messages[0].data.endswith(raw)
    assert dovecot.messages(mailuser.name) == []
