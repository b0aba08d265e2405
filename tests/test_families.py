"""transformers' video chat families, each a tiny random-weight checkpoint of its real classes:
what each needs is learned from its processor, and each captions clips of different lengths
(2, 4, 4 and 6 frames in one micro-batch) through the op and through ``dj-process``."""

from __future__ import annotations

import pytest
import transformers
from data_juicer.utils.constant import Fields
from loguru import logger

from dj_ops.adapters import registry
from dj_ops.adapters.base import ModelAdapter
from dj_ops.adapters.needs import ANY, ONE_PER_CALL, SAME_FRAME_COUNT, learn_video_needs
from dj_ops.adapters.registry import resolve_adapter
from dj_ops.backends.base import BackendConfig, CaptionRequest
from dj_ops.backends.transformers_backend import TransformersBackend
from dj_ops.captioning.generation import parse_sampling_params
from dj_ops.captioning.records import META_KEY
from dj_ops.testing.tiny_family_specs import SIDE
from dj_ops.video import FrameSettings, decode_video
from tests.conftest import FAST_SAMPLING, make_op, run_op
from tests.test_dj_process import run_recipe
from tests.video_families import (
    ALL_FAMILIES,
    FRAME_COUNTS,
    VARIED_FRAMES,
    E,
    FamilyModels,
    V,
    make_varied_clips,
    samples_of,
)

