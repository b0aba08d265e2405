"""A small OpenAI-compatible chat-completions server running a local model with the transformers
backend, on a loopback port: for tests and offline demos of the ``openai`` backend.

``transformers serve`` (5.23) cannot stand in: for a video it loads the clip's audio too, which
needs torchcodec and FFmpeg, it reads no ``data:`` URLs, and it ignores ``n``. This server
implements the part of the contract the backend uses: ``POST /v1/chat/completions`` with an
optional system message and a user message holding one ``video_url`` (an MP4 ``data:`` URL or a
``file://`` URL; none: a text-only request, as a long video's merge) and the prompt text;
``n``, ``max_tokens``, ``min_tokens``, ``temperature``, ``top_p``, ``top_k``,
``repetition_penalty``, ``stop`` and ``seed``. Videos are decoded with
dj_ops' PyAV decoder and sampled as a Qwen-VL server would (2 frames per second, at most 32, at
most 448x448 pixels), which keeps clips the client already sampled within those bounds whole.
:class:`Faults` injects failures for tests.

Command line: ``python -m dj_ops.testing.openai_server --model DIR --port 8000``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlparse

from aiohttp import web

from dj_ops.backends.base import BackendConfig, CaptionRequest, CaptionResult
from dj_ops.captioning.generation import parse_sampling_params
from dj_ops.testing.loopback_app import LoopbackApp
from dj_ops.video import FrameSettings, VideoError, decode_video

SAMPLING_FIELDS = ("max_tokens", "min_tokens", "temperature", "top_p", "top_k",
                   "repetition_penalty", "stop")
SERVER_FPS = 2.0
MAX_FRAMES = 32
MAX_PIXELS = 448 * 448
DATA_URL_PREFIX = "data:video/mp4;base64,"
HOLD_TIMEOUT_S = 60.0  # longest hold of Faults.hold_first


@dataclass(frozen=True)
class Faults:
    """Failures to inject.

    :param fail_first: answer HTTP ``fail_status`` to the first this many requests.
    :param fail_status: the status of those answers.
    :param ignore_n: answer one choice whatever ``n`` asks (as ``transformers serve`` does).
    :param hang: never answer (until the server stops).
    :param delay_s: wait this long before answering each request (a slow engine).
    :param hold_first: hold the first this many requests until that many are in flight at once
        (at most ``HOLD_TIMEOUT_S``): whether a client keeps that many in flight shows
        whatever the machine's speed.
    """

    fail_first: int = 0
    fail_status: int = 500
    ignore_n: bool = False
    hang: bool = False
    delay_s: float = 0.0
    hold_first: int = 0


def completion_body(model: str, result: CaptionResult) -> dict:
    """A chat-completions answer holding ``result``'s candidates as choices."""
    choices = [
        {"index": i, "message": {"role": "assistant", "content": c.text},
         "finish_reason": "length" if c.hit_token_limit else "stop"}
        for i, c in enumerate(result.candidates)
    ]
    completion_tokens = sum(c.num_tokens for c in result.candidates)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
        "created": int(time.time()), "model": model, "choices": choices,
        "usage": {"prompt_tokens": 0, "completion_tokens": completion_tokens,
                  "total_tokens": completion_tokens},
    }


def read_messages(messages: list[dict]) -> tuple[str | None, str | None, str]:
    """``(system prompt, video URL or None, prompt)`` of an OpenAI ``messages`` list."""
    system, video_url, texts = None, None, []
    for message in messages:
        content = message["content"]
        if message["role"] == "system":
            system = content if isinstance(content, str) else content[0]["text"]
            continue
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            if part["type"] == "video_url":
                video_url = part["video_url"]["url"]
            elif part["type"] == "text":
                texts.append(part["text"])
    return system, video_url, "".join(texts)


def decode_url(url: str, size_factor: int):
    """Decode the video of an MP4 data URL or a file URL, sampled as the server samples."""
    settings = FrameSettings(fps=SERVER_FPS, min_frames=2, max_frames=MAX_FRAMES,
                             min_pixels=size_factor**2, max_pixels=MAX_PIXELS,
                             size_factor=size_factor)
    if url.startswith("file://"):
        return decode_video(unquote(urlparse(url).path), settings)
    if not url.startswith(DATA_URL_PREFIX):
        raise ValueError(f"video_url must be a file:// or {DATA_URL_PREFIX} URL")
    with tempfile.NamedTemporaryFile(suffix=".mp4") as file:
        file.write(base64.b64decode(url[len(DATA_URL_PREFIX):]))
        file.flush()
        return decode_video(file.name, settings)


