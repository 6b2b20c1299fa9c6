"""The wire: TCP and TLS connections with deadlines and bounded reads, STARTTLS
contexts, tunnels and the programs they run, line-ending and dot transforms, the
message spool, the one parser for wire numbers, SASL mechanisms and link checks.

Imports only the engine's top-level spec, ports, errors, report and redact.
"""