SQUARE = (SIDE, SIDE)
# family -> (batching, the processor resizes, its fixed size, frame times, video placeholder)
EXPECTED_NEEDS = {
    "qwen2_vl": (ANY, False, None, False, "<|video_pad|>"),
    "llava_onevision": (SAME_FRAME_COUNT, True, SQUARE, False, "<video>"),
    "llava_next_video": (SAME_FRAME_COUNT, True, SQUARE, False, "<video>"),
    "video_llava": (SAME_FRAME_COUNT, True, SQUARE, False, "<video>"),
    "internvl": (SAME_FRAME_COUNT, True, SQUARE, False, "<video>"),
    "smolvlm": (ANY, True, SQUARE, True, "<video>"),
    "glm4v": (ANY, False, None, True, "<|video|>"),
    "glm46v": (ANY, False, None, True, "<|video|>"),
    "video_llama_3": (ANY, False, None, True, "<|video_pad|>"),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> FamilyModels:
    return FamilyModels(tmp_path_factory.mktemp("tiny_families"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, str]:
    return make_varied_clips(tmp_path_factory.mktemp("varied_clips"))


def test_every_family_has_expectations():
    assert sorted(EXPECTED_NEEDS) == sorted(ALL_FAMILIES)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_needs_are_learned_from_the_processor(models, family):
    adapter = resolve_adapter(models[family])
    assert adapter.name == family  # a row of the table
    needs = adapter.learn(transformers.AutoProcessor.from_pretrained(models[family]))
    assert (needs.batching, needs.processor_resizes, needs.frame_size, needs.frame_times,
            needs.video_token) == EXPECTED_NEEDS[family]
    assert adapter.processor_kwargs()["do_resize"] is needs.processor_resizes


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_qwen_rows_say_what_their_processors_say(models, tiny_models, family):
    path = tiny_models.get(family) or models[family]
    declared = resolve_adapter(path).needs  # written in adapters/qwen.py, used without a processor
    assert declared == learn_video_needs(transformers.AutoProcessor.from_pretrained(path))


def _backend(model: str, num_candidates: int = 1, batch_size: int = 4) -> TransformersBackend:
    settings = parse_sampling_params(FAST_SAMPLING, num_candidates)
    return TransformersBackend(BackendConfig(model, settings, num_candidates=num_candidates,
                                             batch_size=batch_size, seed=0))


def _requests(clips: dict[str, str], factor: int) -> list[CaptionRequest]:
    settings = FrameSettings(**VARIED_FRAMES, size_factor=factor)
    decoded = [decode_video(path, settings) for path in clips.values()]
    return [CaptionRequest(d.frames, d.transformers_metadata(), "Describe the video.",
                           video_path=path) for d, path in zip(decoded, clips.values())]


@pytest.mark.parametrize("family,calls", [
    ("llava_onevision", [[6], [4, 4], [2]]),  # one frame count per call, dearest first
    ("glm4v", [[6, 4, 4, 2]]),  # patches of any video share a call
])
def test_micro_batches_follow_the_family(models, clips, family, calls):
    backend = _backend(models[family])
    sizes, original = [], backend.run_micro_batch

    def counted(requests):
        sizes.append([len(r.frames) for r in requests])
        return original(requests)

    backend.run_micro_batch = counted
    results = backend.generate(_requests(clips, backend.size_factor or 28))
    assert all(r.ok for r in results)
    assert sizes == calls
    assert {c.batching for r in results for c in r.candidates} == {EXPECTED_NEEDS[family][0]}


SAMPLING_FAILS = ("glm4v", "glm46v", "video_llama_3")  # samples_in_generate False


@pytest.mark.parametrize("family", SAMPLING_FAILS)
def test_sampled_candidates_repeat_each_prompt_where_generate_cannot(models, clips, family):
    """transformers 5.25 cannot return 2 sampled sequences per prompt for these families
    (measured in ``test_transformers_itself_cannot_sample_two_sequences``): the backend repeats
    each prompt instead, and the candidates are sampled apart."""
    backend = _backend(models[family], num_candidates=2)
    assert not backend.adapter.samples_in_generate
    results = backend.generate(_requests(clips, backend.size_factor))
    assert all(r.ok and len(r.candidates) == 2 for r in results)
    assert any(r.candidates[0].text != r.candidates[1].text for r in results)


@pytest.mark.parametrize("family", SAMPLING_FAILS)
def test_transformers_itself_cannot_sample_two_sequences(models, clips, family):
    """The fact behind ``samples_in_generate = False``: when this starts to pass through,
    the workaround can go (VideoLLaMA3 fails once its processor has dropped repeated patches,
    as on the 6-frame clip)."""
    backend = _backend(models[family])
    inputs = backend.encode(_requests(clips, backend.size_factor)[-1:])
    backend.model.generate(**inputs, max_new_tokens=2, do_sample=False)
    with pytest.raises(ValueError, match="expected a non-empty list of Tensors"):
        backend.model.generate(**inputs, max_new_tokens=2, do_sample=True,
                               num_return_sequences=2)


@pytest.mark.parametrize("caption_num", [1, 2])
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_each_family_captions_clips_of_different_lengths(models, clips, family, caption_num):
    op = make_op(models[family], caption_num=caption_num, keep_original_sample=False,
                 generation_batch_size=4, decode_workers=0, **VARIED_FRAMES)
    rows = run_op(op, samples_of(clips))
    records = [row[Fields.meta][META_KEY] for row in rows]
    assert [r["status"] for r in records] == ["captioned"] * len(clips)
    assert [r["videos"][0]["frames"]["count"] for r in records] == list(FRAME_COUNTS.values())
    assert {r["videos"][0]["batching"] for r in records} == {EXPECTED_NEEDS[family][0]}
    assert all(row["text"].strip() for row in rows)


def test_a_family_not_in_the_table_takes_the_safe_path(models, clips, monkeypatch):
    """Its row removed, LLaVA-OneVision is a family nobody tested: one video per call, frames
    resized by its processor, one log line saying so; it still captions every clip."""
    monkeypatch.delitem(registry.ADAPTERS, "llava_onevision")
    assert type(resolve_adapter(models["llava_onevision"])) is ModelAdapter
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="INFO")
    try:
        for _ in range(2):
            backend = _backend(models["llava_onevision"])
        results = backend.generate(_requests(clips, 28))
    finally:
        logger.remove(sink)
    assert backend.batch_size == 1 and backend.videos_kwargs["do_resize"] is True
    assert all(r.ok for r in results)
    assert {c.batching for r in results for c in r.candidates} == {ONE_PER_CALL}
    assert sum("not in dj_ops' family table" in line for line in lines) == 1


# the default run takes a family whose processor flattens videos and one that stacks them
# (about 11 s each through dj-process); the slow tier takes every family
DJ_PROCESS_DEFAULT = ("qwen2_vl", "llava_onevision")


@pytest.mark.parametrize("caption_num", [2, pytest.param(1, marks=pytest.mark.slow)])
@pytest.mark.parametrize("family", [
    family if family in DJ_PROCESS_DEFAULT else pytest.param(family, marks=pytest.mark.slow)
    for family in ALL_FAMILIES])
def test_a_plain_recipe_captions_each_family_through_dj_process(tmp_path, models, clips, videos,
                                                                family, caption_num):
    """``hf_model``, ``caption_num``, a small ``max_new_tokens``, stats kept, nothing else; the
    varied clips and two of the project's sample clips (real ones in a full checkout) in one
    micro-batch. (``caption_num: 1`` runs in the slow tier: the op test above covers it.)"""
    params = {"hf_model": models[family], "caption_num": caption_num,
              "sampling_params": {"max_new_tokens": 8}, **VARIED_FRAMES}
    samples = samples_of(clips) + [{"text": f"{V} {E}", "videos": [v]} for v in videos[:2]]
    rows = run_recipe(tmp_path, samples, params)
    generated = [r for r in rows if r[Fields.meta].get(META_KEY)]
    assert len(rows) == 2 * len(samples) and len(generated) == len(samples)
    records = [r[Fields.meta][META_KEY] for r in generated]
    assert {r["status"] for r in records} == {"captioned"}
    counts = sorted(r["videos"][0]["frames"]["count"] for r in records)
    assert counts[:4] == sorted(FRAME_COUNTS.values()) and len(set(counts)) >= 3
    assert {r["videos"][0]["batching"] for r in records} == {EXPECTED_NEEDS[family][0]}
    assert all(r["videos"][0]["generated_tokens"] > 0 for r in records)


@pytest.mark.parametrize("family", [family if family == "smolvlm" else pytest.param(
    family, marks=pytest.mark.slow) for family in ALL_FAMILIES])
def test_structured_captions_on_each_family(models, clips, family):
    """``caption_format: json``: the grammar is compiled for the family's tokenizer, and every
    video's document is valid under the schema (clips of two frame counts in one call). Up to
    400 constrained tokens a video: one family in the default run, the others in the slow tier."""
    pytest.importorskip("llguidance", reason="constrained decoding needs the structured extra")
    from tests.test_structured_op import USER_SCHEMA, USER_SCHEMA_TOKENS, check_rows, json_op

    lengths = {"tiny": 6, "full": 60}
    two = {name: clips[name] for name in ("one_second", "three_seconds")}
    rows = run_op(json_op(models[family], USER_SCHEMA_TOKENS, json_schema=USER_SCHEMA,
                          caption_lengths=lengths, keep_original_sample=False,
                          decode_workers=0, **VARIED_FRAMES), samples_of(two))
    assert check_rows(rows, USER_SCHEMA, lengths) == 2


@pytest.mark.slow
def test_the_batching_bench_counts_the_calls_each_way(tmp_path):
    """bench/family_batching.py on a few videos: its call counts are the grouping's (timings
    are the bench's to report, never asserted)."""
    from bench.family_batching import frame_counts, measure

    result = measure(requests=8, rounds=1, new_tokens=2, group=4, folder=tmp_path)
    for family, workloads in result["families"].items():
        for workload, numbers in workloads.items():
            calls = numbers["generate_calls"]
            assert calls["one_per_call"] == 8 and calls["common_count"] == 2
            counts = frame_counts(workload, 8)
            distinct = len(set(counts[:4])) + len(set(counts[4:]))
            assert calls["grouped"] == (2 if family == "qwen2_vl" else distinct)
