"""The quality gate in the op, end to end on the tiny random-weight Qwen3-VL and real videos:
flags and retries on both call paths (transformers' micro-batches, the openai backend's
continuous feeding against a loopback server), provenance, ``on_low_quality``, the result
store; and ``keep_candidate_mode: consensus`` on a bare video list."""

from __future__ import annotations

import re

import pytest
from data_juicer.utils.constant import Fields
from hypothesis import given
from hypothesis import strategies as st

from dj_ops.captioning.consensus import consensus_index
from dj_ops.captioning.quality import (
    DEFAULT_THRESHOLDS,
    RETRY_REPETITION_PENALTY,
    RETRY_TEMPERATURE,
    RETRY_TOP_K,
    RETRY_TOP_P,
    TRUNCATED,
    has_repetition_loop,
    is_garbage,
)
from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.requests import Candidate, CaptionResult
from dj_ops.captioning.structured import JsonSchema
from dj_ops.ops.captioner import Captioner
from dj_ops.ops.quality_gate import (
    LOW_QUALITY,
    GateConfig,
    QualityGate,
    failing,
    parse_thresholds,
)
from dj_ops.ops.vlm_video_captioning_mapper import OP_NAME
from dj_ops.testing.openai_server import CompletionServer
from tests.conftest import make_op, run_op
from tests.test_op import single_video_samples

# Four tokens, no end of sequence before them: the random model's text is cut mid-sentence.
CUT = {"max_new_tokens": 4, "min_new_tokens": 4}
GATE_FIELDS = ("attempts", "quality_flags", "attempt_flags")


def records(rows: list[dict]) -> list[dict]:
    return [r[Fields.meta][META_KEY] for r in rows]


def without_gate_fields(row: dict) -> dict:
    record = row[Fields.meta][META_KEY]
    videos = [{k: v for k, v in video.items() if k not in GATE_FIELDS}
              for video in record["videos"]]
    return {**row, Fields.meta: {**row[Fields.meta], META_KEY: {**record, "videos": videos}}}


# ---- the gate's own logic, on candidates as backends give them ----

LOOP = "A dog runs. A dog runs. A dog runs. A dog"


def test_the_gate_decides_repetition_once_with_the_user_s_thresholds():
    """The gate cuts a trailing loop (flagged ``repetition``, ``repetition_trimmed``) with the
    thresholds given; with others the same text is no loop, and nothing cuts it later."""
    default = QualityGate(GateConfig(), settings=make_settings())
    (kept,) = default.checked(CaptionResult([Candidate(LOOP, 12, True)])).candidates
    assert (kept.text, kept.repetition_trimmed, kept.attempts) == (
        "A dog runs.", True, (("repetition",),))
    strict = QualityGate(GateConfig(thresholds=parse_thresholds({"min_repeats": 4})),
                         settings=make_settings())
    (kept,) = strict.checked(CaptionResult([Candidate(LOOP, 12, True)])).candidates
    assert (kept.text, kept.repetition_trimmed) == (LOOP, False)
    assert "repetition" not in kept.attempts[-1]
    json_gate = QualityGate(GateConfig(), settings=make_settings(),
                            schema=JsonSchema({"type": "object"}))
    (kept,) = json_gate.checked(CaptionResult([Candidate(LOOP, 12, True)])).candidates
    assert kept.text == LOOP  # a document is never cut

def test_only_failing_candidates_are_replaced_and_attempts_recorded():
    gate = QualityGate(GateConfig(max_retries=2), settings=make_settings())
    first = gate.checked(CaptionResult([Candidate("A cat sits.", 3, False),
                                        Candidate("A dog", 2, True)]))
    assert [c.attempts for c in first.candidates] == [((),), ((TRUNCATED,),)]
    assert failing(first)
    retried = gate.checked(CaptionResult([Candidate("Other.", 1, False),
                                          Candidate("A dog runs.", 3, False)]), first)
    assert [c.text for c in retried.candidates] == ["A cat sits.", "A dog runs."]
    assert [c.attempts for c in retried.candidates] == [((),), ((TRUNCATED,), ())]
    assert not failing(retried)
    # a retry the server or engine failed leaves the result as it was
    assert gate.checked(CaptionResult.failure("timeout", "late"), first) is first


