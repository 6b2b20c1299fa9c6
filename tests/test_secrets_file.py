"""A zero-configuration install has keys nobody else knows (issue 11, item 8).

Each test starts manage.py in a subprocess with no SECRET_KEY or
FIELD_ENCRYPTION_KEYS in its environment and its secrets file in tmp_path.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fetchweb import localsecrets
from retrieval import crypto

ROOT = Path(__file__).resolve().parent.parent
SHOW = (
    "from django.conf import settings; from retrieval import crypto; "
    "print(settings.SECRET_KEY); print(','.join(settings.FIELD_ENCRYPTION_KEYS)); "
    "print(crypto.keys()[0].material.hex())"
)


def _manage(*args: str, secrets_file: Path, **env: str):
    drop = {"SECRET_KEY", "SECRET_KEY_FILE", "FIELD_ENCRYPTION_KEYS"}
    drop |= {"FIELD_ENCRYPTION_KEYS_FILE", "DATABASE_URL", "REDIS_URL"}
    clean = {k: v for k, v in os.environ.items() if k not in drop}
    clean.update(FETCHWEB_SECRETS_FILE=str(secrets_file), DEBUG="true", **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _show(secrets_file: Path) -> tuple[str, str, bytes]:
    result = _manage("shell", "-c", SHOW, secrets_file=secrets_file)
    assert result.returncode == 0, result.stderr
    secret_key, field_keys, material = result.stdout.split()[-3:]
    return secret_key, field_keys, bytes.fromhex(material)


def test_first_start_writes_a_private_file_that_later_starts_reuse(tmp_path):
    path = tmp_path / "var" / "secrets.json"
    first = _show(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored == {"SECRET_KEY": first[0], "FIELD_ENCRYPTION_KEYS": first[1]}
    assert len(first[0]) >= 50
    assert crypto.validate_keys([first[1]]) == ""
    # no temporary file is left beside it
    assert [p.name for p in path.parent.iterdir()] == ["secrets.json"]
    assert _show(path) == first


def test_the_password_key_is_not_derived_from_any_secret_key(tmp_path):
    secret_key, _keys, material = _show(tmp_path / "secrets.json")
    for derived_from in (secret_key, "dev-insecure-fetchweb-secret-key-change-me"):
        assert crypto.legacy_key(derived_from).material != material
    # two installations get two different keys
    assert _show(tmp_path / "other.json")[2] != material


def test_the_environment_wins_and_then_no_file_is_written(tmp_path):
    path = tmp_path / "secrets.json"
    key = crypto.generate_key()
    result = _manage(
        "shell",
        "-c",
        SHOW,
        secrets_file=path,
        SECRET_KEY="s" * 60,
        FIELD_ENCRYPTION_KEYS=key,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-3:-1] == ["s" * 60, key]
    assert not path.exists()


@pytest.mark.parametrize(
    "value",
    ["not-a-key", crypto.generate_key() + ",short", "dGVzdA==", "é" * 43],
)
def test_a_malformed_key_fails_check(tmp_path, value):
    result = _manage(
        "check", secrets_file=tmp_path / "s.json", FIELD_ENCRYPTION_KEYS=value
    )
    assert result.returncode != 0
    assert "fetchweb.E005" in result.stderr
    assert "FIELD_ENCRYPTION_KEYS cannot be used" in result.stderr
    assert "generate_encryption_key" in result.stderr


def test_a_good_key_passes_check(tmp_path):
    result = _manage(
        "check",
        secrets_file=tmp_path / "s.json",
        FIELD_ENCRYPTION_KEYS=crypto.generate_key(),
    )
    assert result.returncode == 0, result.stderr


def test_processes_starting_together_agree_on_one_file(tmp_path):
    path = tmp_path / "secrets.json"
    seen: list[dict[str, str]] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        seen.append(localsecrets.load_or_create(path))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8
    assert all(s == seen[0] for s in seen)
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.json"]


def test_a_wide_open_file_is_made_private_again(tmp_path):
    path = tmp_path / "secrets.json"
    localsecrets.load_or_create(path)
    path.chmod(0o644)
    localsecrets.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.django_db
def test_passwords_encrypted_with_the_old_derived_key_still_decrypt(settings):
    old = crypto.legacy_key(settings.DEV_SECRET_KEY)
    settings.FIELD_ENCRYPTION_KEYS = [crypto.generate_key()]
    settings.FIELD_ENCRYPTION_LEGACY_SECRET = settings.DEV_SECRET_KEY
    # what the former zero-configuration default stored
    settings.FIELD_ENCRYPTION_KEYS, saved = (
        [crypto.base64.urlsafe_b64encode(old.material).decode()],
        settings.FIELD_ENCRYPTION_KEYS,
    )
    settings.FIELD_ENCRYPTION_LEGACY_SECRET = ""
    sealed = crypto.encrypt("hunter2", bound_to="row-9")
    settings.FIELD_ENCRYPTION_KEYS = saved
    settings.FIELD_ENCRYPTION_LEGACY_SECRET = settings.DEV_SECRET_KEY
    assert crypto.decrypt(sealed, bound_to="row-9") == "hunter2"
    assert crypto.needs_rotation(sealed)
    fresh = crypto.encrypt("hunter2", bound_to="row-9")
    assert not crypto.needs_rotation(fresh)
