"""Slow clients against a real gunicorn on loopback, started as scripts/demo starts it (gunicorn.conf.py).

A client that declares a large body is answered 413 before anything reads it, and one that trickles a small
body is cut off after PLD_REQUEST_BODY_SECONDS; meanwhile /login/ keeps answering. Bounded: five sockets,
a few seconds each, 127.0.0.1 only.
"""
from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

BODY_SECONDS = 3
THREADS = 4
SLOW_SOCKETS = 5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get_login(port: int, *, timeout: float) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return int(conn.recv(64).split(b" ")[1])


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = _free_port()
    var = tmp_path_factory.mktemp("gunicorn-var")
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), "LANG": "C.UTF-8",
        "DJANGO_SETTINGS_MODULE": "tests.settings", "PLD_VAR_DIR": str(var),
        "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}", "PLD_REQUEST_BODY_SECONDS": str(BODY_SECONDS),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "pldreview.wsgi:application",
         "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", str(THREADS)],
        cwd=Path(settings.BASE_DIR), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get_login(port, timeout=5) == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()  # its stderr ends only when it does: reading a live server's would wait for ever
                raise AssertionError(f"gunicorn did not start: {server.communicate()[1].decode()[-2000:]}")
            time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _open_slow_post(port: int, length: int) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(
        b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode() + b"l"
    )
    return conn


def _trickle_until_answered(
    conns: list[socket.socket], *, within: float, seen: dict[socket.socket, float] | None = None
) -> dict[socket.socket, bytes]:
    """Send one byte every half second on each socket until each has an answer; return the answers."""
    answers: dict[socket.socket, bytes] = {}
    seen = {} if seen is None else seen
    deadline = time.monotonic() + within
    while len(answers) < len(conns) and time.monotonic() < deadline:
        readable, _, _ = select.select([c for c in conns if c not in answers], [], [], 0.5)
        for conn in readable:
            answers[conn] = conn.recv(4096)
            seen[conn] = time.monotonic()
        for conn in conns:
            if conn not in answers:
                try:
                    conn.send(b"x")
                except OSError:
                    answers[conn] = b""
    return answers


def _closed_within(conn: socket.socket, seconds: float) -> bool:
    conn.settimeout(seconds)
    try:
        while conn.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        pass
    return True


def test_five_sockets_declaring_60_mb_are_answered_413_and_login_still_answers(gunicorn) -> None:
    started = time.monotonic()
    conns = [_open_slow_post(gunicorn, 60_000_000) for _ in range(SLOW_SOCKETS)]
    try:
        seen: dict[socket.socket, float] = {}
        answers = _trickle_until_answered(conns, within=10, seen=seen)
        assert len(answers) == SLOW_SOCKETS
        assert all(answer.startswith(b"HTTP/1.1 413") for answer in answers.values()), answers
        delays = sorted(at - started for at in seen.values())
        # A thread per socket answers at once; the fifth waits for a thread, freed once its client has had 2 s
        # to close (gunicorn's graceful close; no keep-alive, so no drain of the unread body).
        assert delays[THREADS - 1] < 2 and delays[-1] < 5, delays
        # With the five still open (and their bodies unsent), another client is served.
        assert _get_login(gunicorn, timeout=10) == 200
        assert all(_closed_within(conn, 5) for conn in conns)
    finally:
        for conn in conns:
            conn.close()


def test_five_sockets_trickling_a_small_body_are_cut_off_and_login_still_answers(gunicorn) -> None:
    started = time.monotonic()
    conns = [_open_slow_post(gunicorn, 1000) for _ in range(SLOW_SOCKETS)]
    try:
        # One byte every half second would take 500 s for 1,000 bytes; each is answered after BODY_SECONDS.
        answers = _trickle_until_answered(conns, within=BODY_SECONDS * 3 + 5)
        assert len(answers) == SLOW_SOCKETS, f"{len(answers)} of {SLOW_SOCKETS} answered"
        assert all(answer.startswith(b"HTTP/1.1 4") for answer in answers.values()), answers
        assert _get_login(gunicorn, timeout=10) == 200
        assert time.monotonic() - started < BODY_SECONDS * 3 + 10
    finally:
        for conn in conns:
            conn.close()
