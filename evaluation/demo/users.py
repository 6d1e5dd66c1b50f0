"""Demo step: one user per role and the two fixture tasks (nda-demo, escalation)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TextIO

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from pldreview.accounts.services import BootstrapAccount, accounts_bootstrap, operator
from pldreview.roles import ADMIN, AUDITOR, REVIEWER
from pldreview.signatures import Meaning, e_signing, signature_sign
from rules.datasets.dataset_import import dataset_import, task_define
from rules.datasets.parsers import FieldMap
from rules.membership import membership_content_sha256, task_member_add
from rules.models import DatasetImport, Task, TaskMembership

FIXTURES_DIR = Path(settings.BASE_DIR) / "fixtures"
DEMO_SPLIT_SEED = 0

# Fixed demo logins, printed by the demo command; never used outside a demo database.
DEMO_USERS = [
    ("rita", REVIEWER, "rita-demo-2026"),
    ("ravi", REVIEWER, "ravi-demo-2026"),
    ("aude", AUDITOR, "aude-demo-2026"),
    ("adam", ADMIN, "adam-demo-2026"),
    # The second Admin: a failing gate is only overridden when a different Admin confirms it.
    ("alex", ADMIN, "alex-demo-2026"),
]

# Printed names: electronic signatures show the signer's full name as it was at signing.
DEMO_NAMES = {"rita": ("Rita", "Reyes"), "ravi": ("Ravi", "Rao"), "aude": ("Aude", "Aubert"), "adam": ("Adam", "Adler"),
              "alex": ("Alex", "Amato")}


def demo_password(username: str) -> str:
    """Return a demo user's password, with which the demo steps sign their decisions."""
    return next(password for name, _role, password in DEMO_USERS if name == username)


# (task definition, examples): both are jsonl with an ``id`` column.
DEMO_TASKS = [
    ("nda_demo.task.json", "nda_demo.jsonl"),
    ("escalation.task.json", "escalation.jsonl"),
]


@transaction.atomic
def seed_users_and_tasks(stdout: TextIO) -> None:
    """Create the demo users and import the fixture tasks; a second run changes nothing.

    The users come from the same bootstrap as a real deployment's first Admins (the ledger says who ran it),
    so they carry no privilege cooldown and the demo's two-Admin override works at once.
    """
    existing = set(User.objects.filter(username__in=[name for name, _r, _p in DEMO_USERS]).values_list(
        "username", flat=True
    ))
    missing = [
        BootstrapAccount(username=name, roles=(role,), first_name=DEMO_NAMES[name][0], last_name=DEMO_NAMES[name][1],
                         password=password)
        for name, role, password in DEMO_USERS if name not in existing
    ]
    if missing:
        run_by, host = operator()
        accounts_bootstrap(accounts=missing, reason="Demo users (manage.py seed_demo)", run_by=run_by, host=host,
                           command="seed_demo")
    for username, role, password in DEMO_USERS:
        stdout.write(f"  login {username:<5} role {role:<8} password {password}\n")
    for definition_file, examples_file in DEMO_TASKS:
        definition = json.loads((FIXTURES_DIR / definition_file).read_text())
        task = task_define(definition=definition)
        path = FIXTURES_DIR / examples_file
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        added = 0
        # A second run must not even add an import record for the same file.
        if not DatasetImport.objects.filter(task=task, source_sha256=sha256).exists():
            record = dataset_import(
                task_name=task.name,
                fmt="jsonl",
                path_or_file=path,
                split_seed=DEMO_SPLIT_SEED,
                field_map=FieldMap(id="id"),
            )
            added = record.n_added
        stdout.write(f"  task {task.name}: {task.examples.count()} examples ({added} added by this run)\n")
        _demo_members(task)


def _demo_members(task: Task) -> None:
    """Make the demo's Reviewers and Auditor members of the task (need-to-know), added and signed by the first
    Admin."""
    admin = User.objects.get(username="adam")
    reason = "Demo: works on every demo task"
    for username, role, _password in DEMO_USERS:
        if role == ADMIN or TaskMembership.objects.filter(task=task, user__username=username).exists():
            continue
        member = User.objects.get(username=username)
        with e_signing():
            signature = signature_sign(
                user=admin, password=demo_password(admin.username), meaning=Meaning.TASK_MEMBER_ADDED, reason=reason,
                content_sha256=membership_content_sha256(task=task, user=member, action="add"),
            )
            task_member_add(task=task, user=member, by=admin, reason=reason, signature=signature)
