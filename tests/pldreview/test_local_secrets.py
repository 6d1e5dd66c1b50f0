"""Importing the settings writes nothing: scripts/setup and the commands that need them keep the local secrets."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from evaluation.release.pdf_signing import SigningError, signing_identity_create, signing_identity_load
from pldreview import local_secrets

# Prints what the settings read, so a test can compare it with what was kept.
READ = "import pldreview.settings as s; print(s.SECRET_KEY); print(s.PLD_SIGNING_PASSPHRASE)"


def _python(code: str, *, var: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # A clean environment: none of the test settings' variables (their secret key, their var dir).
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), "LANG": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=Path(settings.BASE_DIR), env={**base, "PLD_VAR_DIR": str(var), **env},
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("env", [{"DJANGO_DEBUG": "1"}, {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "k" * 50}],
                         ids=["development", "production"])
def test_importing_the_settings_writes_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    var = tmp_path / "var"
    var.mkdir()
    result = _python(READ, var=var, **env)
    assert result.returncode == 0, result.stderr
    assert list(var.iterdir()) == []
    assert result.stdout.splitlines()[1:] == [""]  # no passphrase set, none kept: none made up either


def test_production_without_a_key_names_the_variable_and_the_file(tmp_path: Path) -> None:
    result = _python(READ, var=tmp_path / "var", DJANGO_DEBUG="0")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off" in result.stderr
    assert str(tmp_path / "var" / "secret_key") in result.stderr
    assert not (tmp_path / "var").exists()


def test_setup_keeps_the_secrets_once_and_the_settings_read_them(tmp_path: Path) -> None:
    var = tmp_path / "var"
    made = subprocess.run([sys.executable, "-m", "pldreview.local_secrets"], cwd=Path(settings.BASE_DIR),
                          env={**os.environ, "PLD_VAR_DIR": str(var)}, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    key, passphrase = (var / "dev_secret_key").read_text().strip(), (var / "signing" / "passphrase").read_text().strip()
    assert key and passphrase and key != passphrase
    assert all((var / name).stat().st_mode & 0o077 == 0 for name in local_secrets.MADE_BY_SETUP)
    # A second run keeps them; two development processes sign sessions with the same key.
    assert local_secrets.secret_keep(var, local_secrets.DEV_SECRET_KEY) == (key, False)
    first, second = (_python(READ, var=var, DJANGO_DEBUG="1").stdout for _ in range(2))
    assert first == second == f"{key}\n{passphrase}\n"


def test_create_signing_identity_keeps_a_passphrase_when_none_is_set(
    settings, tmp_path: Path  # noqa: ANN001
) -> None:
    settings.VAR_DIR = tmp_path / "var"
    settings.PLD_SIGNING_PASSPHRASE = ""
    out, output = tmp_path / "identity.p12", io.StringIO()
    call_command("create_signing_identity", "--out", str(out), stdout=output)
    kept = (tmp_path / "var" / "signing" / "passphrase").read_text().strip()
    assert kept and "Kept a new passphrase" in output.getvalue()
    assert signing_identity_load(p12_path=out, passphrase=kept).common_name == "PLD Review report signer"


def test_a_missing_passphrase_says_how_to_set_one(tmp_path: Path) -> None:
    out = tmp_path / "identity.p12"
    signing_identity_create(path=out, passphrase="secret", common_name="Signer")
    with pytest.raises(SigningError, match="no passphrase is set: set PLD_SIGNING_PASSPHRASE"):
        signing_identity_load(p12_path=out, passphrase="")
