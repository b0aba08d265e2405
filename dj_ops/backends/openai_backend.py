"""OpenAI-compatible HTTP backend: ``vllm serve``, SGLang, hosted APIs.

Every video is one chat-completions request asking for ``n=caption_num`` choices, sent as soon
as the video is decoded (a :class:`~dj_ops.backends.streaming.StreamSession`: the server batches
requests by itself); the requests run concurrently (at most ``max_concurrency`` on the wire,
queued in the client beyond that) with a timeout, and retries
with exponential backoff on timeouts, lost connections, 429 and 5xx. A server that ignores ``n``
is detected (fewer choices than asked) and the missing candidates are asked for one by one. A
request that still fails becomes that video's error record (``timeout``, ``http_error``,
``connection_error``, ``bad_response``), never the batch's.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Hashable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace

import aiohttp
import av
from loguru import logger

from dj_ops.adapters import resolve_adapter
from dj_ops.backends.base import (
    BAD_RESPONSE,
    CONNECTION_ERROR,
    CONTEXT_LENGTH,
    HTTP_ERROR,
    INVALID_REQUEST,
    TIMEOUT,
    BackendConfig,
    Capabilities,
    CaptionBackend,
    CaptionRequest,
    CaptionResult,
    request_config,
)
from dj_ops.backends.isolation import INPUTS, OUTPUT, failure_of
from dj_ops.backends.openai_models import advertised_context
from dj_ops.backends.openai_payload import (
    NO_STRUCTURED_OUTPUT,
    STRUCTURED_OUTPUT_IGNORED,
    VIDEO_TRANSPORTS,
    BadResponse,
    ServerSettings,
    auth_headers,
    backoff_delay,
    build_payload,
    could_be_enforced,
    is_retryable,
    parse_completion,
    sampling_fields,
    single_choice_payloads,
)
from dj_ops.backends.streaming import StreamingBackend, StreamSession
from dj_ops.backends.vllm_requests import is_context_error

ERROR_BODY_CHARS = 300  # how much of an error answer goes into the record
def server_settings(config: BackendConfig) -> ServerSettings:
    """The server settings in ``model_params`` (adapter keys such as ``model_type`` aside)."""
    return ServerSettings(**config.params.backend)


class _Client:
    """One session's POSTs, bounded by a semaphore, with retries."""

    def __init__(self, session: aiohttp.ClientSession, settings: ServerSettings):
        self.session = session
        self.settings = settings
        self.slots = asyncio.Semaphore(settings.max_concurrency)

    async def complete(self, payload: dict) -> CaptionResult:
        """Candidates for ``payload``, or the failure after the last try."""
        failure = CaptionResult.failure(TIMEOUT, "no try was made")
        for attempt in range(self.settings.max_retries + 1):
            retry_after = None
            try:
                async with self.slots, self.session.post(self.settings.chat_url,
                                                         json=payload) as response:
                    status, body = response.status, await response.text()
                    retry_after = response.headers.get("Retry-After")
                if status == 200:
                    return CaptionResult(parse_completion(_json(body)))
                failure = CaptionResult.failure(HTTP_ERROR,
                                                f"HTTP {status}: {body[:ERROR_BODY_CHARS]}")
                if not is_retryable(status):
                    if is_context_error(body):  # vLLM's server: the prompt is too long
                        return CaptionResult.failure(CONTEXT_LENGTH, failure.error_message)
                    return failure
            except asyncio.TimeoutError:
                failure = CaptionResult.failure(
                    TIMEOUT, f"no answer within {self.settings.timeout_s} s "
                             f"({attempt + 1} tries)")
            except aiohttp.ClientError as error:
                failure = CaptionResult.failure(CONNECTION_ERROR, f"{type(error).__name__}: "
                                                                  f"{error}")
            except BadResponse as error:
                return CaptionResult.failure(BAD_RESPONSE, str(error))
            if attempt < self.settings.max_retries:
                await asyncio.sleep(backoff_delay(attempt, self.settings, retry_after))
        return failure


