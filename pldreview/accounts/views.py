"""The Admin's user management pages and the Auditor's security events page."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from pldreview.accounts import services, sso
from pldreview.accounts.forms import SecurityEventFilter, UserActionForm, UserCreateForm
from pldreview.accounts.lockout import lock_reasons
from pldreview.accounts.models import AccountChangeKind as Kind
from pldreview.accounts.models import AccountChangeRequest, AccountState, FailureCounter
from pldreview.accounts.panels import user_panels
from pldreview.accounts.security_log import security_windows_flush
from pldreview.dates import day_after, day_start
from pldreview.forms import SigningForm
from pldreview.ledger import canonical_json
from pldreview.models import LedgerEntry
from pldreview.roles import ROLES, role_names
from pldreview.signatures import (
    Meaning,
    account_change_content_sha256,
    e_signing,
    passkey_enabled,
    passkey_signing_options,
    signature_sign_from_form,
    signing_context,
    signs_at_identity_provider,
)
from pldreview.web import form_add_service_errors

SECURITY_PREFIX = "security."
EVENTS_PER_PAGE = 50


def _pending_rows(request: HttpRequest, changes: Any) -> list[dict[str, Any]]:
    """Return the pending requests with what the current Admin may do about each (confirm, or why not)."""
    cooldown = services.second_person_refusal(request.user)  # once, not once a row
    return [
        {
            "change": change,
            "refusal": services.account_change_confirm_refusal(change, user=request.user, cooldown=cooldown),
            "may_withdraw": change.target_id != request.user.pk,
            "prefix": f"confirm-{change.pk}",
        }
        for change in changes
    ]


def _list_page(request: HttpRequest, *, status: int = 200, errors: list[str] | None = None) -> HttpResponse:
    users = list(User.objects.order_by("username").prefetch_related("groups"))
    locked = lock_reasons()
    counted = set(FailureCounter.objects.values_list("username", flat=True))
    pending = list(services.pending_account_changes())
    being_created = {c.target_id for c in pending if c.kind == Kind.CREATE}
    rows = []
    for u in users:
        held = {group.name for group in u.groups.all()}  # prefetched: one query for all users
        rows.append({"user": u, "roles": [r for r in ROLES if r in held], "has_failures": u.username in counted,
                     "lock_reasons": locked.get(u.username, []),
                     "being_created": u.pk in being_created})
    context = {
        "rows": rows, "pending": _pending_rows(request, pending), "errors": errors or [],
        "confirm_form": SigningForm(), "cooldown_hours": settings.PLD_PRIVILEGE_COOLDOWN_HOURS,
        **signing_context(request),
    }
    return render(request, "accounts/user_list.html", context, status=status)


@require_GET
@permission_required("accounts.manage_users", raise_exception=True)
def user_list(request: HttpRequest) -> HttpResponse:
    """List every user, active or not, with roles and lockouts, and the account changes waiting for a second Admin."""
    return _list_page(request)


@require_http_methods(["GET", "POST"])
@permission_required("accounts.manage_users", raise_exception=True)
def create_user(request: HttpRequest) -> HttpResponse:
    """Request a new account (a signing): it exists, inactive and without roles, until a second Admin confirms."""
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        params = services.account_change_params(
            kind=Kind.CREATE, username=data["username"], first_name=data["first_name"], last_name=data["last_name"],
            roles=data["roles"],
        )
        try:
            with e_signing():
                signature = signature_sign_from_form(
                    request, data, meaning=Meaning.ACCOUNT_CHANGE_REQUESTED,
                    content_sha256=account_change_content_sha256(
                        change=Kind.CREATE, username=params["username"], params=params
                    ),
                )
                change = services.account_change_request(
                    user=request.user, kind=Kind.CREATE, reason=data["reason"], params=params, signature=signature,
                )
        except PermissionDenied as exc:
            form.add_error(None, str(exc))
        except ValidationError as exc:
            form_add_service_errors(form, exc)
        else:
            messages.success(
                request, f"Requested: {change.summary}. The account stays inactive, without roles, until a "
                "different Admin confirms; the temporary password is shown to that Admin.",
            )
            return redirect("pld-user-list")
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/user_create.html", {"form": form, **signing_context(request)}, status=status)


def _detail_page(
    request: HttpRequest, target: User, *, form: UserActionForm | None = None, status: int = 200
) -> HttpResponse:
    events = _security_events().filter(Q(actor=target) | Q(object_type="auth.user", object_id=str(target.pk)))
    context = {
        "target": target,
        "roles": role_names(target),
        "must_change_password": AccountState.objects.filter(user=target, must_change_password=True).exists(),
        "failures": list(FailureCounter.objects.filter(username=target.username).order_by("key")),
        "has_mfa": target.authenticator_set.exists(),
        "user_panels": user_panels(target),
        "events": events.order_by("-sequence")[:20],
        "form": form or UserActionForm(),
        "own_account": target.pk == request.user.pk,
        "pending": _pending_rows(request, services.pending_account_changes().filter(target=target)),
        "confirm_form": SigningForm(),
        "cooldown_hours": settings.PLD_PRIVILEGE_COOLDOWN_HOURS,
        **signing_context(request),
    }
    return render(request, "accounts/user_detail.html", context, status=status)


@require_GET
@permission_required("accounts.manage_users", raise_exception=True)
def user_detail(request: HttpRequest, user_id: int) -> HttpResponse:
    """Show one user's roles, state, pending changes and recent security events, with the requests an Admin may make."""
    return _detail_page(request, get_object_or_404(User, pk=user_id))


