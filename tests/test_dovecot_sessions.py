"""The reader of Dovecot's log that the two-host race is judged by
(tests/support/dovecot_sessions.py)."""

from __future__ import annotations

from tests.support.dovecot_sessions import overlapping, sessions

# Two lines of a real race run: the poll logged out 77 us after logging in, and
# the imap process wrote its end before the login process wrote the login.
QUICK = (
    "2026-12-05 10:17:29.986181 imap(racer1)<11910><uZHWTOBhAJB/AAAB>: Info: "
    "Disconnected: Logged out in=34 out=787 deleted=0 expunged=0 trashed=0\n"
    "2026-12-05 10:17:29.986258 imap-login: Info: Login: user=<racer1>, "
    "method=CRAM-MD5, rip=127.0.0.1, lip=127.0.0.1, mpid=11910, TLS, "
    "session=<uZHWTOBhAJB/AAAB>\n"
)
NEXT = (
    "2026-12-05 10:17:30.978443 imap-login: Info: Login: user=<racer1>, "
    "method=CRAM-MD5, rip=127.0.0.1, lip=127.0.0.1, mpid=11911, TLS, "
    "session=<BQLmTOBhKpB/AAAB>\n"
    "2026-12-05 10:17:30.985842 imap(racer1)<11911><BQLmTOBhKpB/AAAB>: Info: "
    "Disconnected: Logged out in=40 out=800\n"
)


def test_an_end_written_before_its_login_still_ends_the_session():
    found = sessions(QUICK + NEXT)
    assert [s.session for s in found] == ["uZHWTOBhAJB/AAAB", "BQLmTOBhKpB/AAAB"]
    assert found[0].end == found[0].start  # not still logged in
    assert not overlapping(found)


def test_a_session_without_its_end_is_still_logged_in():
    found = sessions(QUICK.splitlines(keepends=True)[1] + NEXT)
    assert found[0].end is None
    assert overlapping(found) == [(found[0], found[1])]
