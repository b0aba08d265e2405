"""Pure parts of the OpenAI-compatible backend: server settings, the request payload, the
parsing of the answer and the retry policy (no network here).

One video is one ``POST {api_base}/chat/completions`` whose user message holds a ``video_url``
part and the prompt. ``video_url`` is the sampled frames re-encoded as an MP4 data URL
(``video_transport: mp4``, accepted by vLLM and SGLang), or the video file itself as a
``file://`` URL (``video_transport: path``, for a server that reads the same disk, e.g.
``vllm serve --allowed-local-media-path``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from dj_ops.backends.base import BackendConfig, Candidate, CaptionRequest
from dj_ops.captioning.generation import to_openai_fields
from dj_ops.captioning.structured import parse_strict
from dj_ops.video.encode import frames_fps, mp4_data_url

CHAT_COMPLETIONS_PATH = "/chat/completions"
# Statuses worth another try: rate limited, or the server failed.
RETRY_STATUSES = frozenset({408, 409, 425, 429})


class BadResponse(ValueError):
    """The server's answer does not follow the chat-completions contract."""


class ServerSettings(BaseModel):
    """The server part of ``model_params`` for the ``openai`` backend (unknown keys refused).

    :param api_base: the API root, e.g. ``http://localhost:8000/v1``.
    :param api_key_env: name of the environment variable holding the API key (never logged);
        None sends no key.
    :param served_model: the model name the server knows; None sends ``hf_model``.
    :param max_concurrency: requests in flight at once.
    :param timeout_s: seconds allowed for one answer.
    :param max_retries: further tries after a timeout, a lost connection, 429 or 5xx.
    :param backoff_s: wait before the first retry, doubled each time (``Retry-After`` wins).
    :param max_backoff_s: longest wait between tries.
    :param video_transport: ``mp4`` (frames re-encoded, sent inline) or ``path`` (file URL).
    :param n_supported: whether the server honours ``n``; when it does not (as ``transformers
        serve``), each candidate is its own request. Learnt at run time too.
    :param extra_body: further JSON fields for every request (server extensions such as
        vLLM's ``mm_processor_kwargs``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_base: str = Field(pattern=r"^https?://")
    api_key_env: str | None = None
    served_model: str | None = None
    max_concurrency: PositiveInt = 8
    timeout_s: PositiveFloat = 120.0
    max_retries: int = Field(3, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    max_backoff_s: float = Field(30.0, ge=0)
    video_transport: Literal["mp4", "path"] = "mp4"
    n_supported: bool = True
    extra_body: dict[str, Any] = Field(default_factory=dict)

    @property
    def chat_url(self) -> str:
        return self.api_base.rstrip("/") + CHAT_COMPLETIONS_PATH


def auth_headers(settings: ServerSettings, environ=None) -> dict[str, str]:
    """The ``Authorization`` header from the variable named by ``api_key_env`` (if any).

    :param environ: the environment (default: ``os.environ`` at call time; some libraries
        replace that object).

    :raises ValueError: naming the variable (never a value) when it is unset or empty.
    """
    if settings.api_key_env is None:
        return {}
    key = (os.environ if environ is None else environ).get(settings.api_key_env)
    if not key:
        raise ValueError(f"model_params.api_key_env names the environment variable "
                         f"{settings.api_key_env!r}, which is not set")
    return {"Authorization": f"Bearer {key}"}


def schema_name(schema: dict[str, Any]) -> str:
    """``response_format``'s schema name: the schema's title in the characters OpenAI allows
    (``[A-Za-z0-9_-]``, at most 64), else ``caption``."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or ""))[:64]
    return name or "caption"


def sampling_fields(config: BackendConfig) -> dict[str, Any]:
    """Generation fields of the payload: OpenAI's names (``n``, ``max_tokens``, ``temperature``,
    ``top_p``, ``stop``, ``seed``) plus vLLM's extensions only when set (``min_tokens``,
    ``top_k``, ``repetition_penalty``). Greedy decoding asks for one choice, which stands for
    every candidate. ``caption_format: json`` adds ``response_format`` of type ``json_schema``
    (strict), which the server enforces by constrained decoding."""
    fields = to_openai_fields(config.settings, config.num_candidates, config.seed)
    if config.json_schema is not None:
        fields["response_format"] = {"type": "json_schema", "json_schema": {
            "name": schema_name(config.json_schema),
            "schema": config.json_schema, "strict": True}}
    return fields


