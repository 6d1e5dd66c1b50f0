"""allauth's SAML provider, keeping when the person authenticated (the assertion's ``AuthnInstant``).

A signing by an SAML account asks the identity provider to authenticate the person again (``ForceAuthn``); the
instant it says it did is how ``pldreview.accounts.sso.signing_reauth_complete`` tells a new login from an old
session. allauth keeps only the attributes, so this subclass adds the instant to them (``AUTHN_INSTANT``).
"""
from __future__ import annotations

from typing import Any

from allauth.socialaccount.providers.saml.provider import SAMLProvider
from lxml import etree

AUTHN_INSTANT = "pld:authn_instant"
_ASSERTION_NS = "urn:oasis:names:tc:SAML:2.0:assertion"


class PldSAMLProvider(SAMLProvider):
    # The URLs, templates and views stay allauth's.
    package = "allauth.socialaccount.providers.saml"

    def extract_extra_data(self, data: Any) -> dict[str, Any]:
        """Return the assertion's attributes and its AuthnStatement's AuthnInstant (as a one-item list)."""
        attributes = dict(data.get_attributes())
        xml = data.get_last_response_xml()
        if xml:
            # The response was already verified by python3-saml (signature, audience, destination, time).
            parser = etree.XMLParser(resolve_entities=False, no_network=True)
            root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml, parser=parser)
            statement = root.find(f".//{{{_ASSERTION_NS}}}AuthnStatement")
            if statement is not None and statement.get("AuthnInstant"):
                attributes[AUTHN_INSTANT] = [statement.get("AuthnInstant")]
        return attributes
