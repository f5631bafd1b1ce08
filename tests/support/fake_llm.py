"""A scriptable OpenAI-compatible server on 127.0.0.1 that records what it was sent.

Built on ``http.server`` so tests control the wire: status codes, Retry-After, delays, garbage,
fenced JSON, truncated streams and connection resets. Answers follow a script (a queue of
``Step``s); when the script is empty, ``default`` answers with a valid review.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CODE_START = "<<<CODE\n"
CODE_END = "\nCODE>>>"


@dataclass
class Step:
    """One scripted answer."""

    content: str | None = None
    """Assistant content for a 200 answer (None: use the default responder)."""
    status: int = 200
    body: Any = None
    """Raw JSON body for non-200 answers (default: an OpenAI error object)."""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reset: bool = False
    """Close the connection abruptly (TCP RST) instead of answering."""
    raw: bytes | None = None
    """Bytes to send as the whole 200 body (garbage that is not JSON)."""
    finish_reason: str = "stop"


@dataclass
class Recorded:
    """A request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: Any

    @property
    def user_text(self) -> str:
        """The last user message's text."""
        users = [m for m in self.body.get("messages", []) if m.get("role") == "user"]
        content = users[-1].get("content", "") if users else ""
        return content if isinstance(content, str) else json.dumps(content)

    @property
    def code(self) -> str | None:
        """The code between the review prompt's markers, if any."""
        text = self.user_text
        start = text.find(CODE_START)
        end = text.rfind(CODE_END)
        if start < 0 or end < start:
            return None
        return text[start + len(CODE_START) : end]


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def digest(text: str) -> str:
    """A short fingerprint the default answer carries, so tests can see what the model saw."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def default_review(request: Recorded) -> str:
    """Answer with a valid review that names the fingerprint of the code it received."""
    code = request.code if request.code is not None else request.user_text
    return json.dumps(
        {
            "suggestions": [
                {
                    "category": "readability",
                    "message": f"Model reviewed code {digest(code)} from {request.path}.",
                }
            ]
        }
    )


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # a burst of 50 connections must not overflow a backlog of 5


class FakeLLM:
    """The server. Use as a context manager; ``base_url`` ends with /v1."""

    def __init__(self, models: tuple[str, ...] = ("fake-model",)) -> None:
        self.models = models
        self.requests: list[Recorded] = []
        self.script: list[Step] = []
        self.default: Callable[[Recorded], str] = default_review
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        """Most chat requests being answered at the same time (to check concurrency bounds)."""
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *steps: Step) -> None:
        """Queue answers for the next requests, in order."""
        with self._lock:
            self.script.extend(steps)

    def chat_requests(self) -> list[Recorded]:
        """The chat completion requests received so far."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def reset(self) -> None:
        """Forget requests, script and the concurrency high-water mark."""
        with self._lock:
            self.requests.clear()
            self.script.clear()
            self.max_in_flight = 0

    def __enter__(self) -> FakeLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next_step(self) -> Step:
        with self._lock:
            return self.script.pop(0) if self.script else Step()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # small answers must not wait for a delayed ACK

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send_json(self, status: int, body: Any, headers: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                with fake._lock:
                    fake.requests.append(Recorded("GET", self.path, _lower(self.headers), None))
                if self.path.rstrip("/").endswith("/models"):
                    data = [{"id": m, "object": "model", "owned_by": "fake"} for m in fake.models]
                    self._send_json(200, {"object": "list", "data": data}, {})
                else:
                    self._send_json(404, {"error": {"message": "not found"}}, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"_raw": raw.decode(errors="replace")}
                request = Recorded("POST", self.path, _lower(self.headers), body)
                with fake._lock:
                    fake.requests.append(request)
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    self._answer(request, body)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _answer(self, request: Recorded, body: Any) -> None:
                step = fake._next_step()
                wait = step.delay or fake.delay
                if wait:
                    time.sleep(wait)
                if step.reset:
                    # SO_LINGER 0 makes close() send RST: the client sees a connection reset.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.connection.close()
                    self.close_connection = True
                    return
                if step.status != 200:
                    error = step.body or {
                        "error": {"message": f"scripted {step.status}", "type": "scripted"}
                    }
                    self._send_json(step.status, error, step.headers)
                    return
                if step.raw is not None:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(step.raw)))
                    self.end_headers()
                    self.wfile.write(step.raw)
                    return
                content = step.content if step.content is not None else fake.default(request)
                model = str(body.get("model", "fake-model"))
                if body.get("stream"):
                    self._stream(content, model, step)
                    return
                completion = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": step.finish_reason,
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }
                self._send_json(200, completion, step.headers)

            def _stream(self, content: str, model: str, step: Step) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                base = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                }
                pieces = [content[i : i + 8] for i in range(0, len(content), 8)] or [""]
                for index, piece in enumerate(pieces):
                    delta: dict[str, Any] = {"content": piece}
                    if index == 0:
                        delta["role"] = "assistant"
                    chunk = {
                        **base,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                    }
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                end = {
                    **base,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": step.finish_reason}],
                }
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()

        return Handler
