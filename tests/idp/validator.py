"""The provider's claims: name, e-mail (verified unless the user is in "email-unverified") and groups."""
from __future__ import annotations

from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator

UNVERIFIED = "email-unverified"


class GroupsValidator(OAuth2Validator):
    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "groups": "profile", "preferred_username": "profile"}

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        """Return the claims of the user the token is for."""
        user = request.user
        groups = sorted(user.groups.values_list("name", flat=True))
        return {
            "preferred_username": user.username,
            "name": f"{user.first_name} {user.last_name}".strip(),
            "given_name": user.first_name,
            "family_name": user.last_name,
            "email": user.email,
            "email_verified": UNVERIFIED not in groups,
            "groups": [g for g in groups if g != UNVERIFIED],
        }
