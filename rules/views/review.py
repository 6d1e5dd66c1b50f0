"""The review workspace: the queue, the rule page and its decisions, history, rule sets and the review log."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import push_url

from pldreview.models import Signature
from pldreview.signatures import (
    Meaning,
    e_signing,
    rule_content_sha256,
    ruleset_order_content_sha256,
    signature_sign_from_form,
    signing_context,
)
from pldreview.web import HtmxHttpRequest, form_add_service_errors
from rules.forms import ApproveForm, EditForm, ProposalDecisionForm, RejectForm, ReorderProposalForm, RuleCreateForm
from rules.membership import visible
from rules.models import Decision, Example, Rule, RuleRevision, RuleSetReorderProposal, Task
from rules.panels import queue_figures, rule_panels
from rules.review import services
from rules.review.diffs import fields_diff
from rules.review.discussion import rule_comment_add
from rules.review.evidence import excerpts, highlight
from rules.review.queries import (
    QueueFilters,
    queue_counts,
    queue_leftovers,
    queue_neighbours,
    queue_topics,
    review_queue,
    waiting_for,
)
from rules.review.review_log import review_log_csv, review_log_json
from rules.review.search import search_rules
from rules.review.similar import rules_closest_to, similar_rules
from rules.views.shortcuts import task_object_or_404, task_or_404

QUEUE_PAGE_SIZE = 25
SEARCH_SHOWN = 50
EVIDENCE_PAGE_SIZE = 10
FAILURES_SHOWN = 10
_FLASH_KEY = "pld_review_flash"


# --- helpers -------------------------------------------------------------------------------------


def _rule_or_404(rule_id: int, user: Any) -> Rule:
    """Return the rule with what its page shows if the user may see its task, or 404."""
    rules = Rule.objects.select_related(
        "task", "proposed_by", "current_revision", "current_revision__author", "refines"
    ).annotate(n_micro_rules=Count("micro_rules", distinct=True))
    return task_object_or_404(rules, user=user, pk=rule_id)


def _with_query(url: str, filters: QueueFilters) -> str:
    query = filters.as_query()
    return f"{url}?{query}" if query else url


def _decision_flash(decision: Decision) -> str:
    rule = decision.rule
    if decision.action == Decision.Action.APPROVE:
        if rule.status == Rule.Status.APPROVED:
            return f"Approved rule {rule.pk}; it is now in the {rule.task.name} rule set."
        review = services.rule_review(rule)
        return (
            f"Approval recorded for rule {rule.pk} ({len(review.approvals)} of {review.required}); "
            "it waits for another reviewer."
        )
    if decision.action == Decision.Action.EDIT:
        return f"Saved revision {decision.revision.number} of rule {rule.pk}; another reviewer must approve it."
    if decision.action == Decision.Action.REJECT:
        return f"Rejected rule {rule.pk}."
    if decision.action == Decision.Action.UNDO:
        return f"Undone: rule {rule.pk} is {rule.get_status_display().lower()} again."
    return f"{decision.get_action_display()} rule {rule.pk}."


def _flash_from_session(request: HtmxHttpRequest) -> dict[str, Any] | None:
    data = request.session.pop(_FLASH_KEY, None)
    if not data:
        return None
    decision = Decision.objects.select_related("rule").filter(pk=data.get("decision_id")).first()
    undoable = services.decision_undoable(decision, user=request.user)
    return {"text": data.get("text", ""), "decision": decision if undoable else None}


def _workspace_context(
    request: HtmxHttpRequest, rule: Rule, filters: QueueFilters, *, forms: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return everything the rule page shows, in a constant number of queries."""
    task = rule.task
    review = services.rule_review(rule)
    previous, following = queue_neighbours(rule, filters, user=request.user)
    examples = rule.examples.order_by("id")
    paginator = Paginator(examples, EVIDENCE_PAGE_SIZE)
    evidence_page = paginator.get_page(request.GET.get("evidence_page"))
    context_field = task.shared_context_field or "premise"
    evidence = [_example_view(ex, rule, context_field) for ex in evidence_page.object_list]
    failures = []
    proposal = rule.proposal or {}
    if rule.origin == Rule.Origin.REFINE:
        ids = [i for i in proposal.get("failure_example_ids", []) if isinstance(i, int)][:FAILURES_SHOWN]
        by_id = {ex.pk: ex for ex in Example.objects.filter(pk__in=ids)}
        failures = [_example_view(by_id[i], rule, context_field) for i in ids if i in by_id]
    recent = list(
        Decision.objects.filter(rule=rule).select_related("reviewer", "revision", "signature")
        .order_by("-created_at", "-id")[:5]
    )
    lock = rule.lock_version
    forms = forms or {}
    initial_edit = {
        "text": rule.text, "label": rule.label, "topic": rule.topic,
        "precedence_note": rule.precedence_note, "lock_version": lock,
    }
    return {
        "rule": rule,
        "task": task,
        "filters": filters,
        "filter_items": filters.as_items(),
        "queue_url": _with_query(reverse("pld-review-queue"), filters),
        "previous_url": _with_query(previous.get_absolute_url(), filters) if previous else "",
        "next_url": _with_query(following.get_absolute_url(), filters) if following else "",
        "approvals": review.approvals,
        "required_approvals": review.required,
        "approve_refusal": review.refusal(request.user),
        "nobody_may_approve": review.nobody_may_approve(),
        "similar": similar_rules(rule),
        "evidence": evidence,
        "evidence_page": evidence_page,
        "context_field": context_field,
        "failures": failures,
        "n_failures": len(proposal.get("failure_example_ids", []) or []),
        "proposal": proposal,
        "flips": proposal.get("flips") or {},
        "dev_rows": _dev_rows(proposal),
        "recent_decisions": recent,
        "label_balance": sorted((rule.label_balance or {}).items(), key=lambda kv: -_as_int(kv[1])),
        "approve_form": forms.get("approve") or ApproveForm(initial={"lock_version": lock}),
        "edit_form": forms.get("edit") or EditForm(initial=initial_edit, task=task),
        "reject_form": forms.get("reject") or RejectForm(initial={"lock_version": lock}),
        "open_form": forms.get("open", ""),
        **signing_context(request),
        "undo_window": settings.PLD_UNDO_WINDOW_SECONDS,
        "rule_panels": rule_panels(rule, request.user),
        "comments": list(rule.comments.select_related("author")),
    }


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _example_view(example: Example, rule: Rule, context_field: str) -> dict[str, Any]:
    inputs = example.inputs or {}
    context = str(inputs.get(context_field, ""))
    others = [(name, str(value)) for name, value in inputs.items() if name != context_field]
    return {
        "example": example,
        "agrees": example.gold_label == rule.label,
        "context": excerpts(context, example.evidence),
        "full_context": highlight(context, example.evidence) if len(context) > 1500 else None,
        "has_evidence": bool(example.evidence),
        "others": others,
    }


