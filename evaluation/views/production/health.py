"""Health checks for load balancers and the demo's start: /healthz (alive) and /readyz (able to serve).

Both answer without a login and say nothing an anonymous caller should not learn: no task names, no paths
beyond the model file's name, no database address (the causes go to the server's log).
"""
from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from evaluation.production.admission import readiness_check


@never_cache
@require_safe
@login_not_required  # probed by load balancers; answers only whether this process is alive
def healthz(request: HttpRequest) -> HttpResponse:
    """Answer 200 while this process serves requests at all: no database, no model."""
    return JsonResponse({"alive": True})


@never_cache
@require_safe
@login_not_required  # probed by load balancers and scripts/demo; the reason names no path or address
def readyz(request: HttpRequest) -> HttpResponse:
    """Answer 200 when this process can serve (model usable, prefixes held, database reachable), else 503 and why."""
    ready, body = readiness_check()
    response = JsonResponse(body, status=200 if ready else 503)
    if not ready and body.get("reason") == "starting":
        response["Retry-After"] = "2"
    return response
