"""django-allauth adapter: accounts are created by an Admin, never by signing up."""
from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.http import HttpRequest


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        """Refuse self-service signup: an Admin creates each account with its role."""
        return False
