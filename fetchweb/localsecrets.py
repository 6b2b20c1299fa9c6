"""Secrets generated on first start for an installation with no configuration.

Without this, a zero-configuration install encrypted mailbox passwords with a key
derived from the public development SECRET_KEY: anyone with a copy of the
database could decrypt them. Instead, the first process that starts writes a
random SECRET_KEY and FIELD_ENCRYPTION_KEYS to a private file (``var/secrets.json``,
mode 0600) and every later start reads the same file. The environment still wins:
a variable that is set is used and the file is not consulted for it.

Imported by the settings module, so nothing here imports Django.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

MODE = 0o600
NAMES = ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS")


def _fresh() -> dict[str, str]:
    return {
        "SECRET_KEY": secrets.token_urlsafe(50),
        # The same form as `manage.py generate_encryption_key`: 32 bytes, base64url.
        "FIELD_ENCRYPTION_KEYS": base64.urlsafe_b64encode(
            secrets.token_bytes(32)
        ).decode(),
    }


def load_or_create(path: Path) -> dict[str, str]:
    """The secrets in ``path``, creating the file first if it does not exist.

    Creation is atomic and first-writer-wins: the secrets are written to a private
    temporary file (mode 0600 from the start, never wider) which is then hard-linked
    to ``path``. If another process (gunicorn starts several at once) linked first,
    its file is the one read, so every process of the installation agrees.
    """
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(_fresh(), fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process was first: use its file
        except OSError:
            # No hard links on this filesystem (some network or container
            # volumes): a rename is still atomic for readers, but two processes
            # starting in the same instant could each keep their own keys.
            if not path.exists():
                tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8") as fh:
        # A copy restored with a careless mode would expose the keys to every
        # local account; tighten it rather than refuse to start.
        if os.fstat(fh.fileno()).st_mode & 0o077:
            with contextlib.suppress(OSError):
                path.chmod(MODE)
        data = json.load(fh)
    if not isinstance(data, dict) or not all(
        isinstance(data.get(name), str) and data[name] for name in NAMES
    ):
        raise ValueError(
            f"{path} is not a secrets file written by fetchweb (expected "
            f"{', '.join(NAMES)}); move it away to have a new one made."
        )
    return {name: data[name] for name in NAMES}
