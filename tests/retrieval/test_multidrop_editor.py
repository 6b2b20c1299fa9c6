"""The multidrop editor (issue 13 item 4): envelope header, local domains, aka,
qvirtual, the domain added to names, postmaster and the name mappings of a
whole-domain mailbox, checked by the same function as the rcfile importer's."""

from __future__ import annotations

import io

import pytest
from django import forms
from django.core.management import CommandError, call_command
from django.urls import reverse

from retrieval import rcmap, services
from retrieval.models import Mailbox
from tests.retrieval.test_views import _as, _quick_settings, trio

__all__ = ["_quick_settings", "trio"]

pytestmark = pytest.mark.django_db

EMPTY = {
    "envelope": "",
    "localdomains": "",
    "aka": "",
    "qvirtual": "",
    "smtpaddress": "",
    "postmaster": "",
    "rules": "",
}


def _url(trio) -> str:
    return reverse("retrieval:mailbox-rules", args=[trio.mailbox.pk])


def _post(client, trio, who, **values):
    return _as(client, getattr(trio, who)).post(_url(trio), {**EMPTY, **values})


def _saved(trio) -> services.Multidrop:
    return services.multidrop_of(mailbox=Mailbox.objects.get(pk=trio.mailbox.pk))


def _field_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.status_code
    return {k: list(v) for k, v in response.context["form"].errors.items()}


def _as_posted(form) -> dict[str, str]:
    """What a browser posts back of the form as shown."""
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"
        else:
            data[name] = field.prepare_value(value) or ""
    return data


# --- who may ---------------------------------------------------------------------------


def test_the_owner_who_is_a_plain_user_may_not_open_it(client, trio):
    assert _as(client, trio.alice).get(_url(trio)).status_code == 403
    assert _post(client, trio, "alice", envelope="Delivered-To").status_code == 403
    assert _saved(trio) == services.Multidrop()


def test_a_person_of_another_tenant_does_not_see_it(client, trio):
    assert _as(client, trio.charlie).get(_url(trio)).status_code == 404


@pytest.mark.parametrize("who", ["bob", "root"])
def test_a_domain_administrator_and_a_superuser_edit_it(client, trio, who):
    page = _as(client, getattr(trio, who)).get(_url(trio)).content.decode()
    for name in EMPTY:
        assert f'name="{name}"' in page
    assert '<datalist id="envelope-names">' in page and "X-Original-To" in page
    response = _post(
        client,
        trio,
        who,
        envelope="Delivered-To",
        localdomains="example.org",
        aka="mx.example.org\nexample.org",
        qvirtual="catchall+",
        smtpaddress="example.org",
        postmaster="postmaster",
        rules="jdoe -> joe\njane\n*",
    )
    assert response.status_code == 302, _field_errors(response)
    assert _saved(trio) == services.Multidrop(
        envelope="Delivered-To",
        localdomains=("example.org",),
        aka=("mx.example.org", "example.org"),
        qvirtual="catchall+",
        smtpaddress="example.org",
        postmaster="postmaster",
        rules=(("jdoe", "joe"), ("jane", ""), ("*", "")),
    )


# --- each field, there and back ------------------------------------------------------

ROUND_TRIPS = [
    ("envelope", "X-Original-To", "X-Original-To"),
    ("no_envelope", "on", True),
    (
        "localdomains",
        "example.org\nsub.example.org",
        ("example.org", "sub.example.org"),
    ),
    ("aka", "mx1.example.org, mx2.example.org", ("mx1.example.org", "mx2.example.org")),
    ("qvirtual", "client-", "client-"),
    ("smtpaddress", "example.org", "example.org"),
    ("smtpaddress", "[192.0.2.7]", "[192.0.2.7]"),
    ("postmaster", "hostmaster@example.org", "hostmaster@example.org"),
    (
        "rules",
        "j.doe -> joe\nkim@example.org\n*",
        (("j.doe", "joe"), ("kim@example.org", ""), ("*", "")),
    ),
]


@pytest.mark.parametrize(("field", "typed", "stored"), ROUND_TRIPS)
def test_each_field_round_trips(client, trio, field, typed, stored):
    response = _post(client, trio, "root", **{field: typed})
    assert response.status_code == 302, _field_errors(response)
    saved = _saved(trio)
    assert getattr(saved, field) == stored
    # Shown back as stored, and saved again unchanged.
    shown = _as_posted(client.get(_url(trio)).context["form"])
    again = client.post(_url(trio), shown)
    assert again.status_code == 302, _field_errors(again)
    assert _saved(trio) == saved


