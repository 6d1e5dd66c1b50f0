"""The Admin's user management pages and the Auditor's security events page."""
from __future__ import annotations

from datetime import datetime, time

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from pldreview.accounts import services
from pldreview.accounts.forms import SecurityEventFilter, UserActionForm, UserCreateForm
from pldreview.accounts.models import AccountState, FailureCounter
from pldreview.accounts.security_log import security_windows_flush
from pldreview.models import LedgerEntry
from pldreview.roles import ROLES, role_names

SECURITY_PREFIX = "security."
EVENTS_PER_PAGE = 50


@require_GET
@permission_required("accounts.manage_users", raise_exception=True)
def user_list(request: HttpRequest) -> HttpResponse:
    """List every user, active or not, with roles and whether a lockout is in force."""
    users = list(User.objects.order_by("username").prefetch_related("groups"))
    locked = set(FailureCounter.objects.values_list("username", flat=True))
    rows = []
    for u in users:
        held = {group.name for group in u.groups.all()}  # prefetched: one query for all users
        rows.append({"user": u, "roles": [r for r in ROLES if r in held], "has_failures": u.username in locked})
    return render(request, "accounts/user_list.html", {"rows": rows})


@require_http_methods(["GET", "POST"])
@permission_required("accounts.manage_users", raise_exception=True)
def create_user(request: HttpRequest) -> HttpResponse:
    """Create a user with roles; the temporary password is shown once, on the answer to this POST."""
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user, password = services.user_create(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            return render(request, "accounts/temporary_password.html", {"target": user, "password": password})
    return render(request, "accounts/user_create.html", {"form": form})


@require_GET
@permission_required("accounts.manage_users", raise_exception=True)
def user_detail(request: HttpRequest, user_id: int) -> HttpResponse:
    """Show one user's roles, state and recent security events, with the actions an Admin may take."""
    target = get_object_or_404(User, pk=user_id)
    events = _security_events().filter(Q(actor=target) | Q(object_type="auth.user", object_id=str(target.pk)))
    context = {
        "target": target,
        "roles": role_names(target),
        "must_change_password": AccountState.objects.filter(user=target, must_change_password=True).exists(),
        "failures": list(FailureCounter.objects.filter(username=target.username).order_by("key")),
        "has_mfa": target.authenticator_set.exists(),
        "events": events.order_by("-sequence")[:20],
        "form": UserActionForm(),
    }
    return render(request, "accounts/user_detail.html", context)


@require_POST
@permission_required("accounts.manage_users", raise_exception=True)
def change_user(request: HttpRequest, user_id: int) -> HttpResponse:
    """Apply one action to a user, with a reason; a forced reset answers with the temporary password once."""
    target = get_object_or_404(User, pk=user_id)
    form = UserActionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose an action and give a reason.")
        return redirect("pld-user-detail", user_id=target.pk)
    action, role, reason = form.cleaned_data["action"], form.cleaned_data["role"], form.cleaned_data["reason"]
    actor = request.user
    try:
        if action in ("grant", "revoke"):
            if not role:
                raise ValidationError("Choose the role to grant or revoke.")
            (services.role_grant if action == "grant" else services.role_revoke)(
                actor=actor, user=target, role=role, reason=reason
            )
        elif action == "deactivate":
            services.user_deactivate(actor=actor, user=target, reason=reason)
        elif action == "activate":
            services.user_activate(actor=actor, user=target, reason=reason)
        elif action == "unlock":
            services.lockout_clear(actor=actor, user=target, reason=reason)
        elif action == "reset_mfa":
            services.mfa_reset(actor=actor, user=target, reason=reason)
        elif action == "reset_password":
            password = services.password_reset_force(actor=actor, user=target, reason=reason)
            return render(request, "accounts/temporary_password.html", {"target": target, "password": password})
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{dict(UserActionForm.ACTIONS)[action]}: done for {target.username}.")
    return redirect("pld-user-detail", user_id=target.pk)


@require_GET
@permission_required("accounts.view_security_events", raise_exception=True)
def security_events(request: HttpRequest) -> HttpResponse:
    """List the ledger's security events, newest first, filtered by user, event and date."""
    # Windows of anonymous failures that have closed get their closing entry before the Auditor reads.
    security_windows_flush()
    form = SecurityEventFilter(request.GET or None)
    events = _security_events()
    if form.is_valid():
        data = form.cleaned_data
        if data["user"]:
            named = User.objects.filter(username=data["user"]).first()
            match = Q(actor_name=data["user"])
            if named is not None:
                match |= Q(object_type="auth.user", object_id=str(named.pk))
            events = events.filter(match)
        if data["event"]:
            events = events.filter(event__startswith=data["event"])
        if data["since"]:
            events = events.filter(created_at__gte=timezone.make_aware(datetime.combine(data["since"], time.min)))
        if data["until"]:
            events = events.filter(created_at__lte=timezone.make_aware(datetime.combine(data["until"], time.max)))
    page = Paginator(events.order_by("-sequence"), EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "accounts/security_events.html", {"form": form, "page": page, "query": query.urlencode()})


def _security_events():
    return LedgerEntry.objects.filter(event__startswith=SECURITY_PREFIX)


def _add_errors(form: forms.Form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)
