"""Read settings from the environment, failing loudly on values that do not parse."""
from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    """Return the variable as text, or the default when it is unset."""
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    """Return the variable as a boolean; refuse anything that is not a clear yes or no."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """Return the variable as an integer, at least `minimum` when given."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_float(name: str, default: float) -> float:
    """Return the variable as a float."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None


def env_list(name: str, default: list[str]) -> list[str]:
    """Return a comma-separated variable as a list of non-empty items."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


_ENDPOINT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENDPOINT_KEYS = {"base_url", "model", "api_key_env"}


def env_teacher_endpoints(name: str) -> dict[str, dict[str, str]]:
    """Return the named teacher endpoints in a JSON variable; refuse anything unclear, naming the variable.

    The value is an object: ``{"<name>": {"base_url": "https://…/v1", "model": "…", "api_key_env": "VAR"}}``.
    An empty ``base_url`` means the local teacher the app starts. Keys never appear here, only the name of
    the environment variable that holds one.
    """
    try:
        data = json.loads(os.environ.get(name, ""))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from None
    return teacher_endpoints_checked(name, data)


def teacher_endpoints_checked(name: str, data: Any) -> dict[str, dict[str, str]]:
    """Return teacher endpoints with every field checked and filled in; ``name`` says where they came from."""
    if not isinstance(data, dict) or not data:
        raise ImproperlyConfigured(
            f'{name} must be a JSON object of named endpoints, e.g. {{"local": {{"model": "m"}}}}'
        )
    endpoints: dict[str, dict[str, str]] = {}
    for endpoint_name, spec in data.items():
        where = f"{name}[{endpoint_name!r}]"
        if not _ENDPOINT_NAME.match(endpoint_name):
            raise ImproperlyConfigured(f"{where}: a name is 1-50 lowercase letters, digits, '-' or '_'")
        if not isinstance(spec, dict):
            raise ImproperlyConfigured(f"{where} must be an object with base_url, model and api_key_env")
        unknown = set(spec) - _ENDPOINT_KEYS
        if unknown:
            raise ImproperlyConfigured(
                f"{where}: unknown keys {sorted(unknown)} (allowed: base_url, model, api_key_env; "
                "put a key in an environment variable and name it in api_key_env)"
            )
        if not all(isinstance(value, str) for value in spec.values()):
            raise ImproperlyConfigured(f"{where}: base_url, model and api_key_env are strings")
        base_url = spec.get("base_url", "").strip()
        if base_url:
            parts = urlsplit(base_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ImproperlyConfigured(f"{where}: base_url {base_url!r} is not an http(s) URL")
            if parts.username or parts.password or parts.query or parts.fragment:
                raise ImproperlyConfigured(
                    f"{where}: base_url must carry no credentials, query or fragment; name the key in api_key_env"
                )
        model = spec.get("model", "").strip()
        if not model:
            raise ImproperlyConfigured(f"{where}: model is required")
        key_env = spec.get("api_key_env", "").strip()
        if key_env and not _ENV_NAME.match(key_env):
            raise ImproperlyConfigured(f"{where}: api_key_env {key_env!r} is not an environment variable name")
        endpoints[endpoint_name] = {"base_url": base_url, "model": model, "api_key_env": key_env}
    return endpoints


def env_json_list(name: str, default: list[str]) -> list[str]:
    """Return a variable holding a JSON list of strings (for values that may contain commas, like patterns)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = json.loads(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {raw!r}") from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ImproperlyConfigured(f"{name} must be a JSON list of strings")
    return value


def env_role_pairs(name: str, default: str, *, roles: tuple[str, ...]) -> frozenset[frozenset[str]]:
    """Return pairs of roles written ``A+B,C+D`` as a set of two-role sets; refuse unknown names and lone roles.

    An empty value means no pair is incompatible.
    """
    raw = os.environ.get(name, default)
    pairs: set[frozenset[str]] = set()
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        names = [piece.strip() for piece in item.split("+")]
        if len(names) != 2 or not all(names):
            raise ImproperlyConfigured(f"{name}: {item!r} is not a pair of roles like Reviewer+Admin")
        unknown = [n for n in names if n not in roles]
        if unknown:
            raise ImproperlyConfigured(
                f"{name}: unknown role {unknown[0]!r} in {item!r} (roles: {', '.join(roles)})"
            )
        if names[0] == names[1]:
            raise ImproperlyConfigured(f"{name}: {item!r} pairs a role with itself")
        pairs.add(frozenset(names))
    return frozenset(pairs)


def env_group_roles(name: str, *, roles: tuple[str, ...]) -> dict[str, str]:
    """Return identity-provider groups mapped to roles, written ``group=Role,group=Role``; refuse unknown roles.

    One group maps to one role; several groups may map to the same role. Empty means no group gives a role.
    """
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in os.environ.get(name, "").split(",")):
        if not item:
            continue
        group, sep, role = (piece.strip() for piece in item.rpartition("="))
        if not sep or not group or not role:
            raise ImproperlyConfigured(f"{name}: {item!r} is not group=Role")
        if role not in roles:
            raise ImproperlyConfigured(f"{name}: unknown role {role!r} in {item!r} (roles: {', '.join(roles)})")
        mapping[group] = role
    return mapping
