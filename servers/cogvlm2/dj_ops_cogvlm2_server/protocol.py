"""The chat-completions contract of the server, as pure functions: the request body in, the
model card's ``generate`` settings and the answer body out (no model, no network here).

One request is one video: a user message holding one ``video_url`` part (an MP4 ``data:`` URL
or a ``file://`` URL) and the prompt text, an optional system message, and ``n`` candidates.
Generation follows the model card: greedy unless ``temperature`` > 0 (an absent temperature is
greedy too, unlike OpenAI's default of 1, because greedy is how the card captions),
``max_tokens`` new tokens (the card's 2048 when absent) and ``pad_token_id`` 128002. Extension:
``template_version`` (``chat`` or ``base``) picks the card's frame strategy and prompt template
per request; the server's ``--template-version`` otherwise.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from dj_ops_cogvlm2_server.cogvlm2_interface import PAD_TOKEN_ID, query_text

DEFAULT_MAX_NEW_TOKENS = 2048  # the model card's max_new_tokens
# The fields read; any other (e.g. logprobs, response_format) is refused, never ignored.
CALL_FIELDS = frozenset({"model", "messages", "n", "seed", "stop", "template_version",
                            "stream", "user"})
SAMPLING_FIELDS = frozenset({"max_tokens", "max_completion_tokens", "min_tokens",
                             "temperature", "top_p", "top_k", "repetition_penalty"})


@dataclass(frozen=True)
class CaptionCall:
    """One request, read: what to caption and how."""

    video_url: str
    query: str
    template_version: str
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    generate_kwargs: dict[str, Any] = field(default_factory=dict)


def read_call(body: dict, default_template: str) -> CaptionCall:
    """The :class:`CaptionCall` of a request body.

    The card's template has no system turn, so a system prompt goes before the prompt on its
    own line (as dj_ops' CogVLM2 adapter does in process).

    :raises ValueError: naming what is wrong (answered with HTTP 400).
    """
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    unknown = sorted(set(body) - CALL_FIELDS - SAMPLING_FIELDS)
    if unknown:
        raise ValueError(f"unsupported fields {unknown}; supported: "
                         f"{sorted(CALL_FIELDS | SAMPLING_FIELDS)}")
    if body.get("stream"):
        raise ValueError("stream is not supported")
    system, video_url, texts = None, None, []
    for message in body.get("messages") or []:
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for part in parts or []:
            if part.get("type") == "video_url":
                if video_url is not None:
                    raise ValueError("one video per request: the message holds several")
                video_url = part["video_url"]["url"]
            elif part.get("type") == "text" and message.get("role") == "system":
                system = part["text"]
            elif part.get("type") == "text":
                texts.append(part["text"])
    if video_url is None:
        raise ValueError("the user message holds no video_url part")
    query = query_text("".join(texts), system)
    n = int(1 if body.get("n") is None else body["n"])
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    stop = body.get("stop") or ()
    return CaptionCall(video_url, query, body.get("template_version") or default_template, n,
                       body.get("seed"), (stop,) if isinstance(stop, str) else tuple(stop),
                       generate_kwargs(body))


def generate_kwargs(body: dict) -> dict[str, Any]:
    """``model.generate`` settings of a request body, per the model card (see the module)."""
    max_new = body.get("max_tokens") or body.get("max_completion_tokens")
    kwargs: dict[str, Any] = {"max_new_tokens": int(max_new or DEFAULT_MAX_NEW_TOKENS),
                              "pad_token_id": PAD_TOKEN_ID}
    temperature = body.get("temperature") or 0.0
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=float(temperature))
        if body.get("top_p") is not None:
            kwargs["top_p"] = float(body["top_p"])
        if body.get("top_k") is not None and body["top_k"] > 0:
            kwargs["top_k"] = int(body["top_k"])
    else:
        kwargs["do_sample"] = False
    if body.get("min_tokens"):
        kwargs["min_new_tokens"] = int(body["min_tokens"])
    if body.get("repetition_penalty") is not None:
        kwargs["repetition_penalty"] = float(body["repetition_penalty"])
    return kwargs


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """``text`` up to the first stop string (excluded, as OpenAI does), and whether one was
    found."""
    ends = [text.find(s) for s in stop if s and s in text]
    return (text[: min(ends)], True) if ends else (text, False)


@dataclass(frozen=True)
class Choice:
    """One generated candidate."""

    text: str
    num_tokens: int
    hit_token_limit: bool


def completion_body(model: str, choices: list[Choice], prompt_tokens: int,
                    received: dict[str, Any]) -> dict:
    """The chat-completions answer; ``received`` (the frame indices, template and generation
    settings given to the model) is added as the ``dj_ops_received`` extension field."""
    completion_tokens = sum(c.num_tokens for c in choices)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
        "created": int(time.time()), "model": model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": c.text},
                     "finish_reason": "length" if c.hit_token_limit else "stop"}
                    for i, c in enumerate(choices)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
        "dj_ops_received": received,
    }
