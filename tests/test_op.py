"""The op end to end on a tiny random-weight Qwen-VL and real videos, run as Data-Juicer runs it."""

from __future__ import annotations

import re

import pytest
import transformers
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens, get_special_tokens
from datasets import Dataset

from dj_ops.captioning.generation import DEFAULT_SAMPLING_TEMPERATURE, DEFAULT_SAMPLING_TOP_P
from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.text import special_tokens_only
from tests.conftest import FAST_SAMPLING, make_op, run_op

V, E = SpecialTokens.video, SpecialTokens.eoc
SPECIAL = list(get_special_tokens().values())
SPECIAL_PATTERN = "|".join(re.escape(t) for t in sorted(SPECIAL, key=len, reverse=True))


def single_video_samples(videos):
    return [{"text": f"{V} original caption {i} {E}", "videos": [v]} for i, v in enumerate(videos)]


def captions_after_video_tokens(text: str) -> list[str]:
    """The text between each video token and the next special token (or the end)."""
    return [
        m.strip()
        for m in re.findall(rf"{re.escape(V)}(.*?)(?={SPECIAL_PATTERN}|$)", text, flags=re.S)
    ]


def assert_generated(original: dict, generated: dict) -> None:
    n_videos = len(original["videos"])
    expected_layout = special_tokens_only(original["text"], SPECIAL)
    if original["text"].count(V) == 0:
        expected_layout += V * n_videos + E
    assert special_tokens_only(generated["text"], SPECIAL) == expected_layout
    captions = captions_after_video_tokens(generated["text"])
    assert len(captions) == n_videos and all(captions), generated["text"]
    assert generated["videos"] == original["videos"]
    record = generated[Fields.meta][META_KEY]
    assert record["status"] == "captioned"
    assert [v["path"] for v in record["videos"]] == original["videos"]
    assert all(v["generated_tokens"] > 0 and v["timestamps"] for v in record["videos"])


EXPECTED_NEW = {"random_any": 1, "similar_one_simhash": 1, "all": 3, "consensus": 1}


@pytest.mark.parametrize("mode", ["random_any", "similar_one_simhash", "all", "consensus"])
@pytest.mark.parametrize("keep_original", [True, False])
def test_row_counts_and_layout_for_every_mode(qwen3, videos, mode, keep_original):
    samples = single_video_samples(videos)
    op = make_op(qwen3, caption_num=3, keep_candidate_mode=mode, keep_original_sample=keep_original)
    rows = run_op(op, samples)
    per_original = EXPECTED_NEW[mode] + int(keep_original)
    assert len(rows) == len(samples) * per_original
    for i, original in enumerate(samples):
        group = rows[i * per_original : (i + 1) * per_original]
        generated = group[1:] if keep_original else group
        if keep_original:
            assert group[0]["text"] == original["text"]
            assert group[0]["videos"] == original["videos"]
            assert not (group[0][Fields.meta] or {}).get(META_KEY)
        for g in generated:
            assert_generated(original, g)
        if mode == "all":
            indices = [g[Fields.meta][META_KEY]["candidate_index"] for g in generated]
            assert indices == [0, 1, 2]
            assert len({g["text"] for g in generated}) > 1  # sampled candidates differ


def test_several_videos_per_chunk_and_several_chunks(qwen3, videos):
    samples = [
        {"text": f"{V}{V} two clips {E}", "videos": videos[:2]},
        {"text": f"{V} first {E} no video here {E}{V}{V} last {E}", "videos": videos[1:4]},
        {"text": f"{V} unterminated", "videos": videos[4:5]},
    ]
    rows = run_op(make_op(qwen3, keep_original_sample=False), samples)
    assert len(rows) == 3
    for original, generated in zip(samples, rows):
        assert_generated(original, generated)
    assert rows[1]["text"].count(E) == 3 and not rows[2]["text"].endswith(E)


def test_bare_video_list_is_captioned_as_one_chunk(qwen3, videos):
    samples = [{"text": "", "videos": videos[:2]}, {"text": "no tokens", "videos": videos[2:3]}]
    rows = run_op(make_op(qwen3, keep_original_sample=False), samples)
    assert len(rows) == 2
    for original, generated in zip(samples, rows):
        assert_generated(original, generated)


