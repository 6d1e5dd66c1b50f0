"""Signed checkpoints of the ledger head, as the rest of pldreview sees them.

Signing uses the reports' identity, which lives in ``evaluation`` (pldreview never imports it), so
``evaluation`` registers the functions here in its ``AppConfig.ready()``: one signs and stores a
checkpoint of the current head, one reads a checkpoint file back, checking its signature, and one lists
the heads its issued reports were signed at (each signed report is a checkpoint too).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from pldreview.models import LedgerCheckpoint

CheckpointCreate = Callable[..., LedgerCheckpoint]


@dataclass(frozen=True)
class CheckpointStatement:
    """What a checkpoint file states, its signature checked: the ledger had entry #sequence with hash."""

    sequence: int
    hash: str
    created_at: str
    signer: str


CheckpointRead = Callable[[bytes], CheckpointStatement]
# (sequence, hash, where) of every other signed statement of the head, e.g. issued reports' anchors.
SignedHeads = Callable[[], "list[tuple[int, str, str]]"]


class CheckpointError(Exception):
    """A checkpoint could not be made, or a checkpoint file is not one this instance signed."""


_services: dict[str, Any] = {}


def register_checkpoint_service(*, create: CheckpointCreate, read: CheckpointRead,
                                signed_heads: SignedHeads | None = None) -> None:
    """Register how checkpoints are signed and read (``evaluation`` does, at start-up)."""
    _services.update(create=create, read=read, signed_heads=signed_heads)


def _service(name: str) -> Any:
    if name not in _services:
        raise ImproperlyConfigured("No ledger checkpoint service is registered (is the evaluation app installed?)")
    return _services[name]


def ledger_checkpoint_create(*, user: Any = None, reason: str) -> LedgerCheckpoint:
    """Sign and store a checkpoint of the ledger's current head; it is appended as ``ledger.checkpoint``."""
    return _service("create")(user=user, reason=reason)


def ledger_checkpoint_read(data: bytes) -> CheckpointStatement:
    """Return what a checkpoint file states, or raise CheckpointError when its signature is not ours."""
    return _service("read")(data)


def signed_heads() -> list[tuple[int, str, str]]:
    """Return the other signed statements of the head the ledger must still hold (none if unregistered)."""
    heads = _services.get("signed_heads")
    return heads() if heads is not None else []


def checkpoint_path(checkpoint: LedgerCheckpoint) -> Path:
    """Return where a checkpoint's signed file is stored."""
    return Path(settings.MEDIA_ROOT) / checkpoint.file