@require_POST
@permission_required("accounts.manage_users", raise_exception=True)
def change_user(request: HttpRequest, user_id: int) -> HttpResponse:
    """Request a change of the user (a signing a second Admin confirms), or deactivate them at once."""
    target = get_object_or_404(User, pk=user_id)
    form = UserActionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose an action and give a reason.")
        return _detail_page(request, target, form=form, status=400)
    data = form.cleaned_data
    action, reason = data["action"], data["reason"]
    if action == "deactivate":
        # Deactivation only removes power, so one Admin does it alone (and at once, as a leaver needs).
        try:
            ended = services.user_deactivate(actor=request.user, user=target, reason=reason)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return _detail_page(request, target, form=form, status=400)
        messages.success(
            request, f"Deactivated {target.username}: {ended['sessions_ended']} sessions ended, "
            f"{ended['api_tokens_revoked']} API tokens revoked.",
        )
        return redirect("pld-user-detail", user_id=target.pk)
    kind = UserActionForm.KINDS[action]
    refusal = services.account_change_request_refusal(user=request.user, kind=kind, target=target)
    if refusal:
        messages.error(request, refusal)
        return _detail_page(request, target, form=form, status=403)
    params = services.account_change_params(kind=kind, role=data["role"])
    try:
        with e_signing():
            signature = signature_sign_from_form(
                request, data, meaning=Meaning.ACCOUNT_CHANGE_REQUESTED,
                content_sha256=account_change_content_sha256(change=kind, username=target.username, params=params),
            )
            change = services.account_change_request(
                user=request.user, kind=kind, target=target, reason=reason, params=params, signature=signature,
            )
    except ValidationError as exc:
        form_add_service_errors(form, exc)
        messages.error(request, " ".join(exc.messages))
        return _detail_page(request, target, form=form, status=400)
    messages.success(request, f"Requested: {change.summary}. It takes effect when a different Admin confirms it.")
    return redirect("pld-user-detail", user_id=target.pk)


def _change_or_404(change_id: int) -> AccountChangeRequest:
    return get_object_or_404(
        AccountChangeRequest.objects.select_related("requested_by", "target"), pk=change_id
    )


@require_POST
@permission_required("accounts.manage_users", raise_exception=True)
def confirm_change(request: HttpRequest, change_id: int) -> HttpResponse:
    """Confirm another Admin's request as the second Admin (a signing); a new or reset password is shown once."""
    change = _change_or_404(change_id)
    refusal = services.account_change_confirm_refusal(change, user=request.user)
    if refusal:
        pending = change.status == AccountChangeRequest.Status.PENDING
        return _list_page(request, status=403 if pending else 400, errors=[refusal])
    form = SigningForm(request.POST)
    form.is_valid()
    try:
        with e_signing():
            signature = signature_sign_from_form(
                request, {**form.cleaned_data, "reason": change.reason},
                meaning=Meaning.ACCOUNT_CHANGE_CONFIRMED, content_sha256=change.content_sha256(),
            )
            result = services.account_change_confirm(change=change, user=request.user, signature=signature)
    except PermissionDenied as exc:
        return _list_page(request, status=403, errors=[str(exc)])
    except ValidationError as exc:
        return _list_page(request, status=400, errors=exc.messages)
    if result.password:
        context = {"target": change.target, "password": result.password, "change": change}
        return render(request, "accounts/temporary_password.html", context)
    messages.success(request, f"Confirmed: {change.summary}. Both Admins are on the record.")
    return redirect("pld-user-detail", user_id=change.target_id)


@require_POST
@permission_required("accounts.manage_users", raise_exception=True)
def withdraw_change(request: HttpRequest, change_id: int) -> HttpResponse:
    """Withdraw a pending request; nothing of it takes effect."""
    change = _change_or_404(change_id)
    try:
        services.account_change_withdraw(change=change, user=request.user)
    except PermissionDenied as exc:
        return _list_page(request, status=403, errors=[str(exc)])
    except ValidationError as exc:
        return _list_page(request, status=400, errors=exc.messages)
    messages.success(request, f"Withdrawn: {change.summary}.")
    return redirect("pld-user-list")


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
            # An account change's ledger object is the request; the account it concerns is in its facts.
            match |= Q(event__startswith="security.account_change_",
                       payload__contains=canonical_json({"target_username": data["user"]})[1:-1])
            events = events.filter(match)
        if data["event"]:
            events = events.filter(event__startswith=data["event"])
        if data["since"]:
            events = events.filter(created_at__gte=day_start(data["since"]))
        if data["until"]:
            events = events.filter(created_at__lt=day_after(data["until"]))
    page = Paginator(events.order_by("-sequence"), EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "accounts/security_events.html", {"form": form, "page": page, "query": query.urlencode()})


def _security_events():
    return LedgerEntry.objects.filter(event__startswith=SECURITY_PREFIX)


@require_http_methods(["GET", "POST"])
def signing_reauthenticate(request: HttpRequest) -> HttpResponse:
    """Send an SSO user to log in again at the identity provider before a signing, then back to ``next``."""
    if not signs_at_identity_provider(request.user):
        raise Http404("Only accounts that sign in through the identity provider sign there.")
    next_url = request.POST.get("next") or request.GET.get("next") or "/"
    if request.method == "POST":
        return sso.signing_reauth_redirect(request, next_url=next_url)
    return render(request, "accounts/signing_reauthenticate.html", {"next": next_url})


@require_POST
def passkey_signing_start(request: HttpRequest) -> JsonResponse:
    """Answer the WebAuthn request options for signing with one of the user's passkeys (a fresh challenge)."""
    if not passkey_enabled(request.user):
        raise Http404("You have no passkey.")
    return JsonResponse(passkey_signing_options(request))
