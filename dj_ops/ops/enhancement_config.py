"""The enhancement op's parameters, parsed once into an :class:`EnhanceConfig`.

Everything is checked at the op's construction, naming the fix: the backend (the same table and
``check_config`` as the captioning op), the preset and its bound (the target tokenizer is loaded
here once, so a missing one fails now, not in a worker), the output fields (never the text,
videos, meta or caption field), json mode (the backend must declare structured output), the
quality gate and the result store's format. Nothing here opens a model or a process.
"""

from __future__ import annotations

from dataclasses import dataclass

from dj_ops.backends.base import BackendConfig, Capabilities, backend_class
from dj_ops.captioning.generation import parse_sampling_params
from dj_ops.enhancement.length import load_target
from dj_ops.enhancement.presets import RewriteSpec
from dj_ops.enhancement.sources import WINDOWS_SUFFIX, SourceLayout
from dj_ops.ops.config import ON_ERROR, check_choice
from dj_ops.ops.quality_gate import GateConfig
from dj_ops.ops.structured_config import StructuredConfig, lengths_field
from dj_ops.store import check_store


@dataclass(frozen=True, kw_only=True)
class EnhanceConfig:
    """Everything one enhancement process needs, validated."""

    backend: str
    model: BackendConfig
    capabilities: Capabilities
    rewrite: RewriteSpec
    layout: SourceLayout
    on_error: str = "keep"
    store_path: str | None = None
    quality: GateConfig = GateConfig()
    structured: StructuredConfig | None = None
    max_in_flight: int = 256

    @property
    def output_fields(self) -> tuple[str, ...]:
        """The fields the op adds to every row."""
        key = self.layout.output_key
        return ((key,) + ((self.layout.windows_key,) if self.layout.windows else ())
                + ((lengths_field(key),) if self.structured else ()))


def check_fields(layout: SourceLayout, structured: StructuredConfig | None) -> None:
    """Refuse output fields that would overwrite the row or the captioning op's fields."""
    if layout.caption_key in ("", layout.text_key, layout.video_key, layout.meta_key):
        raise ValueError(f"caption_key={layout.caption_key!r} must name the captioning op's "
                         "caption field (or be unset for captions after the video tokens)")
    taken = {layout.text_key, layout.video_key, layout.meta_key}
    if layout.caption_key:  # the caption field and what the captioning op writes beside it
        taken |= {layout.caption_key, f"{layout.caption_key}{WINDOWS_SUFFIX}",
                  lengths_field(layout.caption_key)}
    key = layout.output_key
    written = [key] + ([layout.windows_key] if layout.windows else []) + (
        [lengths_field(key)] if structured else [])
    clash = [name for name in written if name in taken or not name]
    if clash:
        raise ValueError(f"enhanced_key={layout.enhanced_key!r} would write {clash}, which the "
                         "row or the captioning op already uses; name another field (the "
                         "original caption is never overwritten)")


def parse_enhance_config(*, backend: str, model: str, rewrite: RewriteSpec,
                         layout: SourceLayout, model_params: dict | None,
                         sampling_params: dict | None, generation_batch_size: int,
                         seed: int | None, on_error: str, store_path: str | None,
                         quality: GateConfig, structured: StructuredConfig | None,
                         max_in_flight: int) -> EnhanceConfig:
    """The op's parameters as one :class:`EnhanceConfig` (``backend``: a checked name).

    :raises ValueError: (``ModuleNotFoundError`` for a missing optional package) naming the fix.
    """
    check_choice("on_error", on_error, ON_ERROR)
    check_fields(layout, structured)
    sampling = dict(sampling_params or {})
    if not {"max_new_tokens", "max_tokens"} & set(sampling):  # the preset's default limit
        sampling["max_new_tokens"] = rewrite.max_new_tokens
    config = BackendConfig(model=model, settings=parse_sampling_params(sampling, 1),
                           num_candidates=1, batch_size=generation_batch_size, seed=seed,
                           model_params=dict(model_params or {}),
                           json_schema=structured.schema.schema if structured else None)
    declared = backend_class(backend)
    declared.check_config(config)
    capabilities = declared.capabilities(config)
    if structured is not None and not capabilities.structured_output:
        raise ValueError(f"caption_format json needs a backend that decodes under a schema; "
                         f"the {backend!r} backend as configured does not")
    if rewrite.target_tokenizer:
        load_target(rewrite.target_tokenizer)  # a missing tokenizer fails here, naming it
    if store_path:
        check_store(store_path)  # read only; each process's enhancer opens it
    return EnhanceConfig(backend=backend, model=config, capabilities=capabilities,
                         rewrite=rewrite, layout=layout, on_error=on_error,
                         store_path=store_path, quality=quality, structured=structured,
                         max_in_flight=max_in_flight)
