"""The auditor's view of the ledger: filter, page through, verify now, and download the export."""
from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from pldreview.forms import LedgerFilterForm
from pldreview.ledger_export import ledger_export_lines
from pldreview.ledger_verify import ledger_verify
from pldreview.models import LedgerEntry

PAGE_SIZE = 50


@require_GET
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
@permission_required("pldreview.view_ledger", raise_exception=True)
def ledger_download(request: HttpRequest) -> StreamingHttpResponse:
    """Stream the whole ledger as JSON Lines, for ``scripts/verify-ledger``."""
    response = StreamingHttpResponse(ledger_export_lines(), content_type="application/x-ndjson; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="pld-ledger-{stamp}.jsonl"'
    return response
