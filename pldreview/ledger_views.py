"""The auditor's view of the ledger: filter, page through, verify now, download the export and checkpoints."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.functional import cached_property
from django.views.decorators.http import require_GET, require_POST

from pldreview.checkpoints import CheckpointError, checkpoint_path, ledger_checkpoint_create
from pldreview.forms import LedgerFilterForm
from pldreview.ledger import ledger_event_names, ledger_head
from pldreview.ledger_export import ledger_export_lines
from pldreview.ledger_verify import ledger_verify
from pldreview.models import LedgerCheckpoint, LedgerEntry

PAGE_SIZE = 50
CHECKPOINTS_SHOWN = 10
# A filtered page counts its matches up to here and pages back this far: at a million entries (a busy API writes
# one per decision) an exact count read every match on each page. Narrower filters or dates reach older entries.
COUNT_LIMIT = 10_000


class _LedgerPaginator(Paginator):
    """A Paginator told its count (``total``) instead of counting: the count is known for less."""

    def __init__(self, *args: object, total: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._total = total

    @cached_property
    def count(self) -> int:
        """Return the number of entries given."""
        return self._total


@require_GET
@permission_required("pldreview.view_ledger", raise_exception=True)
def ledger_list(request: HttpRequest) -> HttpResponse:
    """List ledger entries, newest first, filtered; with ``verify=1`` verify the whole ledger first."""
    form = LedgerFilterForm(request.GET or None)
    entries = LedgerEntry.objects.order_by("-sequence").defer("payload")
    filtered = form.is_bound and form.is_valid() and any(form.cleaned_data.values())
    if filtered:
        entries = form.filter(entries)
    # Unfiltered, the count is the head's sequence number (the chain runs 1..head without a gap, as
    # ledger_verify checks), not a read of every entry. Filtered, it stops at COUNT_LIMIT.
    total = entries.order_by()[:COUNT_LIMIT + 1].count() if filtered else ledger_head()[0]
    beyond = filtered and total > COUNT_LIMIT
    page = _LedgerPaginator(entries, PAGE_SIZE, total=COUNT_LIMIT if beyond else total).get_page(
        request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("verify", None)
    verdict = ledger_verify() if request.GET.get("verify") else None
    context = {
        "form": form, "page": page, "query": query.urlencode(), "verdict": verdict,
        "beyond": beyond, "count_limit": COUNT_LIMIT,
        "events": ledger_event_names(),
        "checkpoints": LedgerCheckpoint.objects.select_related("created_by").order_by("-sequence", "-id")[
            :CHECKPOINTS_SHOWN],
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


@require_POST
@permission_required("pldreview.view_ledger", raise_exception=True)
def ledger_checkpoint_make(request: HttpRequest) -> HttpResponse:
    """Sign a checkpoint of the ledger head now (Auditors and Admins), then show the ledger page."""
    try:
        checkpoint = ledger_checkpoint_create(user=request.user, reason="Made on the ledger page")
    except CheckpointError as exc:
        messages.error(request, f"No checkpoint was made: {exc}")
    else:
        messages.success(request, f"Checkpoint of entry #{checkpoint.sequence} signed; download it below and keep it.")
    return redirect("pld-ledger")


@require_GET
@permission_required("pldreview.view_ledger", raise_exception=True)
def ledger_checkpoint_download(request: HttpRequest, checkpoint_id: int) -> FileResponse:
    """Send a checkpoint's signed PDF."""
    checkpoint = get_object_or_404(LedgerCheckpoint, pk=checkpoint_id)
    path = checkpoint_path(checkpoint)
    if not path.is_file():
        raise Http404("The checkpoint's file is missing from storage.")
    return FileResponse(path.open("rb"), as_attachment=True, filename=checkpoint.file_name,
                        content_type="application/pdf")
