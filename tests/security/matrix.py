"""The authorization matrix of issue 11: what every URL must answer to every role.

The URL list is not written here: :func:`url_patterns` walks the resolver, Django's
admin included, so a new URL without an entry in :data:`EXPECT` fails
``test_every_url_has_an_expectation``. What *is* written here, by hand, is the
expected answer: per URL, role, object owner and method. Nothing is derived from
the code under test.

Vocabulary:

- a *role* is who asks (``anonymous`` … ``root``, see :data:`ROLES`);
- an *owner* is whose object the URL points at (``alice``, ``peer``, ``bob``,
  ``root`` for mailboxes and everything hanging off them; ``dom1``/``dom2`` for
  domains; ``site`` for site-wide rows such as groups);
- a *level* is what the role may do with that owner's mailboxes
  (:data:`ACCESS`, the tenancy rule of DESIGN.md written out as a table).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.urls import URLPattern, URLResolver, get_resolver

if TYPE_CHECKING:
    from collections.abc import Iterator

# --- the people -------------------------------------------------------------------

ROLES = (
    "anonymous",
    "alice",  # user, domain 1
    "peer",  # user, domain 1: alice's same-domain neighbour
    "bob",  # user, domain 2
    "admin1",  # domain administrator of domain 1
    "admin2",  # domain administrator of domain 2
    "staff1",  # domain administrator of domain 1 with is_staff (not superuser)
    "root",  # superuser
)

# Mailbox owners; every mailbox has one run (with a message result), one
# multidrop rule and one seen message.
OWNERS = ("alice", "peer", "bob", "root")

NONE, READ, OWN, ADMIN = "none", "read", "own", "admin"
"""NONE: the mailbox does not exist for them (404). READ: may look, not change
(a superuser's mailbox seen by a domain administrator). OWN: may change it, not
its multidrop rules. ADMIN: may change it and its multidrop rules."""

ACCESS: dict[str, dict[str, str]] = {
    "anonymous": {},
    "alice": {"alice": OWN},
    "peer": {"peer": OWN},
    "bob": {"bob": OWN},
    "admin1": {"alice": ADMIN, "peer": ADMIN, "root": READ},
    "admin2": {"bob": ADMIN},
    "staff1": {"alice": ADMIN, "peer": ADMIN, "root": READ},
    "root": {owner: ADMIN for owner in OWNERS},
}

# Which domains' names a role may see (its own domain or the ones it administers).
DOMAINS_SEEN: dict[str, set[str]] = {
    "anonymous": set(),
    "alice": {"dom1"},
    "peer": {"dom1"},
    "bob": {"dom2"},
    "admin1": {"dom1"},
    "admin2": {"dom2"},
    "staff1": {"dom1"},
    "root": {"dom1", "dom2"},
}

DOMAIN_NAMES = {"dom1": "tenant-one.example", "dom2": "tenant-two.example"}
EMAILS = {
    "alice": "alice@tenant-one.example",
    "peer": "peer@tenant-one.example",
    "bob": "bob@tenant-two.example",
    "admin1": "admin1@tenant-one.example",
    "admin2": "admin2@tenant-two.example",
    "staff1": "staff1@tenant-one.example",
    "root": "root@operator.example",
}


def level(role: str, owner: str) -> str:
    return ACCESS[role].get(owner, NONE)


def markers(owner: str) -> tuple[str, ...]:
    """Strings that only ``owner``'s objects contain: seeing one of them in a
    response proves the response is about that owner's data. Plain letters,
    digits and dashes so that HTML escaping cannot hide them."""
    return (
        f"MBNAME-{owner}",
        f"imap.{owner}-secret.example",
        f"remote-{owner}-secret",
        f"GREETING-SECRET-{owner}",
        f"TRANSCRIPT-SECRET-{owner}",
        f"ERROR-SECRET-{owner}",
        f"REPLY-SECRET-{owner}",
        f"MSGID-SECRET-{owner}",
        f"rule-secret-{owner}",
        f"UID-SECRET-{owner}",
        EMAILS[owner],
    )


SITE_MARKERS = ("GROUP-SECRET-site", "AUDIT-SECRET-site")


def forbidden_markers(role: str) -> tuple[str, ...]:
    """Everything ``role`` must never see in any response."""
    found: list[str] = []
    for owner in OWNERS:
        if level(role, owner) == NONE:
            found += markers(owner)
    for dom, name in DOMAIN_NAMES.items():
        if dom not in DOMAINS_SEEN[role]:
            found.append(name)
    if role != "root":
        found += SITE_MARKERS
    return tuple(found)


# Pages of one poll, reached through its mailbox: the page and its transcript.
RUN_PAGES = ("retrieval:run-detail", "retrieval:run-transcript")

# Pages of one connection test, reached through its mailbox as a run is.
CONNECTION_TEST_PAGES = (
    "retrieval:connection-test",
    "retrieval:connection-test-status",
)

# --- the URLs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    key: str  # "namespace:name", or the full route for an unnamed pattern
    route: str  # the full route, prefixes included
    name: str | None  # "namespace:name" when named
    params: tuple[str, ...]  # the parameter names, in route order
    admin: bool


_PARAM = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>")


def url_patterns(urlconf: Any = None) -> list[Pattern]:
    """Every URL pattern of ``urlconf`` (default: ROOT_URLCONF), includes and
    namespaces followed, the admin site's included."""
    found: list[Pattern] = []

    def walk(resolver: URLResolver, prefix: str, namespaces: tuple[str, ...]) -> None:
        for entry in resolver.url_patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                ns = namespaces + ((entry.namespace,) if entry.namespace else ())
                walk(entry, route, ns)
            else:
                assert isinstance(entry, URLPattern)
                name = ":".join((*namespaces, entry.name)) if entry.name else None
                params = tuple(a or b for a, b in _PARAM.findall(route))
                found.append(
                    Pattern(
                        key=name or route,
                        route=route,
                        name=name,
                        params=params,
                        admin="admin" in namespaces,
                    )
                )

    walk(get_resolver(urlconf), "", ())
    return found


def fill_route(route: str, values: dict[str, str]) -> str:
    """A concrete path for an unnamed pattern (named ones go through reverse())."""

    def sub(match: re.Match[str]) -> str:
        return values[match.group(1) or match.group(2)]

    path = re.sub(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>[^)]*\)", sub, route)
    return "/" + path.replace("^", "").replace("$", "")


