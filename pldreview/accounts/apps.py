from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "pldreview.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # Security events come from django.contrib.auth, allauth and axes signals: the only hooks they offer.
        from pldreview.accounts import handlers  # noqa: F401
