"""JSON-schema constrained decoding for the transformers backend, through a grammar library.

vLLM and OpenAI-compatible servers constrain decoding themselves (``StructuredOutputsParams``,
``response_format``); ``transformers`` has no JSON-schema mode, so a grammar library computes,
at each step, the set of tokens that keep the output a prefix of a document valid under the
schema, and a ``LogitsProcessor`` masks every other token.

Two maintained libraries are supported, one table entry each (``LIBRARIES``):

- ``llguidance`` (the default; vLLM's ``guidance`` backend): strings never hold raw control
  characters, so every output passes ``json.loads`` in its strict mode;
- ``xgrammar`` (vLLM's default backend): measured here to let raw control characters into
  strings, which strict JSON refuses (docs/quality.md gives the counts).

Both fill the same packed bitmask (bit ``i`` of int32 word ``j`` allows token ``32 j + i``), so
one processor serves both. Usage, once per loaded model and schema::

    grammar = compile_json_schema(tokenizer, vocab_size, schema, stop_token_ids)
    model.generate(**inputs, logits_processor=json_logits_processors(grammar))

A processor holds one matcher per generated row and is good for one ``generate`` call:
:func:`json_logits_processors` makes fresh ones from the compiled grammar (compiling is the
expensive part and is done once).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import transformers

from dj_ops.lazy_import import load_entry

DEFAULT_GRAMMAR_LIBRARY = "llguidance"


def _entry(library: str, path: str):
    """``path`` of a grammar library, imported when chosen; missing, the error names the pip
    extra (llguidance: ``structured``; xgrammar, kept for the comparison: ``bench``)."""
    extra = "structured" if library == "llguidance" else "bench"
    return load_entry(path, what=f"constrained decoding with {library}", extra=extra)


# Both libraries compile compact JSON (no whitespace between tokens): with whitespace allowed, a
# random-weight model (and a real one, now and then) spends its token budget on runs of "\n\t"
# and never closes the document (measured on vLLM, docs/findings.md).


def _llguidance_compile(tokenizer, vocab_size: int, schema: str, stop_ids: list[int]):
    matcher = _entry("llguidance", "llguidance:LLMatcher")
    from_tokenizer = _entry("llguidance", "llguidance.hf:from_tokenizer")
    ll_tokenizer = from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=stop_ids)
    grammar = matcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": False})
    error = matcher.validate_grammar(grammar, ll_tokenizer)
    if error:
        raise ValueError(f"the JSON schema cannot be compiled by llguidance: {error}")
    return ll_tokenizer, grammar


def _xgrammar_compile(tokenizer, vocab_size: int, schema: str, stop_ids: list[int]):
    info = _entry("xgrammar", "xgrammar:TokenizerInfo").from_huggingface(
        tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
    compiler = _entry("xgrammar", "xgrammar:GrammarCompiler")(info)
    return compiler.compile_json_schema(schema, any_whitespace=False, strict_mode=True)


@dataclass(frozen=True)
class _Library:
    """What one grammar library provides: compile a schema for a tokenizer (once), make a
    matcher (one per generated row), feed it a token, fill its row of the packed bitmask, and
    say why it refused a token."""

    compile: Callable[[Any, int, str, list[int]], Any]
    matcher: Callable[[Any], Any]
    accept: Callable[[Any, int], bool]
    fill: Callable[[Any, torch.Tensor, int], None]
    error: Callable[[Any], str]


LIBRARIES: dict[str, _Library] = {
    "llguidance": _Library(
        compile=_llguidance_compile,
        matcher=lambda compiled: _entry("llguidance", "llguidance:LLMatcher")(*compiled,
                                                                             log_level=0),
        accept=lambda m, token: m.consume_token(token),
        fill=lambda m, bitmask, row: _entry(
            "llguidance", "llguidance.torch:fill_next_token_bitmask")(m, bitmask, row),
        error=lambda m: m.get_error(),
    ),
    "xgrammar": _Library(
        compile=_xgrammar_compile,
        matcher=lambda compiled: _entry("xgrammar", "xgrammar:GrammarMatcher")(compiled),
        accept=lambda m, token: m.accept_token(token),
        fill=lambda m, bitmask, row: m.fill_next_token_bitmask(bitmask, row),
        error=lambda m: "xgrammar refused it",
    ),
}


@dataclass(frozen=True)
class CompiledSchema:
    """A JSON schema compiled for one tokenizer by one grammar library.

    :param library: a key of ``LIBRARIES``.
    :param compiled: the library's compiled grammar (opaque here).
    :param vocab_size: rows of the model's logits (may exceed the tokenizer's size: padding).
    :param stop_token_ids: the model's end-of-sequence ids.
    """

    library: str
    compiled: Any
    vocab_size: int
    stop_token_ids: frozenset[int]


def compile_json_schema(
    tokenizer,
    vocab_size: int,
    schema: dict[str, Any],
    stop_token_ids: Sequence[int],
    library: str = DEFAULT_GRAMMAR_LIBRARY,
) -> CompiledSchema:
    """Compile ``schema`` for ``tokenizer`` (a fast Hugging Face tokenizer).

    :param vocab_size: the model's vocabulary size (``model.config.get_text_config().vocab_size``,
        or the logits' last dimension), which padding can make larger than the tokenizer's.
    :param stop_token_ids: the model's end-of-sequence ids; the grammar allows them once the
        document is complete, and only then.
    :param library: ``llguidance`` or ``xgrammar``.
    :raises ValueError: unknown library, no stop token, or a schema the library cannot compile.
    """
    if library not in LIBRARIES:
        raise ValueError(f"grammar library {library!r} is not one of {sorted(LIBRARIES)}")
    if not stop_token_ids:
        raise ValueError("constrained decoding needs the model's stop token ids")
    text = json.dumps(schema)
    compiled = LIBRARIES[library].compile(tokenizer, vocab_size, text, list(stop_token_ids))
    return CompiledSchema(library, compiled, vocab_size, frozenset(stop_token_ids))


def _unpack_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Boolean ``(rows, vocab_size)`` mask of allowed tokens from the packed int32 bitmask.

    Written here rather than taken from a library: llguidance's torch helper goes through
    ``torch.compile`` (a C++ build on first use on CPU), and one unpack serves both libraries.
    """
    bits = torch.arange(32, dtype=torch.int32)
    allowed = (bitmask.unsqueeze(-1) >> bits) & 1
    return allowed.reshape(bitmask.shape[0], -1)[:, :vocab_size].bool()