# --- objects a pattern is probed with ------------------------------------------------

# The admin's model pages and which owners' rows they are probed on.
ADMIN_MODELS: dict[str, tuple[str, ...]] = {
    "auth_group": ("site",),
    "accounts_auditevent": ("site",),
    "accounts_user": OWNERS,
    "accounts_domain": ("dom1", "dom2"),
    "accounts_deliverytarget": ("site",),
    "retrieval_mailbox": OWNERS,
    "retrieval_pollrun": OWNERS,
    "retrieval_seenmessage": OWNERS,
}
_MODEL_PAGE = re.compile(r"^admin/(\w+)/(\w+)/")


def admin_model(pattern: Pattern) -> str | None:
    """``app_model`` for an admin page of one model, else None."""
    match = _MODEL_PAGE.match(pattern.route)
    if not match or not pattern.admin:
        return None
    model = f"{match.group(1)}_{match.group(2)}"
    return model if model in ADMIN_MODELS else None


def targets(pattern: Pattern) -> tuple[str, ...]:
    """Whose objects the pattern is probed on ("-" when it takes none).

    ``missing`` is an id no row has; ``alice+bob`` is alice's mailbox with bob's
    run in the run page's URL (and so on): a run must be reached only through
    its own mailbox.
    """
    if pattern.key in API:
        return API_TARGETS.get(pattern.key, ("-",))
    if pattern.key in RUN_PAGES or pattern.key in CONNECTION_TEST_PAGES:
        return (*OWNERS, "missing", "alice+bob", "bob+alice", "root+alice")
    if pattern.key == "retrieval:mailbox-bulk":
        return (*OWNERS, "missing")  # whose mailbox id is posted
    if pattern.key in ("retrieval:mailbox-add", "retrieval:rcfile-import"):
        # The owner chosen in the POSTed form: a domain administrator may choose
        # only the members of their domains.
        return OWNERS
    if pattern.key in PEOPLE_PAGES:
        return PEOPLE_TARGETS.get(pattern.key, ("-",))
    if pattern.params == ("pk",):
        return (*OWNERS, "missing")
    if pattern.key == "admin:app_list":
        return ("auth", "accounts", "retrieval")
    if pattern.key == "admin:view_on_site":
        return OWNERS
    if pattern.key == "admin:auth_user_password_change":
        return OWNERS
    model = admin_model(pattern)
    if model and pattern.params:
        return ADMIN_MODELS[model]
    return ("-",)


