"""Fetching: POP3, IMAP (and its response parser), the session both offer to the
poll loop, message selection, IDLE, and the ESMTP client of ETRN and ODMR.

Imports the wire and the top-level spec, ports, errors, report and redact;
never deliver/.
"""