def test_per_sample_prompts_through_prompt_key(qwen3, videos):
    prompts = ["Describe the colours.", "What happens first?"]
    samples = [{**s, "question": p} for s, p in zip(single_video_samples(videos[:2]), prompts)]
    rows = run_op(make_op(qwen3, prompt_key="question", keep_original_sample=False), samples)
    assert [r[Fields.meta][META_KEY]["prompt"] for r in rows] == prompts


def test_invalid_per_sample_prompt_is_recorded_not_lost(qwen3, videos):
    samples = [
        {**s, "question": q}
        for s, q in zip(single_video_samples(videos[:2]), ["Describe it.", "   "])
    ]
    rows = run_op(make_op(qwen3, prompt_key="question", keep_original_sample=False), samples)
    assert len(rows) == 2
    assert rows[0][Fields.meta][META_KEY]["status"] == "captioned"
    failed = rows[1][Fields.meta][META_KEY]
    assert failed["status"] == "error" and failed["videos"][0]["error_kind"] == "invalid_prompt"
    assert rows[1]["text"] == samples[1]["text"]


def test_token_video_mismatch_is_a_per_sample_error(qwen3, videos):
    samples = single_video_samples(videos[:2])
    samples[1]["videos"] = videos[1:3]  # one token, two videos
    rows = run_op(make_op(qwen3, keep_original_sample=False), samples)
    assert len(rows) == 2
    assert rows[0][Fields.meta][META_KEY]["status"] == "captioned"
    error = rows[1][Fields.meta][META_KEY]["videos"][0]
    assert (
        error["error_kind"] == "token_video_mismatch" and "1 video token" in error["error_message"]
    )


def test_samples_without_videos_pass_through(qwen3, videos):
    samples = [{"text": "plain text", "videos": []}] + single_video_samples(videos[:1])
    rows = run_op(make_op(qwen3, keep_original_sample=False), samples)
    assert [r["text"] for r in rows][0] == "plain text" and len(rows) == 2
    assert rows[0][Fields.meta] == {META_KEY: None}  # the op's key, without a record


def test_every_batch_types_the_meta_field_alike(qwen3, videos):
    # A batch mixing rows without a record (originals, rows without videos) and captioned
    # rows used to be typed as Json by datasets, a batch of captioned rows as a struct: with
    # num_proc 2 the two shards could not be joined and the job failed.
    op = make_op(qwen3, keep_original_sample=True)
    mixed = [{"text": "plain text", "videos": []}] + single_video_samples(videos[:1])
    typed = [Dataset.from_list(part).map(op.process, batched=True, batch_size=10,
                                         load_from_cache_file=False).features[Fields.meta]
             for part in (mixed, single_video_samples(videos[1:2]))]
    assert isinstance(typed[0], dict) and typed[0] == typed[1]


def test_batched_generation_equals_one_at_a_time(qwen3, videos):
    samples = single_video_samples(videos)
    batched = run_op(make_op(qwen3, generation_batch_size=8, keep_original_sample=False), samples)
    single = run_op(
        make_op(qwen3, generation_batch_size=1, keep_original_sample=False), samples, batch_size=1
    )
    assert [r["text"] for r in batched] == [r["text"] for r in single]


def test_fixed_seed_reproduces_sampled_output(qwen3, videos):
    samples = single_video_samples(videos[:3])
    params = dict(caption_num=2, keep_candidate_mode="all", keep_original_sample=False, seed=5)
    first = run_op(make_op(qwen3, **params), samples)
    again = run_op(make_op(qwen3, **params), samples)
    other = run_op(make_op(qwen3, **{**params, "seed": 6}), samples)
    assert [r["text"] for r in first] == [r["text"] for r in again]
    assert [r["text"] for r in first] != [r["text"] for r in other]


def test_two_worker_processes(qwen3, videos):
    samples = single_video_samples(videos) * 2
    rows = run_op(make_op(qwen3, keep_original_sample=False), samples, batch_size=2, num_proc=2)
    assert len(rows) == len(samples)
    for original, generated in zip(samples, rows):
        assert_generated(original, generated)


