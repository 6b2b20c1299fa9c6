"""A Dovecot whose XOAUTH2 and OAUTHBEARER logins are checked by an OAuth2 server.

The suite's Dovecot (tests/support/dovecot.py) with a second passdb,
``driver = oauth2``, that POSTs the token to the local authorization server's
introspection endpoint (tests/support/oauth_server.py) and accepts the login
when the answer is ``active`` for that user. Password logins still work through
the passwd-file passdb, which a token does not match.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.support.dovecot import Dovecot

if TYPE_CHECKING:
    from pathlib import Path

_OAUTH2_PASSDB = """
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {conf}
}}
"""
_OAUTH2_CONF = """\
introspection_mode = post
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
force_introspection = yes
"""


class OAuthDovecot(Dovecot):
    """``introspection_url``: where Dovecot asks whether a token is active."""

    def __init__(self, base: Path, *, introspection_url: str, **options: Any) -> None:
        options.setdefault("label", "oauth")
        super().__init__(
            base, auth_mechanisms="plain login xoauth2 oauthbearer", **options
        )
        self.introspection_url = introspection_url

    def _write_config(self, ports: list[int]) -> None:
        super()._write_config(ports)
        conf = self.base / "dovecot-oauth2.conf.ext"
        conf.write_text(_OAUTH2_CONF.format(url=self.introspection_url))
        conf.chmod(0o644)
        with self.config_file.open("a") as out:
            out.write(_OAUTH2_PASSDB.format(conf=conf))
