"""Production settings: ``check --deploy`` passes, and a missing secret key stops the process."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.conf import settings


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A clean environment: only what production would set, none of the test settings' overrides.
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), "LANG": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=Path(settings.BASE_DIR), env={**base, "DJANGO_SETTINGS_MODULE": "pldreview.settings", **env},
        capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_passes_with_production_settings(tmp_path) -> None:
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING",
        env={
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
            "DJANGO_DEBUG": "0",
            "ALLOWED_HOSTS": "pld.example.org",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
            "PLD_VAR_DIR": str(tmp_path / "var"),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path) -> None:
    result = _manage("check", env={"DJANGO_DEBUG": "0", "PLD_VAR_DIR": str(tmp_path / "var")})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off" in result.stderr


def test_a_setting_that_does_not_parse_stops_the_process(tmp_path) -> None:
    result = _manage("check", env={"DJANGO_DEBUG": "maybe", "PLD_VAR_DIR": str(tmp_path / "var")})
    assert result.returncode != 0
    assert "DJANGO_DEBUG='maybe' is not a boolean" in result.stderr
