"""What an OpenAI-compatible server says about its models (``GET /v1/models``): the context
length it serves a model with, read once when the backend is built.

vLLM's server lists each model with ``max_model_len``; servers that do not say (OpenAI's own
API, ``transformers serve``) leave the backend without a context limit: no budget is derived
from it (``max_visual_tokens`` still applies), and a prompt the server refuses as too long stays
a ``context_length`` record.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from loguru import logger

from dj_ops.backends.openai_payload import ServerSettings

MODELS_PATH = "/models"
CONTEXT_FIELD = "max_model_len"  # vLLM's name in each model's entry


def context_from_listing(listing: dict, model: str) -> int | None:
    """The ``max_model_len`` of ``model`` in a ``/v1/models`` answer (the only model's when the
    server lists one under another name); None when it is not given."""
    entries = [entry for entry in listing.get("data") or [] if isinstance(entry, dict)]
    named = [entry for entry in entries if entry.get("id") == model]
    chosen = named or (entries if len(entries) == 1 else [])
    value = chosen[0].get(CONTEXT_FIELD) if chosen else None
    return int(value) if isinstance(value, int) and value > 0 else None


def advertised_context(server: ServerSettings, model: str, headers: dict[str, str]) -> int | None:
    """The context ``server`` serves ``model`` with, asked once (stdlib HTTP: this runs once,
    before the backend's own event loop exists); None when the server does not say or cannot
    be asked (the caption requests then report what is wrong)."""
    url = server.api_base.rstrip("/") + MODELS_PATH
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=server.timeout_s) as answer:
            listing = json.load(answer)
    except (OSError, ValueError) as error:  # URLError and HTTPError are OSErrors
        logger.warning(f"could not read the model's context length from {url}: {error}")
        return None
    return context_from_listing(listing if isinstance(listing, dict) else {}, model)