def test_qwen2_5_vl_family(tiny_models, videos):
    samples = single_video_samples(videos[:2])
    rows = run_op(make_op(tiny_models["qwen2_5_vl"], keep_original_sample=False), samples)
    assert len(rows) == len(samples) == 2  # zip below would pass on an empty output
    for original, generated in zip(samples, rows, strict=True):
        assert_generated(original, generated)


def test_provenance_record(qwen3, videos):
    rows = run_op(
        make_op(
            qwen3,
            keep_original_sample=False,
            max_frames=4,
            sampling_params={"max_new_tokens": 3, "min_new_tokens": 3},
        ),
        single_video_samples(videos[:1]),
    )
    record = rows[0][Fields.meta][META_KEY]
    assert record["model"] == qwen3 and record["backend"] == "transformers"
    assert record["generation"]["max_new_tokens"] == 3
    video = record["videos"][0]
    assert video["generated_tokens"] == 3 and video["hit_token_limit"] is True
    assert video["decoding"] == "shared_prefix"  # the checked fast path made it
    assert len(video["timestamps"]) == 4 and video["timestamps"] == sorted(video["timestamps"])


def test_generation_record_is_what_ran(qwen3, videos):
    """An object (not a JSON string) saying how the captions were generated: greedy for one
    candidate, sampled with the op's defaults and the model's own top_k for several."""
    samples = single_video_samples(videos[:1])
    greedy, sampled = (
        run_op(make_op(qwen3, keep_original_sample=False, caption_num=n), samples)[0]
        [Fields.meta][META_KEY]["generation"] for n in (1, 2))
    assert greedy == {"do_sample": False, "max_new_tokens": FAST_SAMPLING["max_new_tokens"],
                      "min_new_tokens": FAST_SAMPLING["min_new_tokens"], "temperature": None,
                      "top_p": None, "top_k": None, "repetition_penalty": greedy[
                          "repetition_penalty"], "stop": [], "seed": 0}
    model_defaults = transformers.GenerationConfig.from_pretrained(qwen3)
    # generate's order: our settings, then the model's generation_config, then transformers'
    library_defaults = {"top_k": 50, "repetition_penalty": 1.0}
    top_k = model_defaults.top_k or library_defaults["top_k"]
    penalty = model_defaults.repetition_penalty or library_defaults["repetition_penalty"]
    assert sampled["do_sample"] is True
    assert (sampled["temperature"], sampled["top_p"]) == (DEFAULT_SAMPLING_TEMPERATURE,
                                                          DEFAULT_SAMPLING_TOP_P)
    assert sampled["top_k"] == top_k
    assert greedy["repetition_penalty"] == sampled["repetition_penalty"] == float(penalty)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"keep_candidate_mode": "best"},
         "Input should be 'random_any', 'similar_one_simhash', 'all' or 'consensus'"),
        ({"on_error": "ignore"}, "Input should be 'keep', 'drop' or 'raise'"),
        ({"caption_num": 0}, "Input should be greater than 0"),
        ({"hf_model": "/no/such/model"}, "hf_model='/no/such/model': no such folder"),
        ({"backend": "tgi"}, "backend='tgi' is not supported; choose one of"),
        ({"prompt": "  "}, "prompt is empty"),
        ({"sampling_params": {"temprature": 1}}, "valid keys are"),
        ({"frame_strategy": "every"}, "every"),
        ({"fast_decoding": "always"}, "Input should be 'auto' or 'off'"),
    ],
)
def test_invalid_parameters_fail_at_construction(qwen3, params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_op(qwen3, **params)


def test_a_copy_sent_to_a_worker_starts_afresh_and_counts_from_zero(qwen3, videos):
    import dill

    op = make_op(qwen3, decode_workers=0, keep_original_sample=False)
    samples = [{"text": "", "videos": [videos[0]]}]
    first = run_op(op, samples)
    assert op.outcome_log.batches == 1
    copy = dill.loads(dill.dumps(op))  # how Data-Juicer's workers receive the op
    assert copy.outcome_log.batches == 0
    assert run_op(copy, samples) == first and copy.outcome_log.total.rows == 1
    assert op.outcome_log.batches == 1  # the original's tally is its own
