"""The demo runs as production does: DEBUG off, a kept secret key, the app's own error page."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.test import RequestFactory
from django.views.defaults import server_error


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), "LANG": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=Path(settings.BASE_DIR), env={**base, "DJANGO_SETTINGS_MODULE": "pldreview.settings", **env},
        capture_output=True, text=True, timeout=120,
    )


def test_management_commands_find_the_kept_secret_key_without_variables(tmp_path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    (var / "secret_key").write_text(secrets.token_urlsafe(50))
    result = _manage("check", env={"PLD_VAR_DIR": str(var), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"})
    assert result.returncode == 0, result.stderr


def test_check_deploy_passes_with_the_demos_settings_behind_https(tmp_path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    (var / "secret_key").write_text(secrets.token_urlsafe(50))
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING",
        env={"PLD_VAR_DIR": str(var), "ALLOWED_HOSTS": "127.0.0.1,localhost",
             "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_server_error_shows_the_apps_own_page_without_settings() -> None:
    response = server_error(RequestFactory().get("/api/v1/tasks/x/classify"))
    body = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in body and "SECRET_KEY" not in body and "Traceback" not in body


def test_the_default_signing_identity_has_a_passphrase() -> None:
    assert settings.PLD_SIGNING_PASSPHRASE
    kept = Path(settings.VAR_DIR) / "signing" / "passphrase"
    if kept.exists():  # generated once when PLD_SIGNING_PASSPHRASE is unset, readable by its owner only
        assert kept.stat().st_mode & 0o077 == 0
