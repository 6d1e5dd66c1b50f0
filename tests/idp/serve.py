"""Run the test identity provider: ``python -m tests.idp.serve PORT CLIENT_ID SECRET REDIRECT_URI``.

Migrates its own SQLite file (IDP_DB), registers one confidential client for the authorization-code flow, and
serves on 127.0.0.1:PORT until killed. IDP_KEY names the PEM file of its RS256 key.
"""
from __future__ import annotations

import os
import sys


def main() -> None:
    """Prepare the provider's database and serve it."""
    port, client_id, secret, redirect_uri = sys.argv[1:5]
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.idp.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from oauth2_provider.models import get_application_model

    call_command("migrate", verbosity=0, interactive=False)
    Application = get_application_model()
    Application.objects.update_or_create(
        client_id=client_id,
        defaults={
            "name": "PLD Review (tests)",
            "client_secret": secret,
            "client_type": Application.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
            "algorithm": Application.RS256_ALGORITHM,
            "redirect_uris": redirect_uri,
            "skip_authorization": True,
        },
    )
    call_command("runserver", f"127.0.0.1:{port}", use_reloader=False, use_threading=True, skip_checks=True)


if __name__ == "__main__":
    main()