class CompletionServer(LoopbackApp):
    """The server, run by an event loop in a background thread (a context manager).

    :param model: local checkpoint folder served under any model name.
    :param api_key: when set, requests must carry ``Authorization: Bearer <api_key>``.
    :param faults: failures to inject.
    :param max_model_len: the context length ``/v1/models`` advertises, as vLLM's server does
        (None: the listing does not say).
    """

    def __init__(self, model: str, *, host: str = "127.0.0.1", port: int = 0,
                 api_key: str | None = None, faults: Faults = Faults(),
                 max_model_len: int | None = None):
        super().__init__(host, port)
        self.model = model
        self.max_model_len = max_model_len
        self.api_key, self.faults = api_key, faults
        self.received: list[dict] = []  # every request body, in arrival order
        self.in_flight = self.max_in_flight = 0  # requests being answered (now, at most)
        self._backends: dict[tuple[str, int], object] = {}
        self._pool = ThreadPoolExecutor(max_workers=1)  # one generate at a time
        self._closing: asyncio.Event | None = None

    def stop(self) -> None:
        super().stop()
        self._pool.shutdown(wait=True)

    async def _open(self, app: web.Application) -> None:
        self._closing = asyncio.Event()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_get("/v1/models", self._models)

    async def _stopping(self) -> None:
        self._closing.set()  # a hanging answer ends now

    async def _models(self, request: web.Request) -> web.Response:
        """The model listing, with ``max_model_len`` when set (vLLM's field)."""
        entry = {"id": self.model, "object": "model", "owned_by": "dj_ops"}
        if self.max_model_len is not None:
            entry["max_model_len"] = self.max_model_len
        return web.json_response({"object": "list", "data": [entry]})

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(await request.json(), request.headers)
        finally:
            self.in_flight -= 1

    async def _answer(self, payload: dict, headers) -> web.Response:
        self.received.append(payload)
        if self.api_key and headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid API key")
        if len(self.received) <= self.faults.fail_first:
            return _error(self.faults.fail_status, "injected failure")
        if self.faults.hang:
            await self._closing.wait()
            return _error(503, "shutting down")
        await asyncio.sleep(self.faults.delay_s)
        if len(self.received) <= self.faults.hold_first:
            deadline = time.monotonic() + HOLD_TIMEOUT_S
            while self.in_flight < self.faults.hold_first and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        try:
            body = await loop.run_in_executor(self._pool, self._complete, payload)
        except (KeyError, TypeError, ValueError, VideoError) as error:
            return _error(400, f"{type(error).__name__}: {error}")
        return web.json_response(body)

    def _complete(self, payload: dict) -> dict:
        """Run the model on one request body (in the worker thread)."""
        n = 1 if self.faults.ignore_n else int(payload.get("n", 1))
        sampling = {k: payload[k] for k in SAMPLING_FIELDS if payload.get(k) is not None}
        backend = self._backend(parse_sampling_params(sampling, n), n, payload.get("seed"))
        system, url, prompt = read_messages(payload["messages"])
        if url is None:  # text only
            request = CaptionRequest(None, {}, prompt, system)
        else:
            video = decode_url(url, backend.size_factor or FrameSettings().size_factor)
            request = CaptionRequest(video.frames, video.transformers_metadata(), prompt, system)
        result = backend.generate([request])[0]
        if not result.ok:
            raise ValueError(f"{result.error_kind}: {result.error_message}")
        return completion_body(payload.get("model", self.model), result)

    def _backend(self, settings, n: int, seed: int | None):
        """A transformers backend per generation setting, reseeded per request."""
        from dj_ops.backends.transformers_backend import TransformersBackend

        key = (settings.to_json(), n)
        if key not in self._backends:
            config = BackendConfig(model=self.model, settings=settings, num_candidates=n)
            self._backends[key] = TransformersBackend(config)
        backend = self._backends[key]
        backend.config = replace(backend.config, seed=seed)
        return backend


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "code": status}}, status=status)


def main(argv: list[str] | None = None) -> None:
    """Command line: serve ``--model`` on ``--host:--port`` until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="local checkpoint folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key-env", help="environment variable holding the required key")
    args = parser.parse_args(argv)
    api_key = os.environ[args.api_key_env] if args.api_key_env else None
    server = CompletionServer(args.model, host=args.host, port=args.port, api_key=api_key)
    with server:
        print(f"serving {args.model} at {server.url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
