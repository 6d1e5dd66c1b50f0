"""Security events in plain words: one sentence per ledger entry, for the Auditor's pages.

The ledger keeps the exact JSON; people read a sentence. Every ``security.*`` event the project writes has its
own wording here; one nobody worded yet still reads as its name and its facts, never as raw JSON.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pldreview.accounts.models import AccountChangeKind
from pldreview.models import LedgerEntry

Facts = dict[str, Any]


def _at(facts: Facts) -> str:
    address = facts.get("ip_address")
    return f" from {address}" if address else ""


def _offboard_counts(facts: Facts) -> str:
    if "sessions_ended" not in facts:
        return ""
    return (f"; {facts.get('sessions_ended', 0)} sessions ended, "
            f"{facts.get('api_tokens_revoked', 0)} API tokens revoked")


def _who(facts: Facts) -> str:
    return facts.get("username") or "an unknown account"


def _typed(facts: Facts) -> str:
    # A name that is no account is the attacker's text: quoted, so it never reads as one of ours.
    name = facts.get("username") or ""
    return name if facts.get("known_account", True) else f"“{name}” (no such account)"


def _minute(iso: Any) -> str:
    return str(iso or "?")[:16].replace("T", " ")


def _counts(facts: Facts) -> str:
    counts = facts.get("counts") or {}
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "no events"


def _change(facts: Facts) -> str:
    kind = facts.get("kind", "")
    words = AccountChangeKind(kind).label.lower() if kind in AccountChangeKind.values else kind or "a change"
    params = facts.get("params") or {}
    role = params.get("role") or ", ".join(params.get("roles") or [])
    return f"{words}{' (' + role + ')' if role else ''} for {facts.get('target_username') or 'an account'}"


_SENTENCES: dict[str, Callable[[str, Facts], str]] = {
    "security.login": lambda actor, f: f"{actor} logged in{_at(f)}.",
    "security.logout": lambda actor, f: f"{actor} logged out{_at(f)}.",
    "security.login_failed": lambda actor, f: f"A failed login for {_typed(f)}{_at(f)}.",
    "security.mfa_failed": lambda actor, f: f"A wrong second-factor code for {_typed(f)}{_at(f)}.",
    "security.login_delayed": lambda actor, f: f"Logins for {_typed(f)}{_at(f)} must wait after repeated failures.",
    "security.login_refused": lambda actor, f: f"A login for {_typed(f)}{_at(f)} was refused during its wait.",
    "security.failure_window": lambda actor, f: (
        f"Between {_minute(f.get('opened_at'))} and {_minute(f.get('closed_at'))} UTC, "
        f"{f.get('total', 0)} anonymous events for {_typed(f)}{_at(f)}: {_counts(f)}."
    ),
    "security.sso_failed": lambda actor, f: f"A single sign-on failed or was cancelled{_at(f)}.",
    "security.sso_refused": lambda actor, f: (
        f"The identity provider's {f.get('idp_username') or 'user'} was refused{_at(f)}"
        f" ({f.get('sessions_ended', 0)} open sessions ended)."
    ),
    "security.sso_account_created": lambda actor, f: (
        f"The account {f.get('username', '?')} was created at its first single sign-on{_at(f)}."
    ),
    "security.sso_role_withheld": lambda actor, f: (
        f"The identity provider's groups would have made {f.get('username', '?')} "
        f"{', '.join(f.get('roles') or [])}; withheld (granted here by two Admins only)."
    ),
    "security.lockout": lambda actor, f: f"{_who(f)} was locked after failed logins{_at(f)}.",
    "security.unlock": lambda actor, f: (
        f"{actor} lifted the waits of {f.get('username') or f.get('ip_address') or 'an account'}"
        f" ({f.get('failures_cleared', 0)} failure records cleared)."
    ),
    "security.mfa_enrolled": lambda actor, f: f"{actor} set up a second factor ({f.get('type', '?')}).",
    "security.mfa_removed": lambda actor, f: f"{actor} removed a second factor ({f.get('type', '?')}).",
    "security.mfa_recovery_codes_renewed": lambda actor, f: f"{actor} renewed their recovery codes.",
    "security.mfa_reset": lambda actor, f: f"{actor} reset the second factors of {_who(f)}.",
    "security.password_changed": lambda actor, f: f"{actor} changed their password.",
    "security.password_reset_forced": lambda actor, f: f"{actor} set a temporary password for {_who(f)}.",
    "security.role_granted": lambda actor, f: f"{actor} gave {_who(f)} the role {f.get('role', '?')}.",
    "security.role_revoked": lambda actor, f: f"{actor} took the role {f.get('role', '?')} from {_who(f)}.",
    "security.user_created": lambda actor, f: f"{actor} created the account {_who(f)}.",
    "security.user_activated": lambda actor, f: f"{actor} activated the account {_who(f)}.",
    "security.user_deactivated": lambda actor, f: (
        f"{actor if f.get('source') != 'sso' else 'The identity provider refused'} "
        f"{'deactivated the account ' if f.get('source') != 'sso' else ''}{_who(f)}"
        f"{'; the account was deactivated' if f.get('source') == 'sso' and f.get('was_active') else ''}"
        f"{_offboard_counts(f)}."
    ),
    "security.user_renamed": lambda actor, f: f"{actor} renamed {f.get('old_username', '?')} to {_who(f)}.",
    "security.account_change_requested": lambda actor, f: f"{actor} asked to {_change(f)}.",
    "security.account_change_confirmed": lambda actor, f: f"{actor} confirmed: {_change(f)}.",
    "security.account_change_withdrawn": lambda actor, f: f"{actor} withdrew the request to {_change(f)}.",
    "security.accounts_bootstrapped": lambda actor, f: (
        f"The first accounts were made from the command line by {f.get('os_user', '?')} on {f.get('host', '?')}."
    ),
    "security.signature_failed": lambda actor, f: (
        f"{actor} failed to sign (“{f.get('meaning', '?')}”): {f.get('problem', 'refused')}."
    ),
}


def _generic(event: str, facts: Facts) -> str:
    name = event.removeprefix("security.").replace("_", " ")
    shown = "; ".join(f"{key.replace('_', ' ')}: {value}" for key, value in sorted(facts.items())
                      if isinstance(value, str | int | float | bool) and value != "")
    return f"{name.capitalize()}{' — ' + shown if shown else ''}."


def security_event_sentence(entry: LedgerEntry) -> str:
    """Return one plain sentence saying what a security ledger entry records (its reason, when it has one)."""
    try:
        payload = json.loads(entry.payload)
    except ValueError:
        payload = {}
    facts = payload.get("facts") if isinstance(payload.get("facts"), dict) else {}
    actor = entry.actor_name or "Someone not logged in"
    wording = _SENTENCES.get(entry.event)
    try:
        sentence = wording(actor, facts) if wording else _generic(entry.event, facts)
    except (AttributeError, TypeError):  # facts of an unexpected shape: fall back rather than fail the page
        sentence = _generic(entry.event, facts)
    reason = payload.get("reason") or ""
    return f"{sentence} Reason: {reason}" if reason else sentence
