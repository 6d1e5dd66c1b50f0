"""A stop reaches a running API process that had served the task before it, and calls in flight at the stop are
each either decided and logged or refused 503, never lost or half-logged.

The API runs as scripts/demo runs it (gunicorn.conf.py, one worker, four threads, the bundled student) on a copy
of the test database; the stop and the resume come from another process (``manage.py serving``), as from the
serving page of a second web process. Nothing is shared between them but the database.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from evaluation.production.api_tokens import api_token_create
from tests.support.prompt_versions import in_production
from tests.support.shared_database import shared_database
from tests.support.student import STUDENT_N_CTX

BODY = {"premise": "The Recipient shall not disclose Confidential Information to any third party.",
        "hypothesis": "The receiving party may share confidential information with third parties."}
WHY = "Incident 42: wrong labels on governing-law clauses"
IN_FLIGHT = 8


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _call(port: int, token: str) -> tuple[int, dict[str, Any], str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/tasks/nda-demo/classify", data=json.dumps(BODY).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310 - loopback test server
            return response.status, json.loads(response.read()), response.headers["X-Request-ID"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers["X-Request-ID"]


def _env(database_url: str, var: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), "LANG": "C.UTF-8",
        "DJANGO_SETTINGS_MODULE": "tests.settings", "PLD_VAR_DIR": str(var), "DATABASE_URL": database_url,
        "PLD_STUDENT_N_CTX": str(STUDENT_N_CTX), "PLD_STUDENT_THREADS": "1", "PLD_WEB_ROLE": "api",
        # Every call in flight waits for the model rather than being turned away by admission control
        # (evaluation/production/admission.py): this test is about the stop, so only 200 or serving_stopped may answer.
        "PLD_API_MAX_QUEUE": "8",
    }


@pytest.fixture
def api_server(transactional_db: None, task, admin_user, second_admin, reviewer, second_reviewer,
               tmp_path: Path) -> Iterator[dict[str, Any]]:
    in_production(task, admin=admin_user, reviewer=second_reviewer)
    token = api_token_create(user=reviewer, name="live", created_by=admin_user)[1]
    database_url, read = shared_database(tmp_path)
    env = _env(database_url, tmp_path)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "pldreview.wsgi:application",
         "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4"],
        cwd=Path(settings.BASE_DIR), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"gunicorn did not start: {server.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.2)
        yield {"port": port, "token": token, "env": env, "read": read}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# Django is set up and the command's module imported before "ready" is printed; the command then reads the password
# from stdin and signs, so the action lands within milliseconds of the test writing the password.
_READY_THEN_RUN = (
    "import sys, django; django.setup(); from django.core.management import call_command; "
    "import evaluation.management.commands.serving; print('ready', flush=True); "
    "call_command('serving', *sys.argv[1:])"
)


def _serving_command(env: dict[str, str], action: str, user: str, reason: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", _READY_THEN_RUN, action, "nda-demo", "--user", user, "--reason", reason,
         "--password-stdin"],
        cwd=Path(settings.BASE_DIR), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready", process.stderr
    return process


def _sign(process: subprocess.Popen, password: str) -> str:
    out, err = process.communicate(password + "\n", timeout=120)
    assert process.returncode == 0, err
    return out


def _logged(read: Any, request_id: str) -> int:
    return read(f"SELECT COUNT(*) FROM evaluation_classifycall WHERE request_id = '{request_id.replace('-', '')}' "  # noqa: S608
                f"OR request_id = '{request_id}'")[0][0]


@pytest.mark.slow
def test_a_stop_reaches_a_running_api_process_and_no_call_in_flight_is_lost_or_half_logged(api_server) -> None:
    port, token, env, read = (api_server[k] for k in ("port", "token", "env", "read"))
    # The process serves the task first: it has loaded the model, the task and its production version.
    status, body, warm_id = _call(port, token)
    assert status == 200, body
    assert _logged(read, warm_id) == 1

    stopper = _serving_command(env, "stop", "adam", WHY)
    results: list[tuple[int, dict[str, Any], str]] = []
    first_done = threading.Event()

    def client() -> None:
        outcome = _call(port, token)
        results.append(outcome)
        first_done.set()

    clients = [threading.Thread(target=client) for _ in range(IN_FLIGHT)]
    for thread in clients:
        thread.start()
    # The stop lands while the rest of the eight calls are queued or deciding (the student decides one at a time).
    assert first_done.wait(timeout=300)
    assert "stopped" in _sign(stopper, "pw-adam")
    for thread in clients:
        thread.join(timeout=300)

    assert len(results) == IN_FLIGHT and {status for status, _b, _r in results} <= {200, 503}, results
    for status, body, request_id in results:
        if status == 200:
            assert _logged(read, request_id) == 1, body
        else:
            assert body["code"] == "serving_stopped" and body["request_id"] == request_id, body
            assert body["stop"]["reason"] == WHY and body["stop"]["username"] == "adam"
            assert _logged(read, request_id) == 0, body
    decided = sum(1 for status, _b, _r in results if status == 200)
    assert read("SELECT COUNT(*) FROM evaluation_classifycall")[0][0] == 1 + decided
    assert decided < IN_FLIGHT, "the stop should have landed while calls were still in flight"

    # After the stop the same process refuses, with the stop from the database, whatever it had loaded before.
    status, body, request_id = _call(port, token)
    assert (status, body["code"], body["request_id"]) == (503, "serving_stopped", request_id)
    # A resume from yet another process: the API decides again.
    assert "resumed" in _sign(_serving_command(env, "resume", "alex", "Fixed; 20 calls checked by hand"), "pw-alex")
    status, body, request_id = _call(port, token)
    assert status == 200 and _logged(read, request_id) == 1, body
