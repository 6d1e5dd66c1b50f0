"""A real OpenAI-compatible HTTP server on loopback that misbehaves on request.

The real local teacher (llama_cpp.server) cannot produce a 429, a hang, malformed or schema-violating
JSON, or die on cue; this server can. Everything else about the exchange is real HTTP.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.servers import serve_in_thread, server_url


def valid_reply(schema: dict[str, Any]) -> Any:
    """Return a value that satisfies the JSON-schema subset the teacher uses."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {name: valid_reply(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [valid_reply(schema.get("items", {}))] * schema.get("minItems", 0)
    if kind == "integer":
        return 0
    return "the clause states an explicit duty that settles the hypothesis"


class FakeTeacher:
    """Serve /v1/chat/completions following a plan of behaviours, then ``default`` for the rest.

    Behaviours: "ok", "400" (a refusal), "429" (with Retry-After), "500", "hang" (sleeps past the client's timeout),
    "malformed" (not JSON), "invalid" (JSON with blank strings), "die" (drop the connection and stop).
    """

    def __init__(
        self,
        plan: Iterable[str] = (),
        *,
        default: str = "ok",
        retry_after: str = "1",
        hang_seconds: float = 3.0,
        die_after: int | None = None,
        embeddings: bool = False,
        overrides: dict[str, Any] | None = None,
        port: int = 0,
    ) -> None:
        self.plan = list(plan)
        self.default = default
        self.retry_after = retry_after
        self.hang_seconds = hang_seconds
        self.die_after = die_after
        self.embeddings = embeddings
        # Fields forced into every valid reply (e.g. a refine patch of kind "edit").
        self.overrides = overrides or {}
        self.port = port
        self.requests: list[dict[str, Any]] = []
        # The Authorization header of every chat request, or None: which key reached this server.
        self.authorizations: list[str | None] = []
        self.served_ok = 0
        self._lock = threading.Lock()
        self._serving = ExitStack()
        self._server: ThreadingHTTPServer | None = None
        self.alive = False

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake teacher first"
        return server_url(self._server, "/v1")

    def start(self) -> FakeTeacher:
        self._server = self._serving.enter_context(serve_in_thread(self._handler_class(), port=self.port))
        self.port = int(self._server.server_address[1])
        self.alive = True
        return self

    def stop(self) -> None:
        self.alive = False
        self._serving.close()

    def __enter__(self) -> FakeTeacher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_behaviour(self) -> str:
        with self._lock:
            if self.die_after is not None and self.served_ok >= self.die_after:
                return "die"
            behaviour = self.plan.pop(0) if self.plan else self.default
            if behaviour == "ok":
                self.served_ok += 1
            return behaviour

    def _die(self) -> None:
        with self._lock:
            if not self.alive:
                return
            self.alive = False
        # shutdown() blocks until serve_forever returns, so it cannot run on a handler thread's stack.
        assert self._server is not None
        threading.Thread(target=self._server.shutdown, daemon=True).start()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake-teacher", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.endswith("/embeddings"):
                    self._embeddings(body)
                    return
                with fake._lock:
                    fake.requests.append(body)
                    fake.authorizations.append(self.headers.get("Authorization"))
                behaviour = fake._next_behaviour()
                if behaviour == "die":
                    self.close_connection = True
                    self.connection.close()
                    fake._die()
                    return
                if behaviour == "429":
                    self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": fake.retry_after})
                    return
                if behaviour == "500":
                    self._send(500, {"error": {"message": "boom"}})
                    return
                if behaviour == "400":
                    self._send(400, {"error": {"message": "the model refuses this request"}})
                    return
                if behaviour == "hang":
                    time.sleep(fake.hang_seconds)
                schema = body.get("response_format", {}).get("schema") or body.get("response_format", {}).get(
                    "json_schema", {}
                ).get("schema", {})
                if behaviour == "malformed":
                    content = '{"rationale": "cut off'
                elif behaviour == "invalid":
                    content = json.dumps({name: "" for name in schema.get("properties", {})})
                else:
                    content = json.dumps({**valid_reply(schema), **fake.overrides})
                self._send(200, _completion(body.get("model", "fake-teacher"), content))

            def _embeddings(self, body: dict[str, Any]) -> None:
                if not fake.embeddings:
                    self._send(500, {"error": {"message": "Llama model must be created with embedding=True"}})
                    return
                texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                data = [
                    {"object": "embedding", "index": i, "embedding": _bag_of_letters(text)}
                    for i, text in enumerate(texts)
                ]
                self._send(200, {"object": "list", "data": data, "model": body.get("model"),
                                 "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)}})

        return Handler


def _bag_of_letters(text: str) -> list[float]:
    counts = [0.0] * 26
    for char in text.lower():
        if "a" <= char <= "z":
            counts[ord(char) - 97] += 1
    return counts


def _completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
    }


def fake_endpoints(*fakes: tuple[str, FakeTeacher], api_key_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Return the settings that configure named teacher endpoints served by fake teachers (first = default)."""
    keys = api_key_env or {}
    endpoints = {
        name: {"base_url": fake.base_url, "model": "fake-teacher", "api_key_env": keys.get(name, "")}
        for name, fake in fakes
    }
    return {"PLD_TEACHER_ENDPOINTS": endpoints, "PLD_TEACHER_DEFAULT_ENDPOINT": fakes[0][0]}