# ---- properties the issue asks of the measures, beyond tests/test_quality.py's ----

words = st.text(alphabet="abcdefghij", min_size=1, max_size=6)


@given(st.lists(words, min_size=1, max_size=40, unique=True))
def test_distinct_words_are_never_a_loop(tokens):
    """No false loop: a text whose words are all different repeats nothing."""
    assert not has_repetition_loop(" ".join(tokens))


@given(st.text(alphabet=st.characters(categories=("Lu", "Ll", "Zs")), max_size=80))
def test_letters_and_spaces_are_never_garbage(text):
    assert not is_garbage(text)


@given(st.text(alphabet=st.characters(categories=("Nd", "Po", "Sm", "So")),
               min_size=DEFAULT_THRESHOLDS.min_chars_for_share, max_size=60))
def test_runs_of_digits_punctuation_or_symbols_are_garbage(text):
    """"!!!!", "1 1 1 1", "???": no letter at all, judged once long enough."""
    assert is_garbage(text)


def make_settings():
    from dj_ops.captioning.generation import GenerationSettings
    return GenerationSettings(max_new_tokens=4)


# ---- the op on the transformers backend (micro-batch path) ----

def test_retries_off_leave_the_output_as_without_the_gate(qwen3, videos):
    """max_retries 0 (the default): the rows are byte-identical to the op's without any gate,
    the flags and the gate's one repetition decision aside (none loops here)."""
    samples = single_video_samples(videos[:3])
    gated = run_op(make_op(qwen3, sampling_params=CUT), samples)
    op = make_op(qwen3, sampling_params=CUT)
    op._captioner = Captioner(op.config, op.model_key, OP_NAME)
    op._captioner.gate = None  # the backend's candidates as they come
    plain = run_op(op, samples)
    assert not any(v["repetition_trimmed"] for rec in records(gated) if rec
                   for v in rec["videos"])
    assert [without_gate_fields(r) if r[Fields.meta].get(META_KEY) else r for r in gated] == [
        without_gate_fields(r) if r[Fields.meta].get(META_KEY) else r for r in plain]
    flagged = [v for rec in records(gated) if rec for v in rec["videos"]]
    assert flagged and all(v["attempts"] == 1 for v in flagged)
    assert all(TRUNCATED in v["quality_flags"] for v in flagged)  # cut mid-sentence


def test_cut_captions_are_retried_and_every_attempt_recorded(qwen3, videos):
    samples = single_video_samples(videos[:3])
    rows = run_op(make_op(qwen3, sampling_params=CUT, max_retries=2, keep_original_sample=False),
                  samples)
    assert len(rows) == len(samples)
    retried = 0
    for record in records(rows):
        assert record["status"] == "captioned"
        (video,) = record["videos"]
        attempts, flags = video["attempts"], list(video["attempt_flags"])
        assert 1 <= attempts <= 3 and len(flags) == attempts
        assert all(f for f in flags[:-1])  # each attempt but the last one failed
        assert ",".join(video["quality_flags"]) == flags[-1]
        if flags[-1]:  # still failing: every retry was made
            assert attempts == 3 and TRUNCATED in video["quality_flags"]
        if attempts > 1:
            retried += 1
            assert video["decoding"] == "generate"  # retries run plain generate
    assert retried  # four random tokens rarely end a sentence


def test_low_quality_becomes_an_error_record_and_no_row_is_lost(qwen3, videos):
    samples = single_video_samples(videos[:3])
    params = dict(sampling_params=CUT, max_retries=1, on_low_quality="error",
                  keep_original_sample=False)
    rows = run_op(make_op(qwen3, **params), samples)
    assert len(rows) == len(samples)
    errors = [r for r in records(rows) if r["status"] == "error"]
    assert errors, "four random tokens should fail both attempts for some video"
    for record in errors:
        (video,) = record["videos"]
        assert video["error_kind"] == LOW_QUALITY
        assert re.search(r"candidate 0: .*truncated.* \(2 attempts\)", video["error_message"])
    dropped = run_op(make_op(qwen3, **params, on_error="drop"), samples)
    assert len(dropped) == len(samples) - len(errors)
    with pytest.raises(Exception, match=LOW_QUALITY):
        run_op(make_op(qwen3, **params, on_error="raise"), samples)


