"""Test settings: production settings with a fixed key, no HTTPS redirect, plain static storage."""
from __future__ import annotations

import os
import tempfile

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-not-a-secret-" + "x" * 40)
os.environ.setdefault("PLD_SSL_REDIRECT", "0")
os.environ.setdefault("PLD_SECURE_COOKIES", "0")
os.environ.setdefault("PLD_HSTS_SECONDS", "0")
# Tests log in with force_login; the tests of the second factor turn it on for themselves.
os.environ.setdefault("PLD_MFA_REQUIRED", "0")
os.environ.setdefault("PLD_VAR_DIR", tempfile.mkdtemp(prefix="pld-test-var-"))

from pldreview import local_secrets  # noqa: E402

# What scripts/setup does for a checkout: the settings only read the signing passphrase kept there.
local_secrets.secret_keep(local_secrets.var_dir(), local_secrets.SIGNING_PASSPHRASE)

from pldreview.settings import *  # noqa: E402,F403
from pldreview.settings import INSTALLED_APPS, STORAGES  # noqa: E402

ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
# Tests never run collectstatic; an existing (empty) root keeps whitenoise from warning on every request.
STATIC_ROOT = tempfile.mkdtemp(prefix="pld-test-static-")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins for persona fixtures
# Registers the job handlers the job tests start (tests/pldreview/handlers.py).
INSTALLED_APPS = [*INSTALLED_APPS, "tests.pldreview.apps.JobTestsConfig"]
