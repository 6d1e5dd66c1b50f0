"""A real OpenID Connect provider for the SSO tests: django-oauth-toolkit in OIDC mode, in its own process.

``tests/idp/serve.py`` runs it on 127.0.0.1 with its own settings and SQLite file; ``tests/support/idp.py`` starts
it as a subprocess for a test session. Nothing of PLD Review is imported here: the app under test reaches it over
HTTP only, as it would reach an organisation's identity provider.
"""