def test_the_store_keeps_the_gated_candidates(tmp_path, qwen3, videos):
    samples = single_video_samples(videos[:2])
    params = dict(sampling_params=CUT, max_retries=1, keep_original_sample=False,
                  result_store=str(tmp_path / "store.sqlite"))
    first = run_op(make_op(qwen3, **params), samples)
    again = run_op(make_op(qwen3, **params), samples)
    assert [r["text"] for r in again] == [r["text"] for r in first]
    for a, b in zip(records(first), records(again)):
        (va,), (vb,) = a["videos"], b["videos"]
        assert vb["from_store"] and not va["from_store"]
        assert (vb["attempts"], list(vb["attempt_flags"])) == (va["attempts"],
                                                               list(va["attempt_flags"]))


@pytest.mark.parametrize("params, message", [
    ({"quality_thresholds": {"max_repeat": 2}},
     "unknown quality_thresholds key(s) ['max_repeat']; valid keys are ['min_repeats'"),
    ({"quality_thresholds": {"max_non_letter_share": 0}}, "max_non_letter_share must be in"),
    ({"on_low_quality": "drop"}, "Input should be 'keep' or 'error'"),
    ({"max_retries": -1}, "Input should be greater than or equal to 0"),
])
def test_bad_gate_parameters_fail_at_construction(qwen3, params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_op(qwen3, **params)


def test_thresholds_are_parameters(qwen3, videos):
    """A share threshold of 1 and no refusal phrases: only the cut is flagged."""
    rows = run_op(make_op(qwen3, sampling_params=CUT, keep_original_sample=False,
                          quality_thresholds={"max_non_letter_share": 1.0,
                                              "max_replacement_chars": 1000}),
                  single_video_samples(videos[:2]))
    for record in records(rows):
        assert set(record["videos"][0]["quality_flags"]) <= {TRUNCATED, "repetition"}


# ---- keep_candidate_mode: consensus ----

def test_consensus_keeps_the_candidate_the_others_agree_with(qwen3, videos):
    """A bare video list (no original text to compare with): the kept caption is the consensus
    of the candidates that 'all' keeps with the same seed."""
    samples = [{"text": "", "videos": [v]} for v in videos[:3]]
    params = dict(caption_num=3, caption_key="caption", seed=3)
    every = run_op(make_op(qwen3, keep_candidate_mode="all", **params), samples)
    kept = run_op(make_op(qwen3, keep_candidate_mode="consensus", **params), samples)
    for all_row, row in zip(every, kept):
        (candidates,) = all_row["caption"]
        assert len(candidates) == 3
        assert row["caption"] == [candidates[consensus_index(candidates)]]
        assert row[Fields.meta][META_KEY]["keep_candidate_mode"] == "consensus"


# ---- the openai backend (continuous path) against a loopback server ----

def test_openai_retries_carry_the_retry_sampling(qwen3, videos):
    samples = single_video_samples(videos[:2])
    with CompletionServer(qwen3) as server:
        rows = run_op(make_op(qwen3, backend="openai", model_params={"api_base": server.url},
                              sampling_params=CUT, max_retries=1, keep_original_sample=False,
                              seed=7), samples)
        received = list(server.received)
    assert len(rows) == len(samples)
    first = [p for p in received if p["temperature"] == 0.0]
    retries = [p for p in received if p["temperature"] != 0.0]
    assert len(first) == len(samples)
    retried = [v for rec in records(rows) for v in rec["videos"] if v["attempts"] == 2]
    assert len(retries) == len(retried) >= 1
    for payload in retries:
        assert (payload["temperature"], payload["top_p"], payload["top_k"],
                payload["repetition_penalty"]) == (RETRY_TEMPERATURE, RETRY_TOP_P, RETRY_TOP_K,
                                                   RETRY_REPETITION_PENALTY)
        assert payload["seed"] == 7 + 1 and payload["max_tokens"] == CUT["max_new_tokens"]
    for payload in first:
        assert "top_k" not in payload and payload["seed"] == 7
