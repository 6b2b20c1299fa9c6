"""Import and export of a .fetchmailrc in the browser (issue 13 item 5): each role,
the preview (options stored, refusals with FILE:LINE, parse errors), the confirm
(one transaction, not forgeable), the domain from the owner, updates, and the
export read back by our importer and by the real fetchmail."""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING, Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from retrieval import services
from retrieval.models import Mailbox, SeenMessage
from retrieval.rcfile import parse_text
from retrieval.rcfile.export import PASSWORD_PLACEHOLDER
from retrieval.rcfile.parser import MAX_INPUT_BYTES
from tests.factories import make_domain, make_mailbox, make_user
from tests.rcfile.oracle import Oracle, have_fetchmail
from tests.retrieval.test_rcfile_export import fast_passwords

if TYPE_CHECKING:
    from pathlib import Path

    from django.test import Client

    from accounts.models import User

pytestmark = pytest.mark.django_db
__all__ = ["fast_passwords"]  # the autouse fixture, shared

PUBLIC = "1.1.1.1"  # a public address literal: the network policy passes it without DNS
IMPORT = reverse("retrieval:rcfile-import")
CONFIRM = reverse("retrieval:rcfile-import-confirm")
GOOD = f'poll {PUBLIC} proto imap user "alice-remote" there password "Pw-1" ssl keep\n'
WITH_MDA = (
    f'poll {PUBLIC} proto pop3 user "second" there password "Pw-2"\n'
    '    mda "/usr/bin/procmail -d %T"\n'
)


@pytest.fixture
def people() -> dict[str, User]:
    one = make_domain("one.example")
    two = make_domain("two.example")
    alice = make_user("alice@one.example", domain=one)
    admin = make_user("admin@one.example", domain=one)
    one.admins.add(admin)
    bob = make_user("bob@two.example", domain=two)
    root = make_user("root@operator.example", superuser=True)
    return {"alice": alice, "admin": admin, "bob": bob, "root": root}


