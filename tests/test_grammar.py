"""JSON-schema constrained decoding in the transformers backend: a random-weight Qwen3-VL under
the default caption schema yields strictly valid JSON for every candidate of every video."""

from __future__ import annotations

import json

import pytest
import torch

from dj_ops.backends.grammar import (
    GrammarLogitsProcessor,
    compile_json_schema,
    json_logits_processors,
)
from dj_ops.captioning.structured import (
    DEFAULT_SCHEMA,
    DEFAULT_SCHEMA_MAX_TOKENS,
    validation_error,
)
from dj_ops.ops.cpu_threads import intra_op_threads
from tests.test_prefill import backend_for, requests_for

pytest.importorskip("llguidance", reason="constrained decoding needs the structured extra")

K = 2


@pytest.fixture(scope="module")
def backend(qwen3):
    # The schema bounds every string, array and number: a document ends within its token bound,
    # so this limit never cuts one, whatever the weights (generation stops at the stop token).
    return backend_for(qwen3, {"max_new_tokens": DEFAULT_SCHEMA_MAX_TOKENS}, K)


def vocab_size(backend) -> int:
    return backend.model.config.get_text_config().vocab_size


def generate_constrained(backend, requests, grammar) -> list[str]:
    """Every candidate of every request (``K`` rows per ``generate`` call, one per request: a
    batch runs until its longest document ends)."""
    torch.manual_seed(0)
    rows = []
    for request in requests:
        inputs = backend.encode([request])
        # one thread: a tiny model's steps are too small to share, and on a loaded machine two
        # threads wait on each other (8x slower measured with the machine's 2 cores busy)
        with torch.inference_mode(), intra_op_threads(1):
            output = backend.model.generate(**inputs, **backend.generate_kwargs,
                                            logits_processor=json_logits_processors(grammar))
        rows += output[:, inputs["input_ids"].shape[1]:].tolist()
    texts = []
    for row in rows:
        ends = [i for i, t in enumerate(row) if t in backend.eos_ids]
        assert ends, "a constrained document always ends with a stop token"
        texts.append(backend.tokenizer.decode(row[: ends[0]], skip_special_tokens=True))
    return texts


def test_every_candidate_is_strictly_valid_json(backend, videos):
    grammar = compile_json_schema(backend.tokenizer, vocab_size(backend), DEFAULT_SCHEMA,
                                  sorted(backend.eos_ids), "llguidance")
    texts = generate_constrained(backend, requests_for(backend, videos), grammar)
    assert len(texts) == K * len(videos)
    assert [validation_error(t, DEFAULT_SCHEMA) for t in texts] == [None] * len(texts)
    assert len(set(texts)) > 1  # sampled, random weights: the documents differ
    # the random model fills strings with its vocabulary, not only with the grammar's minimum
    assert max(len(json.loads(t)["summary"]) for t in texts) > 20


def test_xgrammar_follows_the_schema_when_read_leniently(backend, videos):
    """xgrammar's strings may hold raw control characters (refused by strict JSON: see
    docs/quality.md); the structure itself always follows the schema."""
    pytest.importorskip("xgrammar")
    grammar = compile_json_schema(backend.tokenizer, vocab_size(backend), DEFAULT_SCHEMA,
                                  sorted(backend.eos_ids), "xgrammar")
    texts = generate_constrained(backend, requests_for(backend, videos[:1]), grammar)
    for text in texts:
        lenient = json.dumps(json.loads(text, strict=False))  # escapes the control characters
        assert validation_error(lenient, DEFAULT_SCHEMA) is None


def test_a_processor_serves_one_generate_call(backend):
    grammar = compile_json_schema(backend.tokenizer, vocab_size(backend), {"type": "object"},
                                  sorted(backend.eos_ids))
    processor = GrammarLogitsProcessor(grammar)
    scores = torch.zeros(2, vocab_size(backend))
    masked = processor(torch.zeros(2, 3, dtype=torch.long), scores)
    allowed = torch.isfinite(masked[0]).nonzero().flatten().tolist()
    assert allowed and all(backend.tokenizer.decode([t]).startswith("{") for t in allowed)
    with pytest.raises(RuntimeError, match="one generate call"):
        processor(torch.zeros(3, 4, dtype=torch.long), torch.zeros(3, vocab_size(backend)))


def test_bad_arguments_are_refused(backend):
    args = (backend.tokenizer, vocab_size(backend), DEFAULT_SCHEMA)
    with pytest.raises(ValueError, match="not one of"):
        compile_json_schema(*args, sorted(backend.eos_ids), library="outlines")
    with pytest.raises(ValueError, match="stop token"):
        compile_json_schema(*args, [])
    with pytest.raises(ValueError, match="cannot be compiled"):
        compile_json_schema(backend.tokenizer, vocab_size(backend),
                            {"type": "object", "properties": {"a": {"$ref": "#/missing"}}},
                            sorted(backend.eos_ids))
