"""The .fetchmailrc language: lexer, parser and exporter. Nothing here imports Django.

Public API::

    parse_file(path) -> RcConfig
    parse_text(text, filename="<rcfile>") -> RcConfig
    parse_bytes(data, filename="<rcfile>") -> RcConfig
    configdump(config, env=None) -> dict          # fetchmail --configdump's shape
    to_mailbox_specs(config, env=None) -> list[MailboxSpec]
    export(config) -> str                         # rcfile text, parses back equal

Every syntax or semantic error is an :class:`RcfileError` (filename, line, column,
token, message); nothing else escapes the parser, whatever the input bytes.
"""

from .dump import configdump
from .env import Environment
from .errors import RcfileError
from .export import export
from .model import GlobalOptions, RcConfig, Server, ServerOptions, UserOptions
from .parser import parse_bytes, parse_file, parse_text
from .specs import to_mailbox_specs

__all__ = [
    "Environment",
    "GlobalOptions",
    "RcConfig",
    "RcfileError",
    "Server",
    "ServerOptions",
    "UserOptions",
    "configdump",
    "export",
    "parse_bytes",
    "parse_file",
    "parse_text",
    "to_mailbox_specs",
]
