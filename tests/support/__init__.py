"""Real servers for the test suite: PostgreSQL, Redis, Dovecot and SMTP/LMTP listeners.

Everything here binds to 127.0.0.1 on free ports and lives in temporary
directories, so a run never touches (or depends on) services of the machine.
"""