class GrammarLogitsProcessor(transformers.LogitsProcessor):
    """Masks the logits of each generated row to the tokens its grammar matcher allows.

    Rows are created on the first call (one matcher per row: ``batch × num_return_sequences``).
    A row whose document is complete is allowed only its stop tokens (llguidance reports a
    complete document as stopped before the stop token comes, so the row is tracked here by the
    tokens it emits); once it has emitted one, ``generate`` pads it and the row is left alone.
    """

    def __init__(self, grammar: CompiledSchema):
        self.grammar = grammar
        self.library = LIBRARIES[grammar.library]
        self.matchers: list[Any] = []
        self.finished: list[bool] = []
        self.bitmask: torch.Tensor | None = None
        self.started = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor):
        rows = input_ids.shape[0]
        if not self.matchers:
            self.matchers = [self.library.matcher(self.grammar.compiled) for _ in range(rows)]
            self.finished = [False] * rows
            words = (self.grammar.vocab_size + 31) // 32
            self.bitmask = torch.full((rows, words), -1, dtype=torch.int32)
        elif rows != len(self.matchers):
            raise RuntimeError(
                f"a grammar processor serves one generate call: made for {len(self.matchers)} "
                f"rows, called with {rows}; make new ones with json_logits_processors()")
        for row, matcher in enumerate(self.matchers):
            if self.finished[row]:
                continue
            if self.started:
                token = int(input_ids[row, -1])
                if token in self.grammar.stop_token_ids:
                    self.finished[row] = True
                    continue
                if not self.library.accept(matcher, token):  # the mask allowed it: a bug
                    raise RuntimeError(f"the grammar matcher refused token {token} that its own "
                                       f"mask allowed: {self.library.error(matcher)}")
            self.library.fill(matcher, self.bitmask, row)
        self.started = True
        allowed = _unpack_bitmask(self.bitmask, self.grammar.vocab_size).to(scores.device)
        width = min(scores.shape[-1], allowed.shape[-1])
        masked = torch.full_like(scores, float("-inf"))  # logits past the vocabulary stay -inf
        masked[:, :width] = scores[:, :width].masked_fill(~allowed[:, :width], float("-inf"))
        return masked


def json_logits_processors(grammar: CompiledSchema) -> transformers.LogitsProcessorList:
    """The ``logits_processor`` argument for one ``model.generate`` call under ``grammar``."""
    return transformers.LogitsProcessorList([GrammarLogitsProcessor(grammar)])