def _dev_rows(proposal: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    before, after = proposal.get("dev_before") or {}, proposal.get("dev_after") or {}
    if not isinstance(before, dict) or not isinstance(after, dict):
        return []
    keys = list(dict.fromkeys([*before.keys(), *after.keys()]))
    return [(key, before.get(key), after.get(key)) for key in keys]


def _render_workspace(
    request: HtmxHttpRequest, rule: Rule, filters: QueueFilters, *, flash: dict[str, Any] | None = None,
    stale: services.StaleRuleError | None = None, forms: dict[str, Any] | None = None, status: int = 200,
) -> HttpResponse:
    context = _workspace_context(request, rule, filters, forms=forms)
    context["flash"] = flash
    if stale is not None:
        context["stale"] = {
            "message": stale.messages[0],
            "changes": stale.changes,
            "diff": fields_diff(stale.seen, rule),
            "status_before": stale.seen.get("status", ""),
        }
    if request.htmx:
        response = render(request, "rules/rule_detail.html#workspace", context)
        return push_url(response, _with_query(rule.get_absolute_url(), filters))
    return render(request, "rules/rule_detail.html", context, status=status)


def _empty_workspace(request: HtmxHttpRequest, filters: QueueFilters, flash: dict[str, Any] | None) -> HttpResponse:
    context = {
        "flash": flash,
        "filters": filters,
        "queue_url": _with_query(reverse("pld-review-queue"), filters),
        "undo_window": settings.PLD_UNDO_WINDOW_SECONDS,
        "leftovers": queue_leftovers(filters, request.user),
    }
    response = render(request, "rules/rule_detail.html#nothing-left", context)
    return push_url(response, context["queue_url"])


def _sign_typed_rule(request: HtmxHttpRequest, data: dict[str, Any], *, meaning: Meaning) -> Signature:
    """Sign the rule's text, label, topic and precedence note as typed in the form (an edit or a hand-written rule)."""
    content = rule_content_sha256(
        text=data["text"].strip(), label=data["label"], topic=data["topic"].strip(),
        precedence_note=data["precedence_note"].strip(),
    )
    return signature_sign_from_form(request, data, meaning=meaning, content_sha256=content)


def _after_decision(request: HtmxHttpRequest, decision: Decision, filters: QueueFilters) -> HttpResponse:
    """Advance to the next rule of the queue, with a flash that offers to undo the decision."""
    rule = decision.rule
    text = _decision_flash(decision)
    _, following = queue_neighbours(rule, filters, user=request.user)
    if not request.htmx:
        request.session[_FLASH_KEY] = {"text": text, "decision_id": decision.pk}
        if following is None:
            return redirect(_with_query(reverse("pld-review-queue"), filters))
        return redirect(_with_query(following.get_absolute_url(), filters))
    flash = {"text": text, "decision": decision}
    if following is None:
        return _empty_workspace(request, filters, flash)
    return _render_workspace(request, _rule_or_404(following.pk, request.user), filters, flash=flash)


# --- pages ---------------------------------------------------------------------------------------


# Approve and reject sign the rule as it stands; an edit signs the text typed into the form.
_VERDICTS = {
    "approve": (Meaning.APPROVED, services.rule_approve),
    "reject": (Meaning.REJECTED, services.rule_reject),
}


@require_POST
@permission_required("rules.review_rule", raise_exception=True)
def decide_rule(request: HtmxHttpRequest, rule_id: int, kind: str) -> HttpResponse:
    """Approve, edit or reject the rule (``kind``, set by its URL pattern); answer with the next rule or the errors."""
    rule = _rule_or_404(rule_id, request.user)
    filters = QueueFilters.from_query(request.POST, prefix="q_")
    form_class = {"approve": ApproveForm, "edit": EditForm, "reject": RejectForm}[kind]
    kwargs = {"task": rule.task} if kind == "edit" else {}
    form = form_class(request.POST, **kwargs)
    if form.is_valid():
        data = form.cleaned_data
        try:
            with e_signing():
                if kind in _VERDICTS:
                    meaning, decide = _VERDICTS[kind]
                    signature = signature_sign_from_form(
                        request, data, meaning=meaning, content_sha256=services.rule_signed_content(rule)
                    )
                    decision = decide(
                        rule=rule, user=request.user, lock_version=data["lock_version"], reason=data["reason"],
                        signature=signature,
                    )
                else:
                    signature = _sign_typed_rule(request, data, meaning=Meaning.EDITED)
                    decision = services.rule_edit(
                        rule=rule, user=request.user, lock_version=data["lock_version"], reason=data["reason"],
                        text=data["text"], label=data["label"], topic=data["topic"],
                        precedence_note=data["precedence_note"], signature=signature,
                    )
        except services.StaleRuleError as exc:
            fresh = _rule_or_404(rule_id, request.user)
            return _render_workspace(request, fresh, filters, stale=exc, status=409)
        except ValidationError as exc:
            form_add_service_errors(form, exc)
        else:
            return _after_decision(request, decision, filters)
    return _render_workspace(request, rule, filters, forms={kind: form, "open": kind}, status=400)


@require_GET
@permission_required("rules.view_rule", raise_exception=True)
def review_queue_page(request: HtmxHttpRequest) -> HttpResponse:
    """Show the filtered, paginated queue of rules with the status counts."""
    filters = QueueFilters.from_query(request.GET)
    page = Paginator(review_queue(filters, user=request.user), QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = list(page.object_list)
    tasks = list(Task.objects.visible_to(request.user).order_by("name"))
    selected = next((t for t in tasks if t.name == filters.task), None)
    labels = selected.label_names if selected else sorted({n for t in tasks for n in t.label_names})
    context = {
        "page": page,
        "filters": filters,
        "counts": queue_counts(filters, user=request.user),
        "figure_titles": queue_figures(page.object_list),
        "tasks": tasks,
        "selected_task": selected,
        "labels": labels,
        "topics": queue_topics(filters, user=request.user),
        "origins": Rule.Origin.choices,
        "statuses": Rule.Status.choices,
        "query": filters.as_query(),
        "required_approvals": services.required_approvals(),
        "overturn_approvals": max(services.required_approvals(), services.OVERTURN_MIN_APPROVALS),
        "flash": _flash_from_session(request) if _FLASH_KEY in request.session else None,
        "undo_window": settings.PLD_UNDO_WINDOW_SECONDS,
        # A sentence that matches no rule word for word is ranked by meaning instead.
        "closest": (
            rules_closest_to(filters.q, task=selected, among=visible(Rule.objects.all(), request.user))
            if filters.q and not page.object_list else []
        ),
    }
    if request.htmx and request.htmx.target == "queue-results":
        return render(request, "rules/review_queue.html#queue-results", context)
    return render(request, "rules/review_queue.html", context)


@require_GET
@permission_required("rules.review_rule", raise_exception=True)
def waiting_for_me(request: HtmxHttpRequest) -> HttpResponse:
    """List the pending rules whose current revision the user may decide: not theirs, not yet approved by them."""
    rules = (
        waiting_for(request.user)
        .select_related("task", "proposed_by", "current_revision", "current_revision__author")
        .order_by("current_revision__created_at", "id")
    )
    page = Paginator(rules, QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "rules/waiting_for_me.html", {"page": page})


@require_GET
@permission_required("rules.review_rule", raise_exception=True)
def waiting_badge(request: HtmxHttpRequest) -> HttpResponse:
    """Answer the navigation badge with how many revisions wait for the user, and how many are new since the
    count the page last showed (``known``, sent back by the poll)."""
    n_waiting = waiting_for(request.user).count()
    known = request.GET.get("known", "")
    n_new = n_waiting - int(known) if known.isdigit() and n_waiting > int(known) else 0
    return render(request, "rules/waiting_badge.html", {"n_waiting": n_waiting, "n_new": n_new})


@require_GET
@permission_required("rules.view_rule", raise_exception=True)
def rule_detail(request: HtmxHttpRequest, rule_id: int) -> HttpResponse:
    """Show a rule with its evidence and, for reviewers, the decision forms."""
    rule = _rule_or_404(rule_id, request.user)
    filters = QueueFilters.from_query(request.GET)
    flash = _flash_from_session(request) if _FLASH_KEY in request.session else None
    return _render_workspace(request, rule, filters, flash=flash)


@require_POST
@permission_required("rules.review_rule", raise_exception=True)
def undo_decision(request: HtmxHttpRequest, decision_id: int) -> HttpResponse:
    """Undo the reviewer's own last decision and show the rule again."""
    decision = task_object_or_404(Decision.objects.select_related("rule"), user=request.user, task_path="rule__task",
                                  pk=decision_id)
    if decision.reviewer_id != request.user.pk:
        raise PermissionDenied("Only the reviewer who made a decision can undo it.")
    filters = QueueFilters.from_query(request.POST, prefix="q_")
    try:
        undo = services.decision_undo(decision=decision, user=request.user)
    except ValidationError as exc:
        rule = _rule_or_404(decision.rule_id, request.user)
        flash = {"text": " ".join(exc.messages), "error": True}
        if not request.htmx:
            request.session[_FLASH_KEY] = {"text": flash["text"], "decision_id": None}
            return redirect(_with_query(rule.get_absolute_url(), filters))
        return _render_workspace(request, rule, filters, flash=flash)
    text = _decision_flash(undo)
    if not request.htmx:
        request.session[_FLASH_KEY] = {"text": text, "decision_id": None}
        return redirect(_with_query(undo.rule.get_absolute_url(), filters))
    return _render_workspace(request, _rule_or_404(undo.rule_id, request.user), filters, flash={"text": text})


@require_POST
@permission_required("rules.review_rule", raise_exception=True)
def add_comment(request: HtmxHttpRequest, rule_id: int) -> HttpResponse:
    """Add a comment to the rule's discussion; htmx gets the discussion back, a plain form the rule page."""
    rule = task_object_or_404(Rule, user=request.user, pk=rule_id)
    error = ""
    try:
        rule_comment_add(rule=rule, user=request.user, text=request.POST.get("text", ""))
    except ValidationError as exc:
        error = " ".join(exc.messages)
    if request.htmx:
        context = {"rule": rule, "comments": list(rule.comments.select_related("author")), "comment_error": error,
                   "comment_text": request.POST.get("text", "") if error else ""}
        return render(request, "rules/rule_discussion.html", context, status=400 if error else 200)
    if error:
        request.session[_FLASH_KEY] = {"text": f"Comment not added: {error}", "decision_id": None}
    return redirect(f"{rule.get_absolute_url()}#discussion")


@require_GET
@permission_required("rules.view_rule", raise_exception=True)
def rule_history(request: HtmxHttpRequest, rule_id: int) -> HttpResponse:
    """Show every decision, revision and audit record of a rule, and a diff of two revisions."""
    rule = _rule_or_404(rule_id, request.user)
    revisions = list(RuleRevision.objects.filter(rule=rule).select_related("author").order_by("number"))
    by_number = {r.number: r for r in revisions}
    latest = revisions[-1].number if revisions else 1
    b = _as_int(request.GET.get("b")) or latest
    a = _as_int(request.GET.get("a")) or max(1, b - 1)
    if a not in by_number or b not in by_number:
        raise Http404("No such revision")
    decisions = list(
        Decision.objects.filter(rule=rule)
        .select_related("reviewer", "revision", "undoes", "signature")
        .prefetch_related("undone_by")
        .order_by("created_at", "id")
    )
    records = _one_row_per_event(
        list(rule.history.select_related("history_user").order_by("-history_date", "-history_id"))
    )
    context = {
        "rule": rule,
        "task": rule.task,
        "revisions": revisions,
        "decisions": decisions,
        "records": records,
        "comments": list(rule.comments.select_related("author")),
        "a": by_number[a],
        "b": by_number[b],
        "diff": fields_diff(by_number[a], by_number[b]),
        "signed_actions": list(Decision.SIGNED_ACTIONS),
    }
    if request.htmx and request.htmx.target == "revision-diff":
        return render(request, "rules/rule_history.html#revision-diff", context)
    return render(request, "rules/rule_history.html", context)


PROPOSALS_SHOWN = 5


def _proposal_view(proposal: RuleSetReorderProposal, rules_by_id: dict[int, Rule], user: Any) -> dict[str, Any]:
    """Return a proposal with its order spelled out: each rule's number now and proposed."""
    now = {pk: number for number, pk in enumerate(proposal.base_order, start=1)}
    rows = [
        {"number": number, "was": now.get(pk), "rule": rules_by_id.get(pk), "pk": pk}
        for number, pk in enumerate(proposal.order, start=1)
    ]
    return {
        "proposal": proposal,
        "rows": rows,
        "approvals": list(proposal.approvals.all()),
        "refusal": services.ruleset_reorder_approve_refusal(proposal, user=user),
    }


def _one_row_per_event(records: list[Any]) -> list[Any]:
    """Drop the record that only links a new rule to its first revision: it is part of the creation shown below it."""
    kept = []
    for newer, older in zip(records, [*records[1:], None], strict=True):
        links_first_revision = (
            older is not None and older.history_type == "+" and newer.history_type == "~"
            and older.current_revision_id is None and newer.current_revision_id is not None
            and newer.history_user_id == older.history_user_id
            and (newer.status, newer.position, newer.text) == (older.status, older.position, older.text)
        )
        if not links_first_revision:
            kept.append(newer)
    return kept


def _ruleset_context(
    task: Task, user: Any, *, form: ReorderProposalForm | None = None, query: str = ""
) -> dict[str, Any]:
    rules = services.ruleset_rules(task)
    form = form or ReorderProposalForm(rule_ids=[r.pk for r in rules])
    groups: list[dict[str, Any]] = []
    for number, rule in enumerate(rules, start=1):
        key = (rule.topic, rule.label)
        if not groups or groups[-1]["key"] != key:
            groups.append({"key": key, "topic": rule.topic, "label": rule.label, "rules": []})
        field = form[f"number_{rule.pk}"] if f"number_{rule.pk}" in form.fields else None
        groups[-1]["rules"].append({"number": number, "rule": rule, "field": field})
    summary: dict[tuple[str, str], int] = {}
    for rule in rules:
        key = (rule.topic or "(no topic)", rule.label)
        summary[key] = summary.get(key, 0) + 1
    by_status = Rule.objects.filter(task=task).values("status").annotate(n=Count("id"))
    counts = {row["status"]: row["n"] for row in by_status}
    pending = list(
        RuleSetReorderProposal.objects.filter(task=task, status=RuleSetReorderProposal.Status.PENDING)
        .select_related("proposed_by").prefetch_related("approvals__reviewer").order_by("created_at", "id")
    )
    decided = list(
        RuleSetReorderProposal.objects.filter(task=task).exclude(status=RuleSetReorderProposal.Status.PENDING)
        .select_related("proposed_by", "decided_by").prefetch_related("approvals__reviewer")
        .order_by("-decided_at", "-id")[:PROPOSALS_SHOWN]
    )
    ids = {pk for p in [*pending, *decided] for pk in p.order}
    rules_by_id = {r.pk: r for r in rules} | {r.pk: r for r in Rule.objects.filter(pk__in=ids - {r.pk for r in rules})}
    return {
        "task": task,
        "groups": groups,
        "n_rules": len(rules),
        "summary": sorted(summary.items()),
        "counts": counts,
        "scattered": len(groups) > len({g["key"] for g in groups}),
        "required_approvals": services.required_approvals(),
        "pending_proposals": [_proposal_view(p, rules_by_id, user) for p in pending],
        "decided_proposals": [_proposal_view(p, rules_by_id, user) for p in decided],
        "propose_form": form,
        "decision_form": ProposalDecisionForm(),
        "q": query,
        "matches": list(search_rules(task, query).select_related("task")[:SEARCH_SHOWN]) if query else [],
    }


@require_GET
@permission_required("rules.view_rule", raise_exception=True)
def ruleset_page(request: HtmxHttpRequest, task_name: str) -> HttpResponse:
    """Show a task's approved rules in compile order, and the order proposals waiting for a second reviewer."""
    task = task_or_404(task_name, user=request.user)
    query = request.GET.get("q", "").strip()[:200]
    context = _ruleset_context(task, request.user, query=query) | signing_context(request)
    context["flash"] = request.session.pop(_FLASH_KEY, None) if _FLASH_KEY in request.session else None
    return render(request, "rules/ruleset.html", context)


def _ruleset_answer(
    request: HtmxHttpRequest, task: Task, *, flash: str = "", error: str = "", form: ReorderProposalForm | None = None,
    decide: dict[str, Any] | None = None,
) -> HttpResponse:
    """Answer a rule-set action: the list fragment for htmx, else a redirect (or the page with the error).

    ``decide`` keeps what a reviewer typed into a proposal's approve or reject form when it was refused.
    """
    if request.htmx:
        context = _ruleset_context(task, request.user, form=form) | signing_context(request) | {
            "error": error, "flash": {"text": flash}, "decide": decide or {},
        }
        return render(request, "rules/ruleset.html#ruleset-list", context, status=400 if error else 200)
    if error:
        context = _ruleset_context(task, request.user, form=form) | signing_context(request) | {
            "error": error, "decide": decide or {},
        }
        return render(request, "rules/ruleset.html", context, status=400)
    request.session[_FLASH_KEY] = {"text": flash}
    return redirect(reverse("pld-ruleset", args=[task.name]))


@require_POST
@permission_required("rules.reorder_ruleset", raise_exception=True)
def reorder_ruleset(request: HtmxHttpRequest, task_name: str) -> HttpResponse:
    """Propose a new order of the rule set from the numbers typed for its rules."""
    task = task_or_404(task_name, user=request.user)
    form = ReorderProposalForm(request.POST, rule_ids=[r.pk for r in services.ruleset_rules(task)])
    if not form.is_valid():
        return _ruleset_answer(request, task, form=form, error="Give every rule a number and say why.")
    try:
        order = services.ruleset_order_from_numbers(task, form.numbers())
        with e_signing():
            signature = signature_sign_from_form(
                request, form.cleaned_data, meaning=Meaning.REORDER_PROPOSED,
                content_sha256=ruleset_order_content_sha256(task_id=task.pk, order=order),
            )
            proposal = services.ruleset_reorder_propose(
                task=task, user=request.user, order=order, reason=form.cleaned_data["reason"], signature=signature,
            )
    except ValidationError as exc:
        return _ruleset_answer(request, task, form=form, error=" ".join(exc.messages))
    return _ruleset_answer(
        request, task,
        flash=f"Order proposal {proposal.pk} recorded; it takes effect once another reviewer approves it.",
    )


@require_POST
@permission_required("rules.reorder_ruleset", raise_exception=True)
def decide_reorder_proposal(request: HtmxHttpRequest, rule_set_reorder_proposal_id: int, kind: str) -> HttpResponse:
    """Approve (enough approvals apply it) or reject an order proposal (``kind``, set by its URL pattern)."""
    proposals = RuleSetReorderProposal.objects.select_related("task")
    proposal = task_object_or_404(proposals, user=request.user, pk=rule_set_reorder_proposal_id)
    form = ProposalDecisionForm(request.POST)
    data = form.cleaned_data if form.is_valid() else {}
    reason = data.get("reason", "")
    content = ruleset_order_content_sha256(task_id=proposal.task_id, order=proposal.order)
    try:
        with e_signing():
            if kind == "approve":
                signature = signature_sign_from_form(
                    request, data, meaning=Meaning.REORDERED, content_sha256=content
                )
                proposal = services.ruleset_reorder_approve(
                    proposal=proposal, user=request.user, reason=reason, signature=signature
                )
            else:
                if not reason.strip():
                    raise ValidationError({"reason": "Say why you reject this order."})
                signature = signature_sign_from_form(
                    request, data, meaning=Meaning.REORDER_REJECTED, content_sha256=content
                )
                proposal = services.ruleset_reorder_reject(
                    proposal=proposal, user=request.user, reason=reason, signature=signature
                )
    except ValidationError as exc:
        return _ruleset_answer(
            request, proposal.task, error=f"Order proposal {proposal.pk}: " + " ".join(exc.messages),
            decide={"proposal": proposal.pk, "kind": kind, "reason": reason},
        )
    if proposal.status == RuleSetReorderProposal.Status.APPROVED:
        flash = f"Order proposal {proposal.pk} approved: the rule set now follows it."
    elif proposal.status == RuleSetReorderProposal.Status.REJECTED:
        flash = f"Order proposal {proposal.pk} rejected; the order stays as it was."
    else:
        flash = f"Approval recorded for order proposal {proposal.pk}; it waits for another reviewer."
    return _ruleset_answer(request, proposal.task, flash=flash)


EXAMPLES_FOUND = 20


def _find_examples(task: Task, query: str) -> list[Example]:
    """Return the task's examples whose number is the query or whose text contains it."""
    query = query.strip()
    if not query:
        return []
    examples = Example.objects.filter(task=task)
    if query.isdigit():
        return list(examples.filter(pk=int(query)))
    return list(examples.filter(inputs__icontains=query).order_by("id")[:EXAMPLES_FOUND])


@require_http_methods(["GET", "POST"])
@permission_required("rules.add_rule", raise_exception=True)
def rule_create(request: HtmxHttpRequest) -> HttpResponse:
    """Show and handle the form for a hand-written rule: choose the task, write the rule, cite examples."""
    tasks = list(Task.objects.visible_to(request.user).order_by("name"))
    wanted = request.GET.get("task") or request.POST.get("task") or ""
    selected = next((t for t in tasks if t.name == wanted), tasks[0] if len(tasks) == 1 else None)
    if selected is None:
        return render(request, "rules/rule_create.html", {"tasks": tasks})
    find = (request.POST.get("find") or "").strip()[:200]
    found: list[Example] = []
    if request.method == "POST":
        form = RuleCreateForm(request.POST, task=selected)
        if request.POST.get("action") == "find":
            # Searching keeps what was typed; nothing is saved until "Save the rule".
            found = _find_examples(selected, find)
        elif form.is_valid():
            data = form.cleaned_data
            try:
                with e_signing():
                    signature = _sign_typed_rule(request, data, meaning=Meaning.WRITTEN)
                    rule = services.rule_create(
                        task=selected, user=request.user, text=data["text"], label=data["label"],
                        topic=data["topic"], precedence_note=data["precedence_note"], reason=data["reason"],
                        examples=data["examples"], signature=signature,
                    )
            except ValidationError as exc:
                form_add_service_errors(form, exc)
            else:
                request.session[_FLASH_KEY] = {
                    "text": f"Rule {rule.pk} written. Another reviewer must approve it before it joins the rule set.",
                    "decision_id": None,
                }
                return redirect(rule)
    else:
        form = RuleCreateForm(initial={"task": selected.name}, task=selected)
    chosen_ids = [i for i in map(_as_int, request.POST.getlist("examples")) if i]
    chosen = list(Example.objects.filter(task=selected, pk__in=chosen_ids).order_by("id"))
    shown = chosen + [ex for ex in found if ex.pk not in set(chosen_ids)]
    context = {
        "form": form, "selected_task": selected, "tasks": tasks, "find": find,
        "searched": request.POST.get("action") == "find",
        "examples_shown": [(ex, ex.pk in chosen_ids) for ex in shown],
        **signing_context(request),
    }
    return render(request, "rules/rule_create.html", context, status=400 if form.errors else 200)


@require_GET
@permission_required("rules.view_rule", raise_exception=True)
def review_log_page(request: HtmxHttpRequest, task_name: str) -> HttpResponse:
    """Show a task's review log: its decisions, newest first, narrowed to the rules a search finds."""
    task = task_or_404(task_name, user=request.user)
    query = request.GET.get("q", "").strip()[:200]
    decisions = Decision.objects.filter(rule__task=task).select_related("rule", "reviewer", "revision")
    if query:
        decisions = decisions.filter(rule__in=search_rules(task, query).values("pk"))
    page = Paginator(decisions.order_by("-created_at", "-id"), QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "rules/review_log.html", {"task": task, "q": query, "page": page})


@require_GET
@permission_required("rules.export_review_log", raise_exception=True)
def export_review_log(request: HtmxHttpRequest, task_name: str, fmt: str) -> HttpResponse:
    """Download a task's review log as CSV or JSON."""
    task = task_or_404(task_name, user=request.user)
    if fmt == "csv":
        response = HttpResponse(review_log_csv(task=task), content_type="text/csv; charset=utf-8")
    elif fmt == "json":
        response = HttpResponse(review_log_json(task=task), content_type="application/json")
    else:
        raise Http404("Export as csv or json")
    # The file keeps the name it had before issue 26, so downloads made before and after the rename sort together.
    response["Content-Disposition"] = f'attachment; filename="{task.name}-review-log.{fmt}"'
    return response


# The review log's addresses before issue 26 (".../decisions/", ".../decision-log.csv"): bookmarks and auditors'
# scripts keep working. Each checks what its new address checks before saying where it went, so a redirect never
# tells an outsider that a task exists.

@require_GET
@permission_required("rules.view_rule", raise_exception=True)
def review_log_page_moved(request: HtmxHttpRequest, task_name: str) -> HttpResponse:
    """Send the old review log address to the new one, permanently, with its query string."""
    task = task_or_404(task_name, user=request.user)
    query = request.META.get("QUERY_STRING", "")
    return redirect(reverse("pld-review-log", args=[task.name]) + (f"?{query}" if query else ""), permanent=True)


@require_GET
@permission_required("rules.export_review_log", raise_exception=True)
def export_review_log_moved(request: HtmxHttpRequest, task_name: str, fmt: str) -> HttpResponse:
    """Send the old export address to the new one, permanently."""
    task = task_or_404(task_name, user=request.user)
    return redirect(reverse("pld-review-log-export", args=[task.name, fmt]), permanent=True)