def test_the_settings_reach_the_poll_and_the_export(client, trio):
    response = _post(
        client,
        trio,
        "bob",
        envelope="Delivered-To",
        localdomains="example.org",
        aka="example.org",
        qvirtual="catchall+",
        smtpaddress="example.org",
        postmaster="postmaster",
        rules="anna\nbert -> bob\n*",
    )
    assert response.status_code == 302, _field_errors(response)
    mailbox = Mailbox.objects.get(pk=trio.mailbox.pk)
    spec = services.mailbox_spec(mailbox)
    assert spec.multidrop is not None
    assert spec.multidrop.envelope == "Delivered-To"
    assert spec.multidrop.localdomains == ("example.org",)
    assert spec.multidrop.aka == ("example.org",)
    assert spec.multidrop.qvirtual == "catchall+"
    assert spec.multidrop.names == (("anna", "anna"), ("bert", "bob"))
    assert spec.multidrop.wildcard
    assert spec.delivery.postmaster == "postmaster"
    assert spec.delivery.smtpaddress == "example.org"
    _, s, u = rcmap.mailbox_to_rc(mailbox)
    assert (s.envelope, s.localdomains, s.aka, s.qvirtual) == (
        "Delivered-To",
        ["example.org"],
        ["example.org"],
        "catchall+",
    )
    assert u.smtpaddress == "example.org" and u.wildcard
    out = io.StringIO()
    call_command("export_fetchmailrc", owner=trio.alice.email, stdout=out)
    text = out.getvalue()
    for said in ("envelope", "Delivered-To", "localdomains", "qvirtual", "postmaster"):
        assert said in text


def test_no_envelope_reaches_the_poll(client, trio):
    response = _post(
        client, trio, "bob", no_envelope="on", envelope="X-Ignored", rules="a\nb"
    )
    assert response.status_code == 302, _field_errors(response)
    mailbox = Mailbox.objects.get(pk=trio.mailbox.pk)
    assert services.multidrop_of(mailbox=mailbox).envelope == ""
    spec = services.mailbox_spec(mailbox)
    assert spec.multidrop is not None and spec.multidrop.envelope is None


def test_emptied_settings_leave_nothing_behind(client, trio):
    _post(client, trio, "bob", envelope="Delivered-To", aka="example.org", rules="a")
    response = _post(client, trio, "bob")
    assert response.status_code == 302
    mailbox = Mailbox.objects.get(pk=trio.mailbox.pk)
    assert mailbox.options.get("server", {}) == {}
    assert not mailbox.rules.exists()


# --- the same words as the importer ---------------------------------------------------

BAD = [
    # (field, typed in the editor, the rcfile saying the same, the words)
    (
        "envelope",
        "X Original",
        'poll mx.example.net envelope "X Original" user c pass x is a b here\n',
        "“X Original” is not a header name: write it as it appears before the "
        "colon, such as Delivered-To or X-Original-To.",
    ),
    (
        "localdomains",
        "exa_mple!.org",
        'poll mx.example.net localdomains "exa_mple!.org" user c pass x is a b here\n',
        "“exa_mple!.org” is not a domain name: write one such as example.org.",
    ),
    (
        "aka",
        "-bad-.example.org",
        'poll mx.example.net aka "-bad-.example.org" user c pass x is a b here\n',
        "“-bad-.example.org” is not a domain name: write one such as example.org.",
    ),
    (
        "aka",
        "mx.example.org\nMX.example.org",
        "poll mx.example.net aka mx.example.org MX.example.org user c pass x is a b here\n",
        "MX.example.org is listed twice.",
    ),
    (
        "qvirtual",
        "catch all@",
        'poll mx.example.net qvirtual "catch all@" user c pass x is a b here\n',
        "“catch all@” cannot be a prefix: use letters, digits and + - . _ (no "
        "spaces, no @), at most 64 characters.",
    ),
    (
        "postmaster",
        "post master",
        'set postmaster "post master"\npoll mx.example.net user c pass x is a b here\n',
        "“post master” is not a mail name: use letters, digits and . _ - (or a "
        "whole address).",
    ),
    (
        "smtpaddress",
        "example..org",
        'poll mx.example.net user c pass x is a b here smtpaddress "example..org"\n',
        "“example..org” is not a domain name: write one such as example.org.",
    ),
    (
        "rules",
        "a b",
        'poll mx.example.net user c pass x is "a b" c here\n',
        "“a b” is not a mail name: use letters, digits and . _ - (or a whole address).",
    ),
]