def _json(body: str):
    """The decoded JSON answer, or :class:`BadResponse`."""
    try:
        return json.loads(body)
    except ValueError as error:
        raise BadResponse(f"the answer is not JSON: {body[:ERROR_BODY_CHARS]!r}") from error


class _ServerStream(StreamSession):
    """Requests run on an event loop in a thread of their own, so that the caller can go on
    decoding and submitting while they are on the wire; their payloads (``mp4``: the frames
    re-encoded) are built in a pool of encoder threads."""

    def __init__(self, backend: OpenAIBackend):
        self.backend = backend
        server = backend.server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="dj_ops-openai")
        self.thread.start()
        self.encoders = ThreadPoolExecutor(max_workers=min(server.max_concurrency,
                                                           os.cpu_count() or 1))
        self.session, self.client = self._call(self._open()).result()
        self.futures: dict[Future, Hashable] = {}

    def _call(self, coroutine) -> Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    async def _open(self):
        timeout = aiohttp.ClientTimeout(total=self.backend.server.timeout_s)
        session = aiohttp.ClientSession(timeout=timeout, headers=self.backend.headers)
        return session, _Client(session, self.backend.server)

    def submit(self, key: Hashable, request: CaptionRequest) -> None:
        future = self._call(self.backend._request(self.client, self.encoders, request))
        self.futures[future] = key

    def poll(self, wait_s: float) -> list[tuple[Hashable, CaptionResult]]:
        done, _ = wait(list(self.futures), timeout=wait_s, return_when=FIRST_COMPLETED)
        return [(self.futures.pop(future), future.result()) for future in done]

    @property
    def in_flight(self) -> int:
        return len(self.futures)

    def close(self) -> None:
        for future in self.futures:
            future.cancel()
        self.futures.clear()
        self._call(self.session.close()).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
        self.encoders.shutdown(wait=False)


