"""``{% sso_configured as on %}``: whether any identity provider is configured (settings), asked before listing them.

allauth's ``get_providers`` reads the database for each provider's app; with none configured the login page then
needs no query at all, so it answers even before the database is reachable or migrated.
"""
from __future__ import annotations

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def sso_configured() -> bool:
    """Return True when settings configure an OpenID Connect or SAML identity provider."""
    return any(provider.get("APPS") for provider in settings.SOCIALACCOUNT_PROVIDERS.values())
