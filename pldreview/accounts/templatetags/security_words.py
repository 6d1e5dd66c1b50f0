"""``{{ entry|security_sentence }}``: a security ledger entry in plain words (pldreview.accounts.security_words)."""
from __future__ import annotations

from django import template

from pldreview.accounts.security_words import security_event_sentence
from pldreview.models import LedgerEntry

register = template.Library()


@register.filter
def security_sentence(entry: LedgerEntry) -> str:
    """Return the entry's plain sentence."""
    return security_event_sentence(entry)