# --- what each probe must answer -------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """The status, and for redirects where to (a symbolic place resolved by the test:
    login, admin-login, detail, home, new-mailbox, admin-index, admin-change,
    changelist, mailbox-page, rcfile-import)."""

    status: int
    to: str | None = None

    @property
    def allowed(self) -> bool:
        """Did the request do what it asked for? Refusals change nothing."""
        return self.status in (200, 302) and self.to not in ("login", "admin-login")


LOGIN = Expect(302, "login")
ADMIN_LOGIN = Expect(302, "admin-login")
OK = Expect(200)
E403, E404, E405 = Expect(403), Expect(404), Expect(405)

# The self-service pages, by level of the role on the object's owner.
_ALL_LEVELS = (NONE, READ, OWN, ADMIN)


def _by_level(
    none: Expect, read: Expect, own: Expect, admin: Expect
) -> dict[str, Expect]:
    return {NONE: none, READ: read, OWN: own, ADMIN: admin}


def _same(expect: Expect) -> dict[str, Expect]:
    return dict.fromkeys(_ALL_LEVELS, expect)


# The password reset pages answer everyone alike, anonymous included. The link's
# page is probed with a link that is not valid: it says so, and takes no form.
RESET: dict[str, dict[str, dict[str, Expect]]] = {
    "accounts:password-reset": {
        "GET": _same(OK),
        "POST": _same(Expect(302, "password-reset-done")),
    },
    "accounts:password-reset-done": {"GET": _same(OK), "POST": _same(E405)},
    "accounts:password-reset-confirm": {"GET": _same(OK), "POST": _same(OK)},
    "accounts:password-reset-complete": {"GET": _same(OK), "POST": _same(E405)},
}

# EXPECT[url key][method] -> {level: Expect}, for logged-in roles on the pages.
# Anonymous gets LOGIN everywhere login_required applies (ANONYMOUS below).
PAGES: dict[str, dict[str, dict[str, Expect]]] = {
    # The dashboard and its "polls running now" panel: read-only, GET only.
    "home": {"GET": _same(OK), "POST": _same(E405)},
    "dashboard-running": {"GET": _same(OK), "POST": _same(E405)},
    "retrieval:mailbox-list": {"GET": _same(OK), "POST": _same(E405)},
    # A bulk action (pause) on one owner's mailbox: always back to the list; it
    # acts only where the role may change the mailbox (the test checks which),
    # and leaves a foreign or read-only one alone without a word.
    "retrieval:mailbox-bulk": {
        "GET": _same(E405),
        "POST": _same(Expect(302, "mailbox-list")),
    },
    "login": {"GET": _same(OK), "POST": _same(OK)},  # bad credentials: the form again
    "logout": {"GET": _same(E405), "POST": _same(Expect(302, "login"))},
    "healthz": {"GET": _same(OK), "POST": _same(E405)},
    # Prometheus text for loopback clients (the test client's 127.0.0.1) whoever
    # they are; other networks need FETCH_METRICS_ALLOW or the token
    # (tests/monitoring/test_metrics.py). Counts only, never a mailbox's data.
    "metrics": {"GET": _same(OK), "POST": _same(E405)},
    "retrieval:mailbox-detail": {
        "GET": _by_level(E404, OK, OK, OK),
        "POST": _same(E405),
    },
    "retrieval:mailbox-edit": {
        "GET": _by_level(E404, E403, OK, OK),
        "POST": _by_level(E404, E403, Expect(302, "detail"), Expect(302, "detail")),
    },
    "retrieval:mailbox-rules": {
        "GET": _by_level(E404, E403, E403, OK),
        "POST": _by_level(E404, E403, E403, Expect(302, "detail")),
    },
    "retrieval:mailbox-poll": {
        "GET": _same(E405),
        "POST": _by_level(E404, E403, Expect(302, "detail"), Expect(302, "detail")),
    },
    "retrieval:mailbox-resume": {
        "GET": _same(E405),
        "POST": _by_level(E404, E403, Expect(302, "detail"), Expect(302, "detail")),
    },
    "retrieval:mailbox-pause": {
        "GET": _same(E405),
        "POST": _by_level(E404, E403, Expect(302, "detail"), Expect(302, "detail")),
    },
    # The live status of the poll asked for with "Poll now": seen by whoever
    # sees the mailbox, like its page.
    "retrieval:mailbox-poll-status": {
        "GET": _by_level(E404, OK, OK, OK),
        "POST": _same(E405),
    },
    "retrieval:mailbox-test": {
        "GET": _same(E405),
        "POST": _by_level(
            E404, E403, Expect(302, "connection-test"), Expect(302, "connection-test")
        ),
    },
    # A connection test is seen by whoever may see its mailbox, like a run.
    "retrieval:connection-test": {
        "GET": _by_level(E404, OK, OK, OK),
        "POST": _same(E405),
    },
    "retrieval:connection-test-status": {
        "GET": _by_level(E404, OK, OK, OK),
        "POST": _same(E405),
    },
    "retrieval:mailbox-delete": {
        "GET": _by_level(E404, E403, OK, OK),
        "POST": _by_level(E404, E403, Expect(302, "home"), Expect(302, "home")),
    },
    "retrieval:run-detail": {
        "GET": _by_level(E404, OK, OK, OK),
        "POST": _same(E405),
    },
    # The transcript as a file: the same permission as the poll's page.
    "retrieval:run-transcript": {
        "GET": _by_level(E404, OK, OK, OK),
        "POST": _same(E405),
    },
    # A .fetchmailrc in the browser. The import's POST is its preview (nothing
    # saved): for the owner posted if the role may choose them, else the form
    # says why. The confirm without an import waiting goes back to the form,
    # having imported nothing (the test checks). An export holds the mailboxes
    # the role may see, and one mailbox's export is seen like its page.
    "retrieval:rcfile-import": {"GET": _same(OK), "POST": _same(OK)},
    "retrieval:rcfile-import-confirm": {
        "GET": _same(E405),
        "POST": _same(Expect(302, "rcfile-import")),
    },
    "retrieval:rcfile-export": {"GET": _same(OK), "POST": _same(E405)},
    "retrieval:mailbox-export": {
        "GET": _by_level(E404, OK, OK, OK),
        "POST": _same(E405),
    },
    # OAuth2 (issue 16): connect and disconnect change the mailbox, like Poll now.
    # No provider is configured in the probe, so connect says so on the page.
    "retrieval:oauth-connect": {
        "GET": _same(E405),
        "POST": _by_level(E404, E403, Expect(302, "detail"), Expect(302, "detail")),
    },
    "retrieval:oauth-disconnect": {
        "GET": _same(E405),
        "POST": _by_level(E404, E403, Expect(302, "detail"), Expect(302, "detail")),
    },
    # The same for the IMAP mailbox delivered into: its own grant, the same rights.
    "retrieval:oauth-destination-connect": {
        "GET": _same(E405),
        "POST": _by_level(E404, E403, Expect(302, "detail"), Expect(302, "detail")),
    },
    "retrieval:oauth-destination-disconnect": {
        "GET": _same(E405),
        "POST": _by_level(E404, E403, Expect(302, "detail"), Expect(302, "detail")),
    },
    # The provider's answer: without a state this session started, refused.
    "retrieval:oauth-callback": {"GET": _same(Expect(400)), "POST": _same(E405)},
    # One's own API tokens; the probe's empty POST gets the form with its error.
    "accounts:tokens": {"GET": _same(OK), "POST": _same(OK)},
    # One's own password; the probe posts a wrong old password: the form again.
    "accounts:password-change": {"GET": _same(OK), "POST": _same(OK)},
    "accounts:password-change-done": {"GET": _same(OK), "POST": _same(E405)},
    # Forgotten passwords: open to everyone, signed in or not (RESET below). The
    # probe asks for a link to an address with no account: the same "check your
    # mail" as for one with an account, and no mail.
    **{key: dict(value) for key, value in RESET.items()},
}
# What anonymous gets on the pages; absent: the logged-in answer at level NONE.
ANONYMOUS: dict[str, dict[str, Expect]] = {
    "home": {"GET": LOGIN, "POST": LOGIN},
    "dashboard-running": {"GET": LOGIN, "POST": LOGIN},
    "logout": {"GET": E405, "POST": Expect(302, "login")},
    **{
        key: {"GET": LOGIN, "POST": LOGIN}
        for key in PAGES
        if key.startswith(("retrieval:", "accounts:")) and key not in RESET
    },
    **{
        key: {method: by_level[NONE] for method, by_level in value.items()}
        for key, value in RESET.items()
    },
}


def add_expectation(role: str, owner: str, method: str) -> Expect:
    """mailbox-add: the form for everyone logged in; a POST adds a mailbox for
    the chosen owner only if the role may choose them, else for themselves (a
    plain user has no owner field) or not at all (the form says why)."""
    if role == "anonymous":
        return LOGIN
    if method == "GET":
        return OK
    if role in ("alice", "peer", "bob"):
        return Expect(302, "new-mailbox")  # their own, whatever owner was posted
    may_choose = {
        "admin1": {"alice", "peer"},
        "staff1": {"alice", "peer"},
        "admin2": {"bob"},
        "root": set(OWNERS),
    }[role]
    return Expect(302, "new-mailbox") if owner in may_choose else OK


def add_owner(role: str, owner: str) -> str:
    """Whom the mailbox added by an allowed POST must belong to."""
    return role if role in ("alice", "peer", "bob") else owner


# --- domains and people in the browser (issue 13 item 6) ------------------------------
# Superusers see and change every domain and person; a domain administrator the
# people of their domains (another domain's person, a superuser, a missing id:
# 404) and their domains' defaults; a user none of it (403, whatever the id).
# Everyone signed in picks their own time zone.

ADMINS = ("admin1", "admin2", "staff1", "root")
# Whom each administrator manages (a person of their domains; the superuser
# everyone); acting on oneself is refused with the page again (200).
MANAGES: dict[str, set[str]] = {
    "admin1": {"alice", "peer"},
    "staff1": {"alice", "peer"},
    "admin2": {"bob"},
    "root": {"alice", "peer", "bob"},
}
PEOPLE_PAGES: dict[str, str] = {
    # key -> kind: "list" (a GET page), "add" (a form probed per domain),
    # "person" (one person), "resend" (one person, POST only), "domain"
    # (superuser only), "defaults", "root" (superuser pages), "everyone".
    "people:people": "list",
    "people:domains": "list",
    "people:person-add": "add",
    "people:person-invite": "add",
    "people:person": "person",
    "people:person-remove": "person",
    "people:person-resend-invitation": "resend",
    "people:domain-add": "root",
    "people:domain-edit": "domain",
    "people:domain-defaults": "defaults",
    "people:delivery-targets": "root",
    "people:audit": "audit",
    "people:time-zone": "everyone",
}
PEOPLE_TARGETS: dict[str, tuple[str, ...]] = {
    "people:person-add": ("dom1", "dom2"),  # the domain chosen in the form
    "people:person-invite": ("dom1", "dom2"),
    "people:person": (*OWNERS, "missing"),
    "people:person-remove": (*OWNERS, "missing"),
    "people:person-resend-invitation": (*OWNERS, "missing"),
    "people:domain-edit": ("dom1", "dom2", "missing"),
    "people:domain-defaults": ("dom1", "dom2", "missing"),
}
# Where an allowed POST goes.
PEOPLE_DONE: dict[str, Expect] = {
    "people:person-add": Expect(302, "new-person"),
    "people:person-invite": Expect(302, "new-person"),
    "people:person": Expect(302, "person"),
    "people:person-remove": Expect(302, "people"),
    # Back to the person's page, which says it was sent (or why not).
    "people:person-resend-invitation": Expect(302, "person"),
    "people:domain-add": Expect(302, "new-domain"),
    "people:domain-edit": Expect(302, "domain-edit"),
    "people:domain-defaults": Expect(302, "domain-defaults"),
    "people:delivery-targets": Expect(302, "delivery-targets"),
    "people:time-zone": Expect(302, "time-zone"),
}


def people_expectation(key: str, role: str, owner: str, method: str) -> Expect:
    kind = PEOPLE_PAGES[key]
    if role == "anonymous":
        return LOGIN
    if kind in ("list", "audit") and method == "POST":
        return E405
    if kind == "everyone":
        return OK if method == "GET" else PEOPLE_DONE[key]
    if kind == "resend" and method == "GET":
        return E405
    if kind in ("root", "domain", "audit") and role != "root":
        return E403
    if role not in ADMINS:
        return E403
    if kind == "list":
        return OK
    if kind == "add":
        if method == "GET":
            return OK
        # A domain they do not administer is not a choice: the form again.
        return PEOPLE_DONE[key] if owner in ADMINISTERS[role] else OK
    if kind == "resend":
        manages = owner == role or owner in MANAGES[role]
        return PEOPLE_DONE[key] if manages else E404
    if kind == "person":
        if owner == role:
            return OK  # themselves: seen, not acted on
        if owner not in MANAGES[role]:
            return E404
        return OK if method == "GET" else PEOPLE_DONE[key]
    if kind in ("domain", "defaults"):
        if owner not in ADMINISTERS[role]:
            return E404
        return OK if method == "GET" else PEOPLE_DONE[key]
    return OK if method == "GET" else PEOPLE_DONE[key]  # root pages, as root


# The admin. DECISION of issue 11 item 1: the admin is for active superusers only.
# Everyone else is sent to the admin's login page (a staff account may instead be
# refused with 403), whatever the page, object or method; the login page itself
# answers them with its form.

# The superuser's answers, per admin pattern key and method; model pages by kind.
ROOT_ADMIN: dict[str, dict[str, Expect]] = {
    "admin:index": {"GET": OK, "POST": OK},
    "admin:login": {"GET": Expect(302, "admin-index"), "POST": OK},
    # Django's LogoutView, then LOGOUT_REDIRECT_URL; logging out is POST only.
    "admin:logout": {"GET": E405, "POST": LOGIN},
    "admin:password_change": {"GET": OK, "POST": OK},  # wrong old password
    "admin:password_change_done": {"GET": OK, "POST": E405},
    "admin:autocomplete": {"GET": E403, "POST": E405},  # no autocomplete fields
    "admin:jsi18n": {"GET": OK, "POST": E405},
    # No model has get_absolute_url, so "view on site" has nowhere to go.
    "admin:view_on_site": {"GET": E404, "POST": E404},
    "admin:app_list": {"GET": OK, "POST": OK},
    "admin/(?P<url>.*)$": {"GET": E404, "POST": E404},
    "admin:auth_user_password_change": {"GET": OK, "POST": OK},  # mismatched
}
ROOT_MODEL_PAGES: dict[str, dict[str, Expect]] = {
    "changelist": {"GET": OK, "POST": Expect(302, "changelist")},  # bulk delete
    "add": {"GET": OK, "POST": OK},  # empty form: errors
    "history": {"GET": OK, "POST": OK},
    "delete": {"GET": OK, "POST": Expect(302, "changelist")},
    "change": {"GET": OK, "POST": OK},  # empty form: errors
    "view": {"GET": Expect(302, "admin-change"), "POST": Expect(302, "admin-change")},
}
ROOT_MODEL_EXCEPTIONS: dict[tuple[str, str, str], Expect] = {
    # A domain with members cannot be deleted (User.domain is PROTECT): the
    # confirmation page says so instead.
    ("accounts_domain", "changelist", "POST"): OK,
    ("accounts_domain", "delete", "POST"): OK,
    # Poll runs are a record: no add page, no change form; after a delete the
    # admin, having no change permission, goes back to its index.
    ("retrieval_pollrun", "add", "GET"): E403,
    ("retrieval_pollrun", "add", "POST"): E403,
    ("retrieval_pollrun", "change", "POST"): E403,
    ("retrieval_pollrun", "delete", "POST"): Expect(302, "admin-index"),
    # The audit log is read-only even for the superuser: no add, change or delete
    # (the bulk delete is not offered, so the list answers again).
    ("accounts_auditevent", "changelist", "POST"): OK,
    ("accounts_auditevent", "add", "GET"): E403,
    ("accounts_auditevent", "add", "POST"): E403,
    ("accounts_auditevent", "change", "POST"): E403,
    ("accounts_auditevent", "delete", "GET"): E403,
    ("accounts_auditevent", "delete", "POST"): E403,
}
# Everyone else who is not let in: anonymous, the users, the domain administrators.
# Django's admin logout sends them to the admin index (which sends them to login).
NOT_ADMITTED: dict[str, tuple[Expect, ...]] = {
    "admin:login": (OK,),  # the login form, with "you are not authorized"
    "admin:logout": (Expect(302, "admin-index"),),
}


def model_page_kind(pattern: Pattern) -> str:
    if pattern.name:
        return pattern.name.rsplit("_", 1)[1]
    return "view"  # admin/<app>/<model>/<id>/: redirects to the change page


def expect(pattern: Pattern, role: str, owner: str, method: str) -> tuple[Expect, ...]:
    """The acceptable answers (one, except the admin's refusals)."""
    if pattern.admin:
        if role == "root":
            model = admin_model(pattern)
            if model:
                kind = model_page_kind(pattern)
                exception = ROOT_MODEL_EXCEPTIONS.get((model, kind, method))
                return (exception or ROOT_MODEL_PAGES[kind][method],)
            return (ROOT_ADMIN[pattern.key][method],)
        refused = NOT_ADMITTED.get(pattern.key, (ADMIN_LOGIN,))
        # staff1 may also be refused with 403, however item 1 is implemented.
        return (*refused, E403) if role == "staff1" else refused
    if pattern.key in API:
        return (api_expectation(pattern.key, role, owner, method),)
    if pattern.key == "retrieval:mailbox-add":
        return (add_expectation(role, owner, method),)
    if pattern.key in PEOPLE_PAGES:
        return (people_expectation(pattern.key, role, owner, method),)
    by_level = PAGES[pattern.key][method]
    if role == "anonymous":
        return (ANONYMOUS.get(pattern.key, {}).get(method, by_level[NONE]),)
    if "+" in owner:  # a run reached through another mailbox does not exist
        return (by_level[NONE],)
    return (by_level[level(role, owner)],)


def methods(pattern: Pattern) -> tuple[str, ...]:
    """GET and POST everywhere; the API's routes get PUT, PATCH and DELETE too."""
    return API_METHODS if pattern.key in API else ("GET", "POST")


def iter_probes(patterns: list[Pattern]) -> Iterator[tuple[Pattern, str, str, str]]:
    for pattern in patterns:
        for role in ROLES:
            for owner in targets(pattern):
                for method in methods(pattern):
                    yield pattern, role, owner, method


def has_expectation(pattern: Pattern) -> bool:
    """Whether the tables above say anything about ``pattern``."""
    if pattern.admin and admin_model(pattern):
        return model_page_kind(pattern) in ROOT_MODEL_PAGES
    return (
        pattern.key in PAGES
        or pattern.key in API
        or pattern.key in ROOT_ADMIN
        or pattern.key in PEOPLE_PAGES
        or (pattern.key == "retrieval:mailbox-add")
    )


# --- the REST API (issue 15 item 1) -------------------------------------------------
# The same rules as the pages, in the API's words: 401 for anonymous (no login
# redirect), 404 for what the caller cannot see, 403 for what they may only look
# at, 405 for a method the route has not. Bodies are JSON (the rcfile import's
# is text, sent with ?dry_run=1: it must change nothing).

API_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
E400, E401 = Expect(400), Expect(401)
CREATED, ACCEPTED, NO_CONTENT = Expect(201), Expect(202), Expect(204)
_NOT_HERE = dict.fromkeys(API_METHODS, _same(E405))


def _api(**by_method: dict[str, Expect]) -> dict[str, dict[str, Expect]]:
    return {**_NOT_HERE, **by_method}


_SEEN = _by_level(E404, OK, OK, OK)
_CHANGE = _by_level(E404, E403, OK, OK)

API: dict[str, dict[str, dict[str, Expect]]] = {
    "api:mailbox-list": _api(GET=_same(OK)),  # POST: MAY_ADD_FOR
    "api:mailbox-detail": _api(
        GET=_SEEN,
        PUT=_CHANGE,
        PATCH=_CHANGE,
        DELETE=_by_level(E404, E403, NO_CONTENT, NO_CONTENT),
    ),
    "api:mailbox-poll": _api(POST=_by_level(E404, E403, ACCEPTED, ACCEPTED)),
    "api:mailbox-test": _api(POST=_by_level(E404, E403, ACCEPTED, ACCEPTED)),
    # Rules are read by whoever sees the mailbox (its page shows them), changed
    # by a domain administrator or a superuser.
    "api:mailbox-rules": _api(GET=_SEEN, PUT=_by_level(E404, E403, E403, OK)),
    "api:run-list": _api(GET=_same(OK)),
    "api:run-detail": _api(GET=_SEEN),
    "api:message-list": _api(GET=_same(OK)),
    "api:connection-test-detail": _api(GET=_SEEN),
    "api:domain-list": _api(),  # GET: ADMINISTERS
    "api:domain-detail": _api(),
    "api:user-list": _api(),  # GET: PEOPLE_SEEN
    "api:user-detail": _api(),
    "api:rcfile-import": _api(POST=_same(OK)),  # a dry run of one's own file
    "api:rcfile-export": _api(GET=_same(OK)),
    "api:schema": _api(GET=_same(OK)),
    "api:docs": _api(GET=_same(OK)),
}
API_PUBLIC = {"api:schema", "api:docs"}  # they describe the API, not anyone's data
# Which owners' objects a route is probed on; absent: none ("-").
_BOXES = (*OWNERS, "missing")
API_TARGETS: dict[str, tuple[str, ...]] = {
    "api:mailbox-list": OWNERS,  # the owner named in the POSTed body
    "api:mailbox-detail": _BOXES,
    "api:mailbox-poll": _BOXES,
    "api:mailbox-test": _BOXES,
    "api:mailbox-rules": _BOXES,
    "api:run-detail": _BOXES,
    "api:connection-test-detail": _BOXES,
    "api:domain-detail": ("dom1", "dom2", "missing"),
    "api:user-detail": _BOXES,
}
# What the routes of domains and people show, per role: a superuser everything,
# a domain administrator their domains and their members (and themselves), a
# user only themselves; the lists are for superusers and domain administrators.
ADMINISTERS: dict[str, set[str]] = {
    "admin1": {"dom1"},
    "staff1": {"dom1"},
    "admin2": {"dom2"},
    "root": {"dom1", "dom2"},
}
PEOPLE_SEEN: dict[str, set[str]] = {
    "alice": {"alice"},
    "peer": {"peer"},
    "bob": {"bob"},
    "admin1": {"alice", "peer"},
    "staff1": {"alice", "peer"},
    "admin2": {"bob"},
    "root": set(OWNERS),
}
# Whom a POST to the mailbox list may add a mailbox for (the pages' rule).
MAY_ADD_FOR: dict[str, set[str]] = {
    "alice": {"alice"},
    "peer": {"peer"},
    "bob": {"bob"},
    "admin1": {"alice", "peer"},
    "staff1": {"alice", "peer"},
    "admin2": {"bob"},
    "root": set(OWNERS),
}


def api_expectation(key: str, role: str, owner: str, method: str) -> Expect:
    if key in API_PUBLIC:
        return API[key][method][NONE]
    if role == "anonymous":
        return E401
    if method == "GET" and key in ("api:domain-list", "api:user-list"):
        return OK if role in ADMINISTERS else E403
    if method == "GET" and key == "api:domain-detail":
        return OK if owner in ADMINISTERS.get(role, set()) else E404
    if method == "GET" and key == "api:user-detail":
        return OK if owner in PEOPLE_SEEN[role] else E404
    if key == "api:mailbox-list" and method == "POST":
        return CREATED if owner in MAY_ADD_FOR[role] else E400
    if key in SUPERUSER_WRITES and method in SUPERUSER_WRITES[key]:
        if role != "root":
            return E403  # whatever the id: the refusal confirms nothing
        if owner == "missing":
            return E404
        return SUPERUSER_WRITES[key][method].get(
            owner, SUPERUSER_WRITES[key][method]["*"]
        )
    return API[key][method][level(role, owner)]


# Domains and people are changed by superusers only (as in the admin); what the
# superuser's probe gets, by target ("*": any other).
SUPERUSER_WRITES: dict[str, dict[str, dict[str, Expect]]] = {
    "api:domain-list": {"POST": {"*": CREATED}},
    "api:user-list": {"POST": {"*": CREATED}},
    # Both domains have people in them: the database keeps them (PROTECT).
    "api:domain-detail": {"PATCH": {"*": OK}, "DELETE": {"*": Expect(409)}},
    # Deleting a person deletes their mailboxes; nobody deletes themselves.
    "api:user-detail": {
        "PATCH": {"*": OK},
        "DELETE": {"*": NO_CONTENT, "root": E400},
    },
}


def api_changes(key: str, method: str, answer: Expect) -> bool:
    """Did an allowed API call change rows (so the before/after check is off)?"""
    if method == "GET" or key == "api:rcfile-import":  # a dry run
        return False
    return answer.status in (200, 201, 202, 204)