def _as(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


def _preview(client: Client, text: str, **extra: Any) -> Any:
    response = client.post(IMPORT, {"text": text, **extra})
    assert response.status_code == 200
    return response


def _token(response: Any) -> str:
    found = re.search(r'name="token" value="([^"]+)"', response.content.decode())
    assert found, "the preview offers no confirm"
    return found.group(1)


def _confirm(client: Client, preview: Any) -> Any:
    return client.post(CONFIRM, {"token": _token(preview)})


def _text(response: Any) -> str:
    """The page's words, without tags."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", response.content.decode()))


# --- each role --------------------------------------------------------------------


def test_a_user_imports_for_themselves_with_the_domain_of_their_account(
    client: Client, people: dict[str, User]
) -> None:
    alice = people["alice"]
    preview = _preview(_as(client, alice), GOOD, owner=str(people["bob"].pk))
    page = _text(preview)
    assert "pasted .fetchmailrc:1: create a mailbox" in page
    assert (
        "options stored: proto imap, user &quot;alice-remote&quot;, keep, ssl" in page
    )
    assert "password: from the file (hidden)" in page
    assert "Pw-1" not in preview.content.decode(), "the password came back"
    assert "owner" not in preview.context["form"].fields, "a user chooses no one"
    assert not Mailbox.objects.exists(), "a preview saves nothing"

    response = _confirm(client, preview)
    assert response.status_code == 302
    assert response["Location"] == reverse("retrieval:mailbox-list")
    mailbox = Mailbox.objects.get()
    # The posted owner was bob: a user imports for themselves only.
    assert mailbox.owner == alice
    assert mailbox.domain == alice.domain
    assert (mailbox.host, mailbox.username, mailbox.keep) == (
        PUBLIC,
        "alice-remote",
        True,
    )
    assert mailbox.get_password() == "Pw-1"


def test_a_refused_option_is_listed_with_file_and_line_and_its_entry_left_out(
    client: Client, people: dict[str, User]
) -> None:
    preview = _preview(_as(client, people["alice"]), "# mine\n" + GOOD + WITH_MDA)
    page = _text(preview)
    assert "Refused, not imported (1)" in page
    assert (
        'pasted .fetchmailrc:3: mda "/usr/bin/procmail -d %T": runs a command on '
        "this server; only a superuser may import it"
    ) in page.replace("&quot;", '"')
    assert "Import 1 mailbox(es)" in page

    _confirm(client, preview)
    assert list(Mailbox.objects.values_list("username", flat=True)) == ["alice-remote"]


def test_the_command_and_the_pages_refuse_the_same_lines_of_one_file(
    client: Client, people: dict[str, User], settings: Any, tmp_path: Path
) -> None:
    """One code path (services.rcfile_import): the same refusals, FILE:LINE, from
    the checks (line 2) and from a save (the quota, line 4). The command's
    contract refuses the whole file; the pages leave the refused entries out."""
    settings.FETCH_MAX_MAILBOXES_PER_USER = 1
    alice = people["alice"]
    text = GOOD + WITH_MDA + GOOD.replace("alice-remote", "third")
    path = tmp_path / "alice.rc"
    path.write_text(text)
    with pytest.raises(CommandError) as refused:
        call_command(
            "import_fetchmailrc",
            str(path),
            owner=alice.email,
            netrc="/nonexistent",
            stdout=io.StringIO(),
        )
    *by_command, verdict = str(refused.value).splitlines()
    assert verdict == "Import refused: nothing was imported (2 problem(s))."
    assert not Mailbox.objects.exists()
    assert [line.replace(f"{path}:", "", 1) for line in by_command] == [
        '2: mda "/usr/bin/procmail -d %T": runs a command on this server; only a '
        "superuser may import it",
        "4: You have 1 mailbox, the most one person may have here. Delete one "
        "first, or ask an administrator to raise the limit.",
    ]

    upload = SimpleUploadedFile("alice.rc", text.encode())
    preview = _as(client, alice).post(IMPORT, {"rcfile": upload})
    by_page = preview.context["plan"].problems
    assert by_page == [line.replace(str(path), "alice.rc", 1) for line in by_command]
    page = _text(preview).replace("&quot;", '"')
    assert all(line in page for line in by_page) and "Import 1 mailbox(es)" in page
    _confirm(client, preview)
    assert list(Mailbox.objects.values_list("username", flat=True)) == ["alice-remote"]


def test_a_quota_refusal_is_listed_in_file_order(
    client: Client, people: dict[str, User], settings: Any, tmp_path: Path
) -> None:
    """The quota refuses line 2 when it is saved, after the checks refused line
    3: the command, the API and the pages still list line 2 first (a reader
    fixes a file from the top down)."""
    settings.FETCH_MAX_MAILBOXES_PER_USER = 1
    alice = people["alice"]
    text = GOOD + GOOD.replace("alice-remote", "second-ok") + WITH_MDA
    path = tmp_path / "alice.rc"
    path.write_text(text)
    expected = [
        "2: You have 1 mailbox, the most one person may have here. Delete one "
        "first, or ask an administrator to raise the limit.",
        '3: mda "/usr/bin/procmail -d %T": runs a command on this server; only a '
        "superuser may import it",
    ]
    with pytest.raises(CommandError) as refused:
        call_command(
            "import_fetchmailrc",
            str(path),
            owner=alice.email,
            netrc="/nonexistent",
            stdout=io.StringIO(),
        )
    *by_command, _ = str(refused.value).splitlines()
    assert [line.replace(f"{path}:", "", 1) for line in by_command] == expected

    api = _as(client, alice).post(
        reverse("api:rcfile-import"), text, content_type="text/plain"
    )
    assert api.status_code == 400
    by_api = api.json()["fields"]["rcfile"][:-1]
    assert by_api == [f"fetchmailrc:{line}" for line in expected]

    upload = SimpleUploadedFile("alice.rc", text.encode())
    preview = client.post(IMPORT, {"rcfile": upload})
    assert preview.context["plan"].problems == [f"alice.rc:{x}" for x in expected]
    page = _text(preview).replace("&quot;", '"')
    assert page.index(expected[0]) < page.index(expected[1])
    assert not Mailbox.objects.exists()


def test_a_superuser_may_import_a_command_for_themselves(
    client: Client, people: dict[str, User]
) -> None:
    root = people["root"]
    preview = _preview(_as(client, root), WITH_MDA)
    assert 'options stored: proto pop3, user "second", mda' in _text(preview).replace(
        "&quot;", '"'
    )
    _confirm(client, preview)
    mailbox = Mailbox.objects.get()
    assert mailbox.owner == root and mailbox.delivery_kind == Mailbox.DeliveryKind.MDA


def test_a_superuser_importing_a_command_for_a_user_is_warned(
    client: Client, people: dict[str, User]
) -> None:
    preview = _preview(
        _as(client, people["root"]), WITH_MDA, owner=str(people["bob"].pk)
    )
    assert (
        "warning: mda will not run while the owner, bob@two.example, is not a "
        "superuser: polls refuse it"
    ) in _text(preview)
    _confirm(client, preview)
    assert Mailbox.objects.get().domain == people["bob"].domain


def test_a_domain_administrator_imports_for_a_user_of_their_domain_only(
    client: Client, people: dict[str, User]
) -> None:
    admin, alice, bob = people["admin"], people["alice"], people["bob"]
    form = _as(client, admin).get(IMPORT).context["form"]
    assert set(form.fields["owner"].queryset) == {admin, alice}

    refused = _preview(client, GOOD, owner=str(bob.pk))
    assert "Select a valid choice" in _text(refused)
    assert 'name="token"' not in refused.content.decode()

    preview = _preview(client, GOOD, owner=str(alice.pk))
    assert "for alice@one.example" in _text(preview)
    # Delivering to someone else is the importer's refusal here too.
    other = _preview(client, GOOD.replace("keep", "is bob here"), owner=str(alice.pk))
    assert 'delivers to "bob", other than alice@one.example' in _text(other).replace(
        "&quot;", '"'
    )
    assert 'name="token"' not in other.content.decode(), "nothing to confirm"
    # The second preview replaced the first: its confirm is stale.
    response = _confirm(client, preview)
    assert response["Location"] == IMPORT
    assert not Mailbox.objects.exists()

    _confirm(client, _preview(client, GOOD, owner=str(alice.pk)))
    mailbox = Mailbox.objects.get()
    assert (mailbox.owner, mailbox.domain) == (alice, alice.domain)


def test_the_confirm_checks_the_rights_again(
    client: Client, people: dict[str, User]
) -> None:
    admin, alice = people["admin"], people["alice"]
    preview = _preview(_as(client, admin), GOOD, owner=str(alice.pk))
    assert alice.domain is not None
    alice.domain.admins.remove(admin)
    response = _confirm(client, preview)
    assert "Nothing was imported: You may not import mailboxes for alice" in _text(
        response
    )
    assert not Mailbox.objects.exists()


def test_a_forged_or_replayed_confirm_imports_nothing(
    client: Client, people: dict[str, User]
) -> None:
    preview = _preview(_as(client, people["alice"]), GOOD)
    # The preview's data is not posted back: only its token counts.
    forged = client.post(CONFIRM, {"token": "x" * 22, "text": WITH_MDA})
    assert forged["Location"] == IMPORT
    assert not Mailbox.objects.exists()
    _confirm(client, preview)
    assert Mailbox.objects.count() == 1
    assert _confirm(client, preview)["Location"] == IMPORT  # used up
    assert Mailbox.objects.count() == 1


def test_a_change_since_the_preview_is_shown_again_not_applied(
    client: Client, people: dict[str, User]
) -> None:
    alice = people["alice"]
    preview = _preview(_as(client, alice), GOOD)
    existing = make_mailbox(alice, host=PUBLIC, username="alice-remote")
    response = _confirm(client, preview)
    page = _text(response)
    assert "the mailboxes changed since the preview" in page
    assert f"update mailbox {existing.pk}" in page
    assert Mailbox.objects.count() == 1 and not Mailbox.objects.get().keep
    _confirm(client, response)
    assert Mailbox.objects.get().keep


# --- parse errors, sizes, files ----------------------------------------------------------


def test_a_parse_error_names_file_line_and_problem_and_offers_no_confirm(
    client: Client, people: dict[str, User]
) -> None:
    response = _preview(_as(client, people["alice"]), GOOD + "poll\n  proto imap\n")
    page = _text(response)
    assert "The file cannot be read, nothing was imported." in page
    assert "In pasted .fetchmailrc, line 3" in page
    assert 'name="token"' not in response.content.decode()
    assert not Mailbox.objects.exists()


def test_an_uploaded_file_is_named_by_its_own_name(
    client: Client, people: dict[str, User]
) -> None:
    upload = SimpleUploadedFile("../../etc/my.fetchmailrc", (GOOD + WITH_MDA).encode())
    response = _as(client, people["alice"]).post(IMPORT, {"rcfile": upload})
    assert "my.fetchmailrc:2: mda" in _text(response)
    assert "etc/" not in _text(response)


def test_a_file_over_one_mebibyte_is_refused_in_words(
    client: Client, people: dict[str, User]
) -> None:
    data = (GOOD + "#" * MAX_INPUT_BYTES).encode()
    upload = SimpleUploadedFile("big.rc", data)
    response = _as(client, people["alice"]).post(IMPORT, {"rcfile": upload})
    assert (
        f"This file is {len(data):,} bytes; a .fetchmailrc may be at most "
        f"{MAX_INPUT_BYTES:,} bytes (1 MiB). Nothing was read."
    ) in _text(response)
    assert not Mailbox.objects.exists()


def test_a_private_server_is_refused_unless_the_owner_is_a_superuser(
    client: Client, people: dict[str, User]
) -> None:
    text = GOOD.replace(PUBLIC, "127.0.0.1")
    page = _text(_preview(_as(client, people["alice"]), text))
    assert (
        'pasted .fetchmailrc:1: server "127.0.0.1" port 993: This server address '
        "is not allowed"
    ) in page.replace("&quot;", '"')
    assert "There is nothing to import." in page
    assert "Import 1" in _text(_preview(_as(client, people["root"]), text))


# --- one transaction --------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["quota", "crash"])
def test_a_failure_half_way_rolls_everything_back(
    client: Client,
    people: dict[str, User],
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    alice = people["alice"]
    existing = make_mailbox(alice, host=PUBLIC, username="alice-remote", keep=False)
    text = GOOD + GOOD.replace("alice-remote", "other") + WITH_MDA.replace("mda", "#")
    preview = _preview(_as(client, alice), text)
    assert "Import 3 mailbox(es)" in _text(preview)
    real = services.imports.mailbox_import
    seen: list[str] = []

    def failing(**kwargs: Any) -> Any:
        seen.append(kwargs["mailbox"].username)
        if len(seen) == 3:
            if failure == "quota":
                raise services.QuotaExceeded("You have reached your mailbox quota.")
            raise RuntimeError("the database went away")
        return real(**kwargs)

    monkeypatch.setattr(services.imports, "mailbox_import", failing)
    client.raise_request_exception = False
    response = _confirm(client, preview)
    assert seen == ["alice-remote", "other", "second"]
    if failure == "quota":
        # A refusal the preview did not show: shown now, nothing applied.
        page = _text(response)
        assert "Nothing was imported: the mailboxes changed since the preview" in page
        assert "pasted .fetchmailrc:3: You have reached your mailbox quota." in page
    else:
        assert response.status_code == 500
    # The update of the first and the creation of the second are undone.
    assert list(Mailbox.objects.all()) == [existing]
    existing.refresh_from_db()
    assert not existing.keep


# --- updates ---------------------------------------------------------------------------


def test_an_import_updates_the_mailbox_of_the_same_account_keeping_its_ledger(
    client: Client, people: dict[str, User]
) -> None:
    alice = people["alice"]
    existing = make_mailbox(
        alice, host=PUBLIC, username="alice-remote", password="Stored-pw"
    )
    SeenMessage.objects.create(mailbox=existing, uid="u1")
    text = GOOD.replace(' password "Pw-1"', "")
    preview = _preview(_as(client, alice), text)
    page = _text(preview)
    assert f"update mailbox {existing.pk}" in page
    assert "password: none in the file; the stored one is kept" in page
    _confirm(client, preview)
    existing.refresh_from_db()
    assert existing.keep and existing.get_password() == "Stored-pw"
    assert SeenMessage.objects.filter(mailbox=existing).exists()


def test_another_server_in_the_file_is_a_new_mailbox_never_the_old_password(
    client: Client, people: dict[str, User]
) -> None:
    """Mailbox.save's rule on a change of account: an import never moves a
    stored password to another server. The file's entry for another host is
    another account: created, without the old password; the old row keeps its
    account, password and ledger."""
    alice = people["alice"]
    existing = make_mailbox(
        alice, name="work", host=PUBLIC, username="alice-remote", password="Old-pw"
    )
    SeenMessage.objects.create(mailbox=existing, uid="u1")
    text = 'poll work via "1.0.0.1" proto imap user "alice-remote" there\n'
    preview = _preview(_as(client, alice), text)
    page = _text(preview)
    assert "pasted .fetchmailrc:1: create a mailbox" in page
    assert "password: none" in page and "stored one is kept" not in page
    _confirm(client, preview)
    new = Mailbox.objects.exclude(pk=existing.pk).get()
    assert (new.host, new.has_password) == ("1.0.0.1", False)
    existing.refresh_from_db()
    assert (existing.host, existing.get_password()) == (PUBLIC, "Old-pw")
    assert SeenMessage.objects.filter(mailbox=existing).exists()


# --- export -------------------------------------------------------------------------------


def test_one_mailbox_exports_without_its_password_and_imports_back_unchanged(
    client: Client, people: dict[str, User]
) -> None:
    alice = people["alice"]
    _confirm(_as(client, alice), _preview(client, GOOD + WITH_MDA.replace("mda", "#")))
    first = Mailbox.objects.get(username="alice-remote")
    response = client.get(reverse("retrieval:mailbox-export", args=[first.pk]))
    assert response["Content-Disposition"] == (
        f'attachment; filename="fetchmailrc-{first.pk}"'
    )
    text = response.content.decode()
    assert "Pw-1" not in text and PASSWORD_PLACEHOLDER in text
    assert parse_text(text, "x").servers[0].users[0].remote == "alice-remote"

    everything = client.get(reverse("retrieval:rcfile-export")).content.decode()
    fields = [f.name for f in Mailbox._meta.concrete_fields if f.name != "updated_at"]
    before = list(Mailbox.objects.order_by("pk").values(*fields))
    preview = _preview(client, everything)
    page = _text(preview)
    assert "Refused" not in page and "create a mailbox" not in page
    assert page.count("password: none in the file; the stored one is kept") == 2
    _confirm(client, preview)
    assert list(Mailbox.objects.order_by("pk").values(*fields)) == before
    assert Mailbox.objects.get(pk=first.pk).get_password() == "Pw-1"


def test_a_mailbox_delivered_into_imap_is_named_in_the_download_not_written(
    client: Client, people: dict[str, User]
) -> None:
    alice = people["alice"]
    into = make_mailbox(
        alice,
        host=PUBLIC,
        username="to-imap",
        delivery_kind=Mailbox.DeliveryKind.IMAP,
        destination_host="imap.example.net",
        destination_username="alice@example.net",
    )
    text = (
        _as(client, alice)
        .get(reverse("retrieval:mailbox-export", args=[into.pk]))
        .content.decode()
    )
    assert text.startswith(f'# not exported: mailbox {into.pk} ("to-imap" at ')
    assert parse_text(text, "x").servers == []


def test_the_list_export_holds_what_the_person_may_see(
    client: Client, people: dict[str, User]
) -> None:
    for name in ("alice", "admin", "bob"):
        owner = people[name]
        make_mailbox(owner, host=f"imap.{name}.example", domain=owner.domain)
    url = reverse("retrieval:rcfile-export")

    def hosts(user: User) -> set[str]:
        text = _as(client, user).get(url).content.decode()
        return {s.options.via or s.options.pollname for s in parse_text(text).servers}

    assert hosts(people["alice"]) == {"imap.alice.example"}
    assert hosts(people["admin"]) == {"imap.alice.example", "imap.admin.example"}
    assert hosts(people["bob"]) == {"imap.bob.example"}
    assert len(hosts(people["root"])) == 3


@pytest.mark.skipif(not have_fetchmail(), reason="Debian's fetchmail is not installed")
def test_the_real_fetchmail_reads_the_export(
    client: Client, people: dict[str, User]
) -> None:
    text = GOOD.replace("keep", 'folder "INBOX" "Archive" fetchall') + WITH_MDA.replace(
        "mda", "#"
    )
    _confirm(_as(client, people["alice"]), _preview(client, text))
    exported = client.get(reverse("retrieval:rcfile-export")).content
    oracle = Oracle()
    try:
        result = oracle.run(exported)
    finally:
        oracle.close()
    assert result.accepted, result.stderr.decode()
    users = [u for s in result.parsed()["servers"] for u in s["users"]]
    assert {u["remote"] for u in users} == {"alice-remote", "second"}
