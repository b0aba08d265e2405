"""The transformers backend's speed-ups, run only where they were checked, and checked again.

Two speed-ups replace parts of transformers: separate prefills with shared-prefix decoding
(``prefill.py``, ``shared_prefix.py``) and the patch embedding as a matrix product
(``adapters/patch_embedding.py``). Were either wrong on some model, every caption would be
silently wrong, so :class:`FastDecoding` runs them only when

- ``fast_decoding`` is ``auto`` (``off`` turns them off);
- the model's ``model_type`` is one the family's adapter lists as checked (tested here against
  plain ``generate``);
- transformers is a version they were checked on, and the model routes attention through
  transformers' attention interface (``_supports_attention_backend``): shared-prefix attention
  is such an attention function;
- no generation setting reads the prompt's tokens (``repetition_penalty``, also from the
  model's own ``generation_config``: ``generate`` is fed only each prompt's last token);
- the user did not choose ``attn_implementation``: decoding steps would use shared-prefix
  attention instead of it, so a user's choice is kept and the speed-ups are off;
- ``generate`` can continue from caches filled by hand (``supports_separate_prefill``).

On the first micro-batch of a process, one request's greedy tokens are generated both ways
(stock patch embedding and plain ``generate``, then the fast path with two candidates); a
mismatch turns the speed-ups off for the run, with one warning. A fast micro-batch that fails
(an error other than running out of memory) is generated again with plain ``generate``. Each
candidate records which path produced it (:data:`SHARED_PREFIX` or :data:`GENERATE`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import transformers
from loguru import logger
from packaging.version import Version

from dj_ops.adapters.patch_embedding import use_matmul_patch_embedding, use_stock_patch_embedding
from dj_ops.backends.memory import is_out_of_memory
from dj_ops.backends.prefill import generate_from_separate_prefills, supports_separate_prefill
from dj_ops.backends.shared_prefix import AttentionBypassed

SHARED_PREFIX = "shared_prefix"  # separate prefills, then shared-prefix decoding
GENERATE = "generate"  # transformers' own generate on the padded micro-batch
# transformers versions the speed-ups were checked on: [first, last major + 1)
CHECKED_TRANSFORMERS = (Version("5.0"), Version("6.0"))
# Rows per prompt in the first micro-batch's check: more than one, so that the candidates'
# grouping in shared-prefix attention is checked too.
CHECK_CANDIDATES = 2
SAMPLING_KEYS = ("temperature", "top_p", "top_k")
# generate settings that look at the prompt's token ids: generate is fed only the last one.
PROMPT_BOUND_KWARGS = ("repetition_penalty", "no_repeat_ngram_size", "encoder_repetition_penalty")

Encode = Callable[[list], dict]


def fast_decoding_blockers(model, *, mode: str, checked_model_types: tuple[str, ...],
                           attn_implementation: str | None, generate_kwargs: dict,
                           version: str = transformers.__version__) -> list[str]:
    """Why the speed-ups may not run on ``model`` with ``generate_kwargs`` (empty: they may)."""
    if mode == "off":
        return ["fast_decoding is off"]
    reasons = []
    # generate takes what the settings leave open from the model's generation_config (Qwen2.5-VL
    # checkpoints ship repetition_penalty 1.05)
    own = getattr(model, "generation_config", None)
    prompt_bound = [k for k in PROMPT_BOUND_KWARGS
                    if generate_kwargs.get(k, getattr(own, k, None)) not in (None, 0, 1.0)]
    if prompt_bound:
        reasons.append(f"{prompt_bound} read the prompt's tokens, which the fast path does not "
                       "pass to generate")
    model_type = getattr(model.config, "model_type", None)
    if model_type not in checked_model_types:
        reasons.append(f"they were not checked on model_type {model_type!r} (checked: "
                       f"{sorted(checked_model_types)})")
    first, last = CHECKED_TRANSFORMERS
    if not first <= Version(version) < last:
        reasons.append(f"transformers {version} is outside the checked range [{first}, {last})")
    if attn_implementation is not None:
        reasons.append(f"model_params.attn_implementation={attn_implementation!r} is used as "
                       "given (decoding steps would use shared-prefix attention instead)")
    if not getattr(type(model), "_supports_attention_backend", False):
        reasons.append("the model does not route attention through transformers' attention "
                       "interface")
    elif not supports_separate_prefill(model):
        reasons.append("its generate cannot continue from separately prefilled caches")
    return reasons


def greedy_kwargs(generate_kwargs: dict) -> dict:
    """``generate_kwargs`` decoding greedily, one sequence per prompt."""
    kwargs = {k: v for k, v in generate_kwargs.items() if k not in SAMPLING_KEYS}
    return {**kwargs, "do_sample": False, "num_return_sequences": 1}


def plain_generate(model, inputs: dict, generate_kwargs: dict) -> torch.Tensor:
    """The new tokens of transformers' ``generate`` on ``inputs``."""
    output = model.generate(**inputs, **generate_kwargs)
    return output[:, inputs["input_ids"].shape[1]:]


