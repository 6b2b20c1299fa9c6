"""Delivery: the sink and its SMTP, LMTP, MDA and BSMTP forms, listener AUTH, the
handover of one message with its edits, trace header and bounces, the
listener-answer policy, multidrop routing and the RFC 5322 address-list parser.

Imports the wire and the top-level spec, ports, errors, report and redact;
never fetch/.
"""
