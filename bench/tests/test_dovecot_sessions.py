"""Reading sessions out of Dovecot's log (tests/support/dovecot_sessions.py),
used by the two-host race test and bench/idle.py."""

from datetime import datetime

from tests.support.dovecot_sessions import overlapping, saved, sessions

LOG = """\
2026-12-04 16:08:54.224273 imap-login: Info: Login: user=<a>, method=CRAM-MD5, rip=127.0.0.1, lip=127.0.0.1, mpid=1, TLS, session=<S1>
2026-12-04 16:08:54.240153 imap(a)<1><S1>: Info: Disconnected: Logged out in=32 out=788
2026-12-04 16:08:54.240153 imap-login: Info: Login: user=<a>, method=CRAM-MD5, rip=127.0.0.1, lip=127.0.0.1, mpid=2, TLS, session=<S2>
2026-12-04 16:08:54.300000 imap-login: Info: Login: user=<a>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=3, TLS, session=<S3>
2026-12-04 16:08:54.310000 imap-login: Info: Login: user=<b>, method=CRAM-MD5, rip=127.0.0.1, lip=127.0.0.1, mpid=4, TLS, session=<S4>
2026-12-04 16:08:54.400000 imap(a)<2><S2>: Info: Disconnected: Connection closed (UID FETCH finished 0.1 secs ago)
2026-12-04 16:08:54.355411 lmtp(a@localhost)<7><L1>: Info: msgid=<m1@x>: saved mail to INBOX
2026-12-04 16:08:54.500000 imap-login: Info: Disconnected: Connection closed (no auth attempts in 0 secs): user=<>, rip=127.0.0.1, session=<S5>
"""


def test_logins_and_logouts_pair_by_session_id():
    found = {s.session: s for s in sessions(LOG)}
    assert set(found) == {"S1", "S2", "S3", "S4"}  # S5 never logged in
    assert found["S1"].method == "CRAM-MD5" and found["S1"].user == "a"
    assert found["S2"].end == datetime(2026, 12, 4, 16, 8, 54, 400000)
    assert found["S3"].end is None  # still logged in when the log was read


def test_overlaps_are_per_user_and_touching_is_not_overlapping():
    found = sessions(LOG)
    polls = [s for s in found if s.method == "CRAM-MD5"]
    # S1 ended at the very microsecond S2 began: one after the other.
    assert overlapping(polls) == []
    pairs = {(a.session, b.session) for a, b in overlapping(found)}
    assert pairs == {("S2", "S3")}  # b's S4 overlaps nobody of b's


def test_lmtp_saved_times_by_message_id():
    assert saved(LOG) == {"<m1@x>": datetime(2026, 12, 4, 16, 8, 54, 355411)}
