"""The secrets a checkout keeps under ``PLD_VAR_DIR``: made by ``scripts/setup`` (and by the commands that need
them), only ever read by the settings.

Importing the settings writes nothing, so a read-only image or several replicas sharing one image start the same
way; production passes its secrets in the environment (``DJANGO_SECRET_KEY``, ``PLD_SIGNING_PASSPHRASE``).
This module imports nothing of Django, so ``scripts/setup`` runs it before any setting is valid:
``python -m pldreview.local_secrets``.
"""
from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# The demo's production-like key (scripts/demo makes it), the development key, the signing identity's passphrase.
SECRET_KEY = "secret_key"
DEV_SECRET_KEY = "dev_secret_key"
SIGNING_PASSPHRASE = "signing/passphrase"
# What scripts/setup makes, with how many random bytes each gets.
MADE_BY_SETUP = {DEV_SECRET_KEY: 50, SIGNING_PASSPHRASE: 32}


def var_dir() -> Path:
    """Return ``PLD_VAR_DIR``, or ``var/`` in the project folder: the same rule as the settings."""
    return Path(os.environ.get("PLD_VAR_DIR") or BASE_DIR / "var")


def secret_read(folder: Path, name: str) -> str:
    """Return the secret kept in ``folder/name``, or an empty string when there is none."""
    path = Path(folder) / name
    return path.read_text().strip() if path.is_file() else ""


def secret_keep(folder: Path, name: str, *, n_bytes: int = 32) -> tuple[str, bool]:
    """Return the secret kept in ``folder/name``, making it (readable by its owner only) when missing.

    Returns the secret and whether this call made it. Two processes racing here keep the first one's secret:
    the file is created exclusively, never overwritten.
    """
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return secret_read(folder, name), False
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(n_bytes) + "\n")
    return secret_read(folder, name), True


def main() -> int:
    """Make what ``scripts/setup`` promises: a development secret key and the signing passphrase."""
    folder = var_dir()
    for name, n_bytes in MADE_BY_SETUP.items():
        _secret, made = secret_keep(folder, name, n_bytes=n_bytes)
        if made:
            print(f"==> Kept a new secret in {folder / name} (readable by you only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
