"""Provider presets: the server settings of the mail providers people bring.

Plain data, written once: the mailbox form offers them as a select that fills in
protocol, server, port and encryption (retrieval/views.py, the mailbox form's
template and static/js/mailbox-presets.js), and the mailbox page follows them
for its OAuth2 buttons.
``oauth_provider`` names the OAuth2 provider of a preset: where the superuser
configured it, the mailbox page offers "Connect a ... account" for that side
(retrieval/views.py). The source's presets and the destination's ("Where
messages go", delivery into an IMAP mailbox) are two lists.

Values are the providers' published ones (their help pages, December 2026):
every provider here offers TLS from the start (IMAPS 993, POP3S 995).
Nothing imports Django here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    key: str  # stable: used in URLs (?preset=gmail-imap) and by the API
    provider: str  # the provider's name, shown as the select's group
    protocol: str  # Mailbox.Protocol value: "imap" or "pop3"
    host: str  # empty for the generic presets: the person types it
    port: int
    tls_mode: str  # Mailbox.TlsMode value
    note: str  # what the person must know or do at the provider, in words
    oauth_provider: str | None = None  # "google", "microsoft": OAuth2 sign-in

    @property
    def label(self) -> str:
        return f"{self.provider}: {self.protocol.upper()}"


_GENERIC = (
    "Enter your provider's server name; the port and encryption are the usual "
    "ones for TLS from the start. Ask your provider if they differ."
)
_GMAIL = (
    "Gmail: turn on 2-Step Verification and sign in with an app password "
    "(myaccount.google.com/apppasswords); Google refuses the account password. "
    "Or, where this server offers it: Connect a Google account on the mailbox "
    "page instead of a password."
)
_MICROSOFT = (
    "Outlook / Microsoft 365: Microsoft has turned off password sign-in for "
    "most accounts; an app password works only where your administrator allows "
    "it. Or, where this server offers it: Connect a Microsoft account on the "
    "mailbox page."
)
_YAHOO = (
    "Yahoo: create an app password under Account security and use it here; "
    "Yahoo refuses the account password."
)
_GMX = (
    "GMX: first allow access by POP3 and IMAP in the GMX web mail settings "
    "(E-Mail, POP3 & IMAP); then use your GMX address and password."
)
_ICLOUD = (
    "iCloud: create an app-specific password at account.apple.com and use it "
    "here; the user name is your iCloud address. iCloud has no POP3."
)
_FASTMAIL = (
    "Fastmail: create an app password (Settings, Privacy & Security) with IMAP "
    "or POP access; your Fastmail address is the user name."
)

PRESETS: tuple[Preset, ...] = (
    Preset("imap", "Other provider", "imap", "", 993, "implicit", _GENERIC),
    Preset("pop3", "Other provider", "pop3", "", 995, "implicit", _GENERIC),
    Preset(
        "gmail-imap",
        "Gmail",
        "imap",
        "imap.gmail.com",
        993,
        "implicit",
        _GMAIL,
        "google",
    ),
    Preset(
        "gmail-pop3",
        "Gmail",
        "pop3",
        "pop.gmail.com",
        995,
        "implicit",
        _GMAIL,
        "google",
    ),
    Preset(
        "outlook-imap",
        "Outlook / Microsoft 365",
        "imap",
        "outlook.office365.com",
        993,
        "implicit",
        _MICROSOFT,
        "microsoft",
    ),
    Preset(
        "outlook-pop3",
        "Outlook / Microsoft 365",
        "pop3",
        "outlook.office365.com",
        995,
        "implicit",
        _MICROSOFT,
        "microsoft",
    ),
    Preset(
        "yahoo-imap", "Yahoo", "imap", "imap.mail.yahoo.com", 993, "implicit", _YAHOO
    ),
    Preset(
        "yahoo-pop3", "Yahoo", "pop3", "pop.mail.yahoo.com", 995, "implicit", _YAHOO
    ),
    Preset("gmx-imap", "GMX", "imap", "imap.gmx.net", 993, "implicit", _GMX),
    Preset("gmx-pop3", "GMX", "pop3", "pop.gmx.net", 995, "implicit", _GMX),
    Preset(
        "icloud-imap", "iCloud", "imap", "imap.mail.me.com", 993, "implicit", _ICLOUD
    ),
    Preset(
        "fastmail-imap",
        "Fastmail",
        "imap",
        "imap.fastmail.com",
        993,
        "implicit",
        _FASTMAIL,
    ),
    Preset(
        "fastmail-pop3",
        "Fastmail",
        "pop3",
        "pop.fastmail.com",
        995,
        "implicit",
        _FASTMAIL,
    ),
)
BY_KEY = {preset.key: preset for preset in PRESETS}

_GMAIL_DESTINATION = (
    "Gmail: save, then press Connect a Google account on the mailbox page (when "
    "this server offers it); or turn on 2-Step Verification and type an app "
    "password (myaccount.google.com/apppasswords)."
)
_MICROSOFT_DESTINATION = (
    "Microsoft 365: save, then press Connect a Microsoft account on the mailbox "
    "page (when this server offers it); password sign-in is off for most "
    "accounts."
)

# The "Where messages go" select (delivery kind "IMAP mailbox"): the mailboxes
# people deliver into. Always IMAP over TLS from the start.
DESTINATION_PRESETS: tuple[Preset, ...] = (
    Preset(
        "gmail",
        "Gmail",
        "imap",
        "imap.gmail.com",
        993,
        "implicit",
        _GMAIL_DESTINATION,
        "google",
    ),
    Preset(
        "microsoft",
        "Microsoft 365",
        "imap",
        "outlook.office365.com",
        993,
        "implicit",
        _MICROSOFT_DESTINATION,
        "microsoft",
    ),
)
DESTINATION_BY_KEY = {preset.key: preset for preset in DESTINATION_PRESETS}


def preset(key: str) -> Preset | None:
    return BY_KEY.get(key)


def destination_preset(key: str) -> Preset | None:
    return DESTINATION_BY_KEY.get(key)


def preset_for_host(host: str, among: tuple[Preset, ...] = PRESETS) -> Preset | None:
    """The provider a stored server name belongs to (its note applies), if any."""
    name = host.strip().lower().rstrip(".")
    return next((p for p in among if p.host and p.host == name), None)


def grouped() -> list[tuple[str, list[Preset]]]:
    """The presets by provider, in the order above (for an <optgroup> select)."""
    groups: dict[str, list[Preset]] = {}
    for item in PRESETS:
        groups.setdefault(item.provider, []).append(item)
    return list(groups.items())