def file_url(request: CaptionRequest) -> str:
    """The request's video file as a ``file://`` URL."""
    if not request.video_path:
        raise ValueError("video_transport 'path' needs the request's video_path")
    return Path(request.video_path).resolve().as_uri()


def mp4_url(request: CaptionRequest) -> str:
    """The request's frames re-encoded at their sampling rate, as an MP4 data URL."""
    return mp4_data_url(request.frames, frames_fps(request.metadata))


VIDEO_TRANSPORTS = {"mp4": mp4_url, "path": file_url}


def build_payload(model: str, request: CaptionRequest, video_url: str | None,
                  sampling: dict[str, Any], extra_body: dict[str, Any] | None = None) -> dict:
    """The JSON body of one chat-completions request."""
    messages: list[dict[str, Any]] = []
    if request.system_prompt:
        messages.append({"role": "system", "content": request.system_prompt})
    video = [] if video_url is None else [{"type": "video_url", "video_url": {"url": video_url}}]
    content = [*video, {"type": "text", "text": request.prompt}]
    messages.append({"role": "user", "content": content})
    return {"model": request.model or model, "messages": messages, **sampling,
            **(extra_body or {})}


def single_choice_payloads(payload: dict, count: int, first: int) -> list[dict]:
    """``count`` copies of ``payload`` asking for one choice each; with a seed, copy ``i``
    gets ``seed + first + i`` so that the candidates differ."""
    copies = []
    for i in range(count):
        copy = {**payload, "n": 1}
        if payload.get("seed") is not None:
            copy["seed"] = payload["seed"] + first + i
        copies.append(copy)
    return copies


def parse_completion(body: Any) -> list[Candidate]:
    """Candidates of a chat-completions answer, in choice order.

    ``generated_tokens`` of each comes from ``usage.completion_tokens``, the total over all
    choices (the API gives no per-choice count): exact for one choice, the mean for several.

    :raises BadResponse: when the answer has no usable ``choices``.
    """
    try:
        choices = sorted(body["choices"], key=lambda c: c.get("index", 0))
        texts = [(c["message"].get("content") or "").strip() for c in choices]
        hit_limit = [c.get("finish_reason") == "length" for c in choices]
    except (KeyError, TypeError, AttributeError) as error:
        raise BadResponse(f"not a chat completion: missing {error}") from error
    if not choices:
        raise BadResponse("the answer has no choices")
    total = int(((body.get("usage") or {}).get("completion_tokens")) or 0)
    per_choice = total // len(choices)
    return [Candidate(t, num_tokens=per_choice, hit_token_limit=h)
            for t, h in zip(texts, hit_limit)]


def is_retryable(status: int) -> bool:
    """Whether an HTTP status is worth another try (rate limits, timeouts, server errors)."""
    return status in RETRY_STATUSES or status >= 500


def backoff_delay(attempt: int, settings: ServerSettings, retry_after: str | None = None) -> float:
    """Seconds to wait before try ``attempt + 1``: the server's ``Retry-After`` (seconds) when
    given, else ``backoff_s * 2 ** attempt``; never more than ``max_backoff_s``."""
    try:
        delay = float(retry_after) if retry_after is not None else None
    except ValueError:
        delay = None
    if delay is None or delay < 0:
        delay = settings.backoff_s * 2**attempt
    return min(delay, settings.max_backoff_s)


# caption_format json against a server that does not enforce response_format (vLLM's server
# without structured outputs answers free text, raw control characters included).
STRUCTURED_OUTPUT_IGNORED = "structured_output_ignored"
NO_STRUCTURED_OUTPUT = (
    "caption_format json: the server answered text that is neither a JSON document nor, cut "
    "by the token limit, the beginning of one, so it does not enforce response_format "
    "json_schema (structured outputs). Start "
    "vLLM's server with --structured-outputs-config '{\"backend\": \"guidance\", "
    "\"disable_any_whitespace\": true}' (README: Structured captions), or use caption_format: "
    "text.")


# Control characters JSON allows nowhere (tab, newline and carriage return are whitespace
# between tokens; raw, every control character is refused inside strings).
RAW_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def could_be_enforced(candidate: Candidate) -> bool:
    """Whether an answer could come from a server enforcing a JSON Schema: a strict document,
    or, cut by the token limit, the beginning of an object without raw control characters."""
    text = candidate.text
    if candidate.hit_token_limit:
        return text.lstrip().startswith("{") and RAW_CONTROL.search(text) is None
    try:
        parse_strict(text)
    except ValueError:
        return False
    return True