@pytest.mark.parametrize(("field", "typed", "rcfile", "words"), BAD)
def test_the_editor_and_the_importer_refuse_alike(
    client, trio, tmp_path, field, typed, rcfile, words
):
    response = _post(client, trio, "root", **{field: typed})
    errors = _field_errors(response)[field]
    assert any(words in e for e in errors), errors
    path = tmp_path / "fetchmailrc"
    path.write_text(rcfile)
    with pytest.raises(CommandError) as refused:
        call_command(
            "import_fetchmailrc", str(path), owner=trio.root.email, stdout=io.StringIO()
        )
    assert words in str(refused.value), str(refused.value)
    assert not Mailbox.objects.filter(host="mx.example.net").exists()


def test_a_good_rcfile_with_every_setting_imports(trio, tmp_path):
    path = tmp_path / "fetchmailrc"
    path.write_text(
        'set postmaster "postmaster"\n'
        "poll mx.example.net proto imap envelope Delivered-To qvirtual catchall+\n"
        "  localdomains example.org aka example.org\n"
        "  user c pass x is anna bert=bob * here smtpaddress example.org\n"
    )
    call_command(
        "import_fetchmailrc", str(path), owner=trio.root.email, stdout=io.StringIO()
    )
    mailbox = Mailbox.objects.get(host="mx.example.net")
    assert services.multidrop_of(mailbox=mailbox) == services.Multidrop(
        envelope="Delivered-To",
        localdomains=("example.org",),
        aka=("example.org",),
        qvirtual="catchall+",
        postmaster="postmaster",
        smtpaddress="example.org",
        rules=(("anna", ""), ("bert", "bob"), ("*", "")),
    )


# --- a domain administrator stays in the domain -----------------------------------------


@pytest.mark.parametrize(
    ("field", "typed", "words"),
    [
        (
            "localdomains",
            "other.example",
            "other.example is not this mailbox's domain (example.org): only a "
            "superuser may deliver to other domains.",
        ),
        (
            "smtpaddress",
            "other.example",
            "other.example is not this mailbox's domain (example.org): only a "
            "superuser may deliver to other domains.",
        ),
        ("postmaster", "victim@external.example", "is outside this mailbox's domain"),
    ],
)
def test_a_domain_administrator_may_not_send_mail_out_of_the_domain(
    client, trio, field, typed, words
):
    errors = _field_errors(_post(client, trio, "bob", **{field: typed}))[field]
    assert any(words in e for e in errors), errors
    assert _saved(trio) == services.Multidrop()
    # A superuser may.
    response = _post(client, trio, "root", **{field: typed})
    if field == "postmaster":  # but never out of the installation
        assert words in " ".join(_field_errors(response)[field])
    else:
        assert response.status_code == 302


# --- Django's admin --------------------------------------------------------------------


def test_the_admin_refuses_the_same_values_in_the_options_json(client, trio):
    url = reverse("admin:retrieval_mailbox_change", args=[trio.mailbox.pk])
    page = _as(client, trio.root).get(url)
    form = page.context["adminform"].form
    data = {
        name: form[name].value() if form[name].value() is not None else ""
        for name in form.fields
        if name not in ("new_password", "clear_password")
    }
    data = {k: v for k, v in data.items() if v is not False}
    data.update(
        {
            "owner": str(trio.alice.pk),
            "domain": str(trio.domain.pk),
            "folders": "[]",
            "options": '{"server": {"envelope": "X Original"}}',
            "rules-TOTAL_FORMS": "0",
            "rules-INITIAL_FORMS": "0",
        }
    )
    for flag in ("enabled", "verify_tls"):
        data[flag] = "on"
    response = client.post(url, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["options"]
    assert errors == [
        "envelope: “X Original” is not a header name: write it as it appears "
        "before the colon, such as Delivered-To or X-Original-To."
    ]


def test_a_staff_domain_administrator_has_no_admin(client, trio):
    trio.bob.is_staff = True
    trio.bob.save()
    url = reverse("admin:retrieval_mailbox_change", args=[trio.mailbox.pk])
    response = _as(client, trio.bob).get(url)
    assert response.status_code == 302 and "/login/" in response["Location"]