class OpenAIBackend(StreamingBackend, CaptionBackend):
    """Captions through an OpenAI-compatible ``/v1/chat/completions`` server."""

    name = "openai"
    # fed continuously; a text-only request may name another model of the same server
    CAPABILITIES = Capabilities(streams=True, merge_model=True)
    model_param_keys = None  # ServerSettings (pydantic, unknown keys refused) checks them

    def __init__(self, config: BackendConfig, device: str = "cpu"):
        super().__init__(config, device)
        self.server = server_settings(config)
        self.headers = auth_headers(self.server)
        self.model_name = self.server.served_model or config.model
        self.sampling = sampling_fields(config)
        self.n_supported = self.server.n_supported
        # Frames are sized to the family's patch factor when the model is known locally.
        self.adapter = resolve_adapter(config.model, config.params, local_only=True)
        self.size_factor = self.adapter.size_factor
        # the client's own bound on requests on the wire
        self.concurrency_limit = self.server.max_concurrency
        self.structured_output_ignored = False  # json mode: seen the server ignore the schema
        # the frames sent are fitted to the server's context; with video_transport 'path' the
        # server samples the file itself, and no budget applies
        if self.capabilities(config).sends_frames:
            self.context_limit = advertised_context(self.server, self.model_name, self.headers)

    @classmethod
    def capabilities(cls, config: BackendConfig | None = None) -> Capabilities:
        """With ``video_transport: path`` the server reads the file itself: the model does not
        see the request's frames (a window's, or frames fitted to a budget)."""
        if config is None:
            return cls.CAPABILITIES
        sends_frames = server_settings(config).video_transport == "mp4"
        return replace(cls.CAPABILITIES, sends_frames=sends_frames)

    @classmethod
    def check_config(cls, config: BackendConfig) -> None:
        auth_headers(server_settings(config))
        adapter = resolve_adapter(config.model, config.params, local_only=True)
        # The server loads the model, never this op: a checkpoint's remote code is for the
        # server to trust, so it is not asked for here (and is not a server setting).
        adapter.check({**config.model_params, "trust_remote_code": True})

    def open_stream(self) -> StreamSession:
        return _ServerStream(self)

    def text_tokens(self, text: str) -> int:
        """A bound, without the server's tokenizer: the UTF-8 bytes of ``text`` (a token of a
        byte-level BPE, Qwen's, holds at least one byte)."""
        return len(text.encode("utf-8"))

    def _payload(self, request: CaptionRequest) -> dict:
        """The request body of one video (re-encoding its frames for ``mp4``)."""
        video_url = (None if request.frames is None  # text only (a long video's merge)
                     else VIDEO_TRANSPORTS[self.server.video_transport](request))
        config = request_config(self.config, request)
        sampling = self.sampling if config is self.config else sampling_fields(config)
        return build_payload(self.model_name, request, video_url, sampling,
                             self.server.extra_body)

    async def _request(self, client: _Client, encoders, request: CaptionRequest):
        """Build one video's payload in a worker thread (encoding overlaps the network), then
        caption it."""
        loop = asyncio.get_running_loop()
        try:
            payload = await loop.run_in_executor(encoders, self._payload, request)
        except (av.error.FFmpegError, OSError, ValueError) as error:
            return CaptionResult.failure(INVALID_REQUEST, f"cannot build the request: {error}")
        except Exception as error:  # noqa: BLE001 - any other raise fails this request alone
            return failure_of(error, INPUTS)
        try:
            return await self._caption(client, payload)
        except Exception as error:  # noqa: BLE001 - reading the answer: this request alone
            return failure_of(error, OUTPUT)

    async def _caption(self, client: _Client, payload: dict) -> CaptionResult:
        """All candidates of one video: one request for ``n`` choices, or one per choice."""
        wanted = payload["n"]
        if self.n_supported or wanted == 1:
            result = await client.complete(payload)
            got = len(result.candidates)
            if not result.ok or got >= wanted:
                return self._fill(result, wanted)
            self._note_n_ignored(wanted, got)
        else:
            result, got = CaptionResult(), 0
        rest = await asyncio.gather(*(client.complete(p) for p in
                                      single_choice_payloads(payload, wanted - got, got)))
        failed = next((r for r in rest if not r.ok), None)
        if failed is not None:
            return failed
        return self._fill(CaptionResult(result.candidates + [c for r in rest
                                                             for c in r.candidates]), wanted)

    def _fill(self, result: CaptionResult, wanted: int) -> CaptionResult:
        """Keep ``wanted`` candidates; one greedy answer stands for every candidate."""
        if not result.ok:
            return result
        return self._structure_enforced(
            CaptionResult.repeated(result.candidates[:wanted], self.config.num_candidates))

    def _structure_enforced(self, result: CaptionResult) -> CaptionResult:
        """caption_format json: a server that enforces ``response_format`` answers a document,
        or one cut by the token limit (an object's beginning, no raw control character); any
        other answer means the server ignores it (no structured outputs). The video then fails
        with ``structured_output_ignored`` and a message naming the fix (logged once too)."""
        if self.config.json_schema is None:
            return result
        broken = next((c for c in result.candidates if not could_be_enforced(c)), None)
        if broken is None:
            return result
        if not self.structured_output_ignored:
            self.structured_output_ignored = True
            logger.warning(f"{self.server.api_base}: {NO_STRUCTURED_OUTPUT}")
        return CaptionResult(result.candidates, STRUCTURED_OUTPUT_IGNORED,
                             f"{NO_STRUCTURED_OUTPUT} The answer began {broken.text[:60]!r}.")

    def _note_n_ignored(self, wanted: int, got: int) -> None:
        if self.n_supported:
            logger.warning(f"the server answered {got} of n={wanted} choices: it ignores n; "
                           f"asking for each candidate separately from now on")
        self.n_supported = False
