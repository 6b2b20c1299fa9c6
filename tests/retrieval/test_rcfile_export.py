"""export_fetchmailrc: the round trip over the corpus, grouping, permissions, files."""

from __future__ import annotations

import io
import stat
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from retrieval.models import Mailbox
from retrieval.rcfile import (
    Environment,
    RcfileError,
    configdump,
    parse_file,
    parse_text,
)
from retrieval.rcfile.export import PASSWORD_PLACEHOLDER
from tests.factories import make_domain, make_mailbox, make_user


@pytest.fixture(autouse=True)
def fast_passwords(settings: Any) -> None:
    """Login passwords hashed cheaply: the default hasher costs more than a test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


pytestmark = pytest.mark.django_db

CORPUS = sorted(
    (Path(__file__).parents[1] / "rcfile" / "corpus").glob("*.rc"), key=lambda p: p.name
)
LOGIN = "alice"  # the owners' login: what a missing `user` stands for
ENV = Environment(
    user=LOGIN,
    home="/nonexistent",
    fmhome="/nonexistent",
    hostname="fetchweb.example",
    check_files=False,
)
# Not stored: a service that records every poll has no use for them (rcmap).
NOT_APPLICABLE = ("logfile", "idfile", "syslog")
# Refused for everyone: fetchweb keeps text in UTF-8, and a users-of-defaults entry
# is a broken file (fetchmail would poll a server named "defaults").
NOT_IMPORTABLE = {
    "high-bytes.rc",  # not UTF-8
    "probe-056.rc",  # not UTF-8
    "probe-059.rc",  # not UTF-8
    "probe-063.rc",  # poll "" user "": no server, no user name
    "probe-079.rc",  # a second defaults record: a server named "defaults"
    "probe-124.rc",  # smtphost "h/lmtp": no such port here
    "probe-125.rc",  # smtphost "h/foo"
    "probe-126.rc",  # smtphost "h/0"
    # Names the multidrop editor refuses too (services.multidrop.problems): they
    # would reach the listener as RCPT TO arguments.
    "escapes.rc",  # is 'x\\y' here
    "probe-027.rc",  # set postmaster "po\x01st"
    "probe-062.rc",  # is "\x01\x01..." here
}


def _parsed(path: Path) -> Any:
    try:
        return parse_file(str(path))
    except RcfileError:
        return None


ACCEPTED = [p for p in CORPUS if _parsed(p) is not None]


def _run(command: str, *args: str, **options: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def _configuration(dump: dict[str, Any]) -> dict[str, Any]:
    """The dump as a configuration: users grouped under identical server options,
    the way the export writes them (two `poll a` entries are one with two users)."""
    out = {k: v for k, v in dump.items() if k not in NOT_APPLICABLE}
    servers: list[dict[str, Any]] = []
    for server in dump["servers"]:
        head = {k: v for k, v in server.items() if k != "users"}
        for other in servers:
            if {k: v for k, v in other.items() if k != "users"} == head:
                other["users"] += server["users"]
                break
        else:
            servers.append({**head, "users": list(server["users"])})
    out["servers"] = servers
    return out


SUPERUSER_ONLY_KEYS = (
    *("mda", "bsmtp", "preconnect", "postconnect", "lmtp"),
    *("sslcert", "sslkey", "sslcertfile", "sslcertpath"),
)


def _needs_superuser(dump: dict[str, Any], domain: str) -> bool:
    """The policy of import_fetchmailrc for a domain administrator, stated from the
    dump: no server-run command or local file, no foreign listener, TLS on and
    verified, recipients (local names, smtpname, postmaster, smtpaddress, the
    localdomains of a multidrop mailbox) in the domain."""
    for server in dump["servers"]:
        if any(server[k] for k in ("plugin", "plugout", "interface", "monitor")):
            return True
        for user in server["users"]:
            if any(user[k] not in (None, False) for k in SUPERUSER_ONLY_KEYS):
                return True
            if user["smtphunt"] != ["localhost"] or not user["sslcertck"]:
                return True
            if user["sslproto"] == "" and not user["ssl"]:
                return True
            names = [n if isinstance(n, str) else n[1] for n in user["localnames"]]
            names += [user["smtpname"], dump["postmaster"]]
            if any(n and "@" in n and not n.endswith("@" + domain) for n in names):
                return True
            multidrop = len(user["localnames"]) > 1
            domains = server["localdomains"] if multidrop else []
            domains += [user["smtpaddress"]] if user["smtpaddress"] else []
            if any(d != domain for d in domains):
                return True
    return False


def _round_trip(
    path: Path, import_options: dict[str, Any], export_options: dict[str, Any]
) -> None:
    original = configdump(parse_file(str(path)), ENV)
    _run("import_fetchmailrc", str(path), netrc="/nonexistent", **import_options)
    text, _ = _run("export_fetchmailrc", with_passwords=True, **export_options)
    again = configdump(parse_text(text, str(path)), ENV)
    if not original["servers"]:  # `set` statements live with mailboxes: none here
        assert (again["servers"], Mailbox.objects.count()) == ([], 0)
        return
    assert _configuration(again) == _configuration(original), text


@pytest.mark.parametrize("path", ACCEPTED, ids=[p.name for p in ACCEPTED])
def test_round_trip_as_a_superuser(path: Path) -> None:
    make_user(f"{LOGIN}@example.org", superuser=True)
    if path.name in NOT_IMPORTABLE:
        with pytest.raises(CommandError, match="nothing was imported"):
            _run("import_fetchmailrc", str(path), owner=f"{LOGIN}@example.org")
        assert not Mailbox.objects.exists()
        return
    _round_trip(
        path, {"owner": f"{LOGIN}@example.org"}, {"owner": f"{LOGIN}@example.org"}
    )


@pytest.mark.parametrize("path", ACCEPTED, ids=[p.name for p in ACCEPTED])
def test_round_trip_as_a_domain_administrator(path: Path, settings: Any) -> None:
    # The corpus's servers are on any port: the network policy (tested in
    # tests/retrieval/test_rcfile_pages.py) would refuse most of them.
    settings.FETCH_ALLOW_PRIVATE_HOSTS = True
    admin = make_user(f"{LOGIN}@example.org")
    make_domain("example.org", admins=(admin,))
    # With --with-passwords the export needs a superuser's word (--as).
    make_user("root@example.org", superuser=True)
    dump = configdump(parse_file(str(path)), ENV)
    if path.name in NOT_IMPORTABLE or _needs_superuser(dump, "example.org"):
        with pytest.raises(CommandError, match="nothing was imported"):
            _run("import_fetchmailrc", str(path), domain="example.org")
        assert not Mailbox.objects.exists()
        return
    _round_trip(
        path,
        {"domain": "example.org"},
        {"domain": "example.org", "as_email": "root@example.org"},
    )


# --- the export command itself ---------------------------------------------------


def _export(**options: Any) -> str:
    return _run("export_fetchmailrc", **options)[0]


class ExportTests:
    def test_mailboxes_with_the_same_server_share_one_entry(self) -> None:
        owner = make_user("bob@example.org")
        for name in ("u1", "u2"):
            make_mailbox(owner, host="imap.example.net", username=name, password="pw")
        make_mailbox(owner, host="pop.example.net", protocol="pop3", username="u3")
        make_mailbox(owner, host="imap.example.net", username="u4", enabled=False)

        config = parse_text(_export(owner="bob@example.org"), "/tmp/rc")

        entries = [
            (s.options.pollname, s.options.skip, [u.remote for u in s.users])
            for s in config.servers
        ]
        assert entries == [
            ("imap.example.net", False, ["u1", "u2"]),
            ("pop.example.net", False, ["u3"]),
            ("imap.example.net", True, ["u4"]),
        ]

    def test_passwords_are_left_out_unless_a_superuser_asks(self) -> None:
        owner = make_user("bob@example.org")
        mailbox = make_mailbox(owner, password="s3cret-pw")
        mailbox.set_esmtp_password("esmtp-s3cret")
        mailbox.save()
        make_user("root@example.org", superuser=True)

        plain = _export(owner="bob@example.org")
        with pytest.raises(CommandError, match="Only a superuser may export passwords"):
            _export(owner="bob@example.org", with_passwords=True)
        full = _export(
            owner="bob@example.org", with_passwords=True, as_email="root@example.org"
        )

        assert "s3cret" not in plain
        # A placeholder comment where the password would be; fetchmail skips it.
        assert [line.strip() for line in plain.splitlines() if "password" in line] == [
            PASSWORD_PLACEHOLDER
        ]
        assert parse_text(plain, "/tmp/rc").servers[0].users[0].password is None
        user = parse_text(full, "/tmp/rc").servers[0]
        assert user.users[0].password == "s3cret-pw"
        assert user.options.esmtppassword == "esmtp-s3cret"

    def test_one_user_may_not_export_another_users_mailboxes(self) -> None:
        make_mailbox(make_user("bob@example.org"))
        make_user("eve@example.org")
        with pytest.raises(CommandError, match="may not manage the mailboxes of bob"):
            _export(owner="bob@example.org", as_email="eve@example.org")

    def test_a_domain_export_takes_the_domains_mailboxes_only(self) -> None:
        admin = make_user("admin@example.org")
        domain = make_domain("example.org", admins=(admin,))
        member = make_user("carol@example.org", domain=domain)
        make_mailbox(member, domain=domain, username="in-domain")
        make_mailbox(member, username="her-own")
        make_mailbox(make_user("eve@example.net"), username="elsewhere")

        text = _export(domain="example.org")

        users = [u.remote for s in parse_text(text, "/tmp/rc").servers for u in s.users]
        assert users == ["in-domain"]
        make_user("eve@example.com")
        with pytest.raises(CommandError, match=r"not an administrator of example\.org"):
            _export(domain="example.org", as_email="eve@example.com")

    def test_different_intervals_become_daemon_and_interval(self) -> None:
        owner = make_user("bob@example.org")
        make_mailbox(owner, host="a.example.net", poll_interval=300)
        make_mailbox(owner, host="b.example.net", poll_interval=900)

        out, err = _run("export_fetchmailrc", owner="bob@example.org")

        config = parse_text(out, "/tmp/rc")
        assert config.globals.daemon == 300
        assert [s.options.interval for s in config.servers] == [None, 3]
        assert "different intervals" in err

    def test_mechanisms_fetchmail_cannot_name_are_written_as_the_closest(self) -> None:
        owner = make_user("bob@example.org")
        make_mailbox(owner, host="a.example.net", auth="plain")
        make_mailbox(owner, host="b.example.net", auth="xoauth2")
        make_mailbox(owner, host="c.example.net", protocol="pop3", auth="apop")

        out, err = _run("export_fetchmailrc", owner="bob@example.org")

        servers = parse_text(out, "/tmp/rc").servers
        assert [(s.options.protocol, s.options.auth) for s in servers] == [
            ("imap", "password"),
            ("imap", None),
            ("apop", None),
        ]
        assert "no 'auth plain'" in err and "no 'auth xoauth2'" in err

    def test_the_output_file_is_private_and_replaced_in_one_step(
        self, tmp_path: Path
    ) -> None:
        owner = make_user("root@example.org", superuser=True)
        make_mailbox(owner, password="pw")
        target = tmp_path / "fetchmailrc"
        target.write_text("old contents\n")
        target.chmod(0o644)

        _run(
            "export_fetchmailrc",
            owner="root@example.org",
            with_passwords=True,
            output=str(target),
        )

        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert parse_file(str(target)).servers[0].users[0].password == "pw"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["fetchmailrc"]

    def test_a_mailbox_delivered_into_imap_is_named_and_left_out(
        self, tmp_path: Path, settings: Any
    ) -> None:
        settings.FETCH_ALLOW_PRIVATE_HOSTS = True  # no DNS for the example names
        owner = make_user("bob@example.org")
        make_mailbox(owner, host="a.example.net", username="plain", password="pw")
        into = make_mailbox(
            owner,
            host="b.example.net",
            username="to-gmail",
            password="pw",
            delivery_kind=Mailbox.DeliveryKind.IMAP,
            destination_host="imap.gmail.com",
            destination_username="bob@gmail.com",
            destination_folder="Archive",
        )
        before = Mailbox.objects.values().get(pk=into.pk)

        target = tmp_path / "bob.rc"
        _, err = _run("export_fetchmailrc", owner="bob@example.org", output=str(target))

        text = target.read_text()
        servers = parse_file(str(target)).servers
        # fetchmail would deliver an entry without smtphost/mda to localhost's
        # SMTP listener: no entry at all, and the reason at the top of the file.
        assert [u.remote for s in servers for u in s.users] == ["plain"]
        why = (
            f'mailbox {into.pk} ("to-gmail" at "b.example.net") delivers into the '
            'IMAP mailbox "bob@gmail.com" at "imap.gmail.com", folder "Archive": '
            "fetchmail cannot deliver into an IMAP mailbox"
        )
        assert text.startswith(f"# not exported: {why}")
        assert f"note: not exported: {why}" in err
        assert "1 mailbox(es) written" in err

        # Imported back: the other mailbox is updated, this one left as it was.
        out, _ = _run(
            "import_fetchmailrc", str(target), owner="bob@example.org", netrc="/none"
        )
        assert "0 created, 1 updated" in out
        assert Mailbox.objects.count() == 2
        assert Mailbox.objects.values().get(pk=into.pk) == before
