"""The auditor's view of the ledger: filter, page through, verify now, and download the export."""
from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from pldreview.ledger_export import ledger_export_lines
from pldreview.ledger_verify import ledger_verify
from pldreview.models import LedgerEntry

PAGE_SIZE = 50


class LedgerFilterForm(forms.Form):
    """What an auditor narrows the ledger to; every field is optional."""

    actor = forms.CharField(required=False, max_length=150, help_text="Username, exactly")
    event = forms.CharField(
        required=False, max_length=60,
        help_text="An event (decision.created) or a prefix ending in a dot (security.)",
        widget=forms.TextInput(attrs={"list": "ledger-events"}),
    )
    object = forms.CharField(
        required=False, max_length=130, help_text="app_label.model, optionally :id — e.g. rules.decision:12"
    )
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"}))

    def filter(self, entries: QuerySet[LedgerEntry]) -> QuerySet[LedgerEntry]:
        """Return the entries that match the cleaned filters."""
        data = self.cleaned_data
        if data.get("actor"):
            entries = entries.filter(actor_name=data["actor"])
        event = data.get("event", "")
        if event.endswith("."):
            entries = entries.filter(event__startswith=event)
        elif event:
            entries = entries.filter(event=event)
        if data.get("object"):
            object_type, _, object_id = data["object"].partition(":")
            entries = entries.filter(object_type=object_type.strip().lower())
            if object_id.strip():
                entries = entries.filter(object_id=object_id.strip())
        if data.get("since"):
            entries = entries.filter(created_at__date__gte=data["since"])
        if data.get("until"):
            entries = entries.filter(created_at__date__lte=data["until"])
        return entries


@require_GET
@login_required
@permission_required("pldreview.view_ledger", raise_exception=True)
def ledger_list(request: HttpRequest) -> HttpResponse:
    """List ledger entries, newest first, filtered; with ``verify=1`` verify the whole ledger first."""
    form = LedgerFilterForm(request.GET or None)
    entries = LedgerEntry.objects.order_by("-sequence").defer("payload")
    if form.is_bound and form.is_valid():
        entries = form.filter(entries)
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("verify", None)
    verdict = ledger_verify() if request.GET.get("verify") else None
    context = {
        "form": form, "page": page, "query": query.urlencode(), "verdict": verdict,
        "events": LedgerEntry.objects.order_by("event").values_list("event", flat=True).distinct(),
    }
    return render(request, "pldreview/ledger_list.html", context)


@require_GET
@login_required
@permission_required("pldreview.view_ledger", raise_exception=True)
def ledger_download(request: HttpRequest) -> StreamingHttpResponse:
    """Stream the whole ledger as JSON Lines, for ``scripts/verify-ledger``."""
    response = StreamingHttpResponse(ledger_export_lines(), content_type="application/x-ndjson; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="pld-ledger-{stamp}.jsonl"'
    return response