class FastDecoding:
    """Chooses, per micro-batch, how the model decodes: the fast path or plain ``generate``.

    :param model: the loaded model (its patch embedding is replaced while the fast path is on).
    :param blockers: :func:`fast_decoding_blockers` for it; any: plain ``generate`` only.
    """

    def __init__(self, model, blockers: list[str]):
        self.model = model
        self.enabled = not blockers
        self.checked = False
        if blockers:
            logger.info(f"fast decoding is off for this model: {'; '.join(blockers)}")
        else:
            use_matmul_patch_embedding(model)

    def disable(self, reason: str) -> None:
        """Plain ``generate`` and the stock patch embedding from now on (one warning)."""
        if self.enabled:
            logger.warning(f"fast decoding turned off for this run: {reason}")
        self.enabled = False
        use_stock_patch_embedding(self.model)

    def generate(self, requests: list, encode: Encode, generate_kwargs: dict,
                 k: int) -> tuple[torch.Tensor, str]:
        """The new tokens for ``requests`` (``k`` rows per request, adjacent) and the path that
        produced them.

        :param encode: model inputs of a list of requests (left padded).
        """
        if self.enabled and not self.checked:
            self.check(requests[0], encode, generate_kwargs)
        if self.enabled:
            try:
                prompts = [encode([request]) for request in requests]
                return generate_from_separate_prefills(self.model, prompts, k,
                                                       generate_kwargs), SHARED_PREFIX
            # Any failure of the replaced code falls back (seen on models outside the allowlist:
            # TypeError, AttributeError, AttentionBypassed); a failure that is not the fast
            # path's own recurs in plain generate and is raised from there.
            except Exception as error:  # noqa: BLE001
                if is_out_of_memory(error):
                    raise  # the caller splits the micro-batch
                if isinstance(error, AttentionBypassed):
                    self.disable(str(error))
                else:
                    logger.warning(f"fast decoding failed on a micro-batch of {len(requests)}, "
                                   f"which plain generate captions instead: {error!r}")
        return plain_generate(self.model, encode(requests), generate_kwargs), GENERATE

    def check(self, request, encode: Encode, generate_kwargs: dict) -> bool:
        """Generate ``request``'s greedy tokens both ways; turn the fast path off on a
        mismatch. Returns whether they matched."""
        kwargs = greedy_kwargs(generate_kwargs)
        use_stock_patch_embedding(self.model)
        try:  # a request that fails here fails in plain generate too: the next one checks
            expected = plain_generate(self.model, encode([request]), kwargs)
        finally:
            use_matmul_patch_embedding(self.model)
        self.checked = True
        try:
            got = generate_from_separate_prefills(self.model, [encode([request])],
                                                  CHECK_CANDIDATES, kwargs)
        except Exception as error:  # noqa: BLE001 - as in generate
            if is_out_of_memory(error):
                raise
            self.disable(f"the first micro-batch's check failed: {error!r}")
            return False
        same = got.shape[1] == expected.shape[1] and bool((got == expected).all())
        if not same:
            self.disable("on the first micro-batch, its greedy tokens differ from plain "
                         "generate's")
        return same
