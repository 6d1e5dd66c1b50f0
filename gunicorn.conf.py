"""gunicorn settings shared by PLD Review's web processes (scripts/demo; docs/deploy.md explains each).

Bind address, workers and threads stay on the command line: the pages and the API differ there.
"""
# Threads, not the sync worker: a sync worker serves one request per process, so five slow clients stop five
# processes; the threaded worker parks idle connections in its poller and keeps serving. Ours is gunicorn's gthread
# worker closing connections in its threads, not on the loop that accepts (pldreview/gunicorn_worker.py).
worker_class = "pldreview.gunicorn_worker.ThreadWorker"

# A heartbeat, not a request timeout: under gthread the main loop beats while threads wait, so this only restarts
# a worker whose main loop is stuck (loading the model at start may hold it for a while, hence 120 s). Slow request
# bodies are cut by PLD_REQUEST_BODY_SECONDS (pldreview/body_deadline.py) and oversized ones by
# RequestSizeMiddleware before anything reads them.
timeout = 120

# No keep-alive: every response closes its connection. With keep-alive gunicorn drains a body the app left unread
# (a 413) for up to 5 s before reusing the connection, holding a thread per slow client; without it the thread
# only waits up to 2 s for the client to close, and a connection that sends nothing within gunicorn's 5 s wait is
# closed at once. The proxy in front keeps its own keep-alive with browsers (docs/deploy.md).
keepalive = 0

# On a restart, requests in flight get this long to finish.
graceful_timeout = 30

# gunicorn's defaults, stated: a request line over 4094 bytes, more than 100 headers or a header over 8190
# bytes is refused with 400 before Django sees it.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190


def post_worker_init(worker):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """Freeze the loaded application out of the collector's walks (pldreview/heap.py); warn when the threads cannot
    outnumber the calls admitted to wait for the model (production/admission.py)."""
    from django.conf import settings

    from pldreview.heap import heap_freeze

    heap_freeze()

    # PLD_API_MAX_QUEUE + 1 threads may wait for the student; with no thread left over, a refusal, a health check
    # or (PLD_WEB_ROLE=all) a page would queue behind them again.
    if settings.PLD_WEB_ROLE != "pages" and worker.cfg.threads <= settings.PLD_API_MAX_QUEUE + 1:
        worker.log.warning(
            "--threads %s leaves no thread free of the model: use more than PLD_API_MAX_QUEUE + 1 (%s), e.g. %s",
            worker.cfg.threads, settings.PLD_API_MAX_QUEUE + 1, settings.PLD_API_MAX_QUEUE + 4,
        )
