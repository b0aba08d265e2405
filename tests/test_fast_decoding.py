"""The transformers backend's speed-ups run only where they were checked, check themselves on the
first micro-batch, fall back to plain ``generate`` when they fail, and say which path decoded
each caption. Models: the tiny Qwen3-VL (checked), a tiny LLaVA-OneVision (a video model outside
the allowlist) and tiny text models: Bloom, whose attention bypasses the interface, and Llama, on
which the fast path runs until an injected fault makes it fail."""

from __future__ import annotations

import contextlib

import pytest
import torch
import transformers
from data_juicer.utils.constant import Fields
from loguru import logger

from dj_ops.adapters.base import ModelAdapter
from dj_ops.adapters.patch_embedding import PatchConv3d
from dj_ops.backends.base import BackendConfig
from dj_ops.backends.fast_decoding import (
    GENERATE,
    SHARED_PREFIX,
    FastDecoding,
    fast_decoding_blockers,
    plain_generate,
)
from dj_ops.backends.transformers_backend import TransformersBackend
from dj_ops.captioning.generation import parse_sampling_params
from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.requests import CaptionRequest
from dj_ops.ops.config import DEFAULT_PROMPT
from dj_ops.testing.tiny_llava import PROCESSOR_KWARGS, build_tiny_llava
from dj_ops.video import FrameSettings, decode_video
from tests.conftest import FAST_FRAMES, make_op, run_op

GREEDY = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False}


@pytest.fixture(scope="module")
def llava(tmp_path_factory) -> str:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"))


@pytest.fixture
def warnings_logged():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    yield lines
    logger.remove(sink)


def backend_for(model: str, sampling: dict, **params) -> TransformersBackend:
    config = BackendConfig(model=model, settings=parse_sampling_params(sampling, 1), seed=0,
                           **params)
    return TransformersBackend(config)


def requests_for(backend, videos: list[str], prompt: str = DEFAULT_PROMPT) -> list[CaptionRequest]:
    settings = FrameSettings(size_factor=backend.size_factor or 28, **FAST_FRAMES)
    decoded = [decode_video(v, settings) for v in videos]
    return [CaptionRequest(d.frames, d.transformers_metadata(), prompt) for d in decoded]


def decodings(rows: list[dict]) -> list[str]:
    return [v["decoding"] for r in rows for v in r[Fields.meta][META_KEY]["videos"]]


# --- where the speed-ups may run ------------------------------------------------------------


def test_each_reason_to_stay_off_is_named(qwen3):
    model = transformers.AutoModelForImageTextToText.from_pretrained(qwen3)
    checked = ("qwen3_vl",)

    def blockers(**changes):
        params = {"mode": "auto", "checked_model_types": checked, "attn_implementation": None,
                  "generate_kwargs": {}, **changes}
        return " | ".join(fast_decoding_blockers(model, **params))

    assert blockers() == ""
    assert blockers(mode="off") == "fast_decoding is off"
    assert "not checked on model_type 'qwen3_vl'" in blockers(checked_model_types=())
    assert "attn_implementation='eager' is used as given" in blockers(
        attn_implementation="eager")
    assert "outside the checked range" in blockers(version="4.57.1")
    assert "['repetition_penalty'] read the prompt's tokens" in blockers(
        generate_kwargs={"repetition_penalty": 1.3})
    model.generation_config.repetition_penalty = 1.05  # as Qwen2.5-VL checkpoints ship it
    assert "['repetition_penalty'] read the prompt's tokens" in blockers()
    assert blockers(generate_kwargs={"repetition_penalty": 1.0}) == ""  # the settings win
    bloom = transformers.BloomForCausalLM(transformers.BloomConfig(
        vocab_size=64, hidden_size=32, n_layer=1, n_head=2))
    assert "does not route attention through" in " ".join(fast_decoding_blockers(
        bloom, mode="auto", checked_model_types=("bloom",), attn_implementation=None,
        generate_kwargs={}))


def test_qwen_captions_are_the_same_either_way_and_say_which_path_made_them(qwen3, videos):
    samples = [{"text": "", "videos": [v]} for v in videos[:3]]
    params = {"keep_original_sample": False, "generation_batch_size": 2,
              "sampling_params": GREEDY}
    fast = run_op(make_op(qwen3, **params), samples)
    plain = run_op(make_op(qwen3, fast_decoding="off", **params), samples)
    assert [r["text"] for r in fast] == [r["text"] for r in plain]
    assert decodings(fast) == [SHARED_PREFIX] * 3 and decodings(plain) == [GENERATE] * 3


def test_off_keeps_the_stock_patch_embedding(qwen3):
    on, off = backend_for(qwen3, GREEDY), backend_for(qwen3, GREEDY, fast_decoding="off")
    assert any(type(m) is PatchConv3d for m in on.model.modules())
    assert not any(type(m) is PatchConv3d for m in off.model.modules())
    assert on.separate_prefill and not off.separate_prefill


def test_a_users_attn_implementation_is_kept(qwen3, videos):
    backend = backend_for(qwen3, GREEDY, model_params={"attn_implementation": "eager"})
    assert not backend.separate_prefill
    results = backend.generate(requests_for(backend, videos[:2]))
    assert [c.decoding for r in results for c in r.candidates] == [GENERATE] * 2
    assert backend.model.config.get_text_config()._attn_implementation == "eager"


# --- a video model outside the allowlist ----------------------------------------------------


def caption_with_the_op(llava: str, videos: list[str]) -> list[dict]:
    samples = [{"text": "", "videos": [v]} for v in videos[:3]]
    op = make_op(llava, keep_original_sample=False, generation_batch_size=2,
                 sampling_params=GREEDY, model_params={"processor_kwargs": PROCESSOR_KWARGS})
    return run_op(op, samples)


def test_a_model_outside_the_allowlist_is_captioned_by_plain_generate(llava, videos):
    rows = caption_with_the_op(llava, videos)
    assert [r[Fields.meta][META_KEY]["status"] for r in rows] == ["captioned"] * 3
    assert decodings(rows) == [GENERATE] * 3


def test_once_allowed_its_first_micro_batch_is_checked_and_captions_do_not_change(
        llava, videos, monkeypatch):
    plain = caption_with_the_op(llava, videos)
    monkeypatch.setattr(ModelAdapter, "fast_decoding_checked", ("llava_onevision",))
    backend = backend_for(llava, GREEDY, model_params={"processor_kwargs": PROCESSOR_KWARGS})
    requests = requests_for(backend, videos[:3])
    assert backend.separate_prefill and not backend.fast.checked
    results = backend.generate(requests)
    assert backend.fast.checked and backend.fast.enabled  # it routes attention: the check passed
    assert [r.candidates[0].decoding for r in results] == [SHARED_PREFIX] * 3
    texts = [r["text"].split("<__dj__video>")[1].split("<|__dj__eoc|>")[0].strip() for r in plain]
    assert [r.candidates[0].text for r in results] == texts


# --- the first micro-batch's check, and falling back ----------------------------------------


def mismatching_requests(backend, videos) -> list:
    """Two requests prompted with a clip's own caption on which the forced fast path and plain
    ``generate`` really differ. Whether a clip gives a difference depends on its content (the
    real sample clips and the generated stand-ins differ), so the clips are tried in turn."""
    for video in videos:
        [first] = backend.generate(requests_for(backend, [video]))
        requests = requests_for(backend, videos[:2], prompt=first.candidates[0].text)
        probe = FastDecoding(backend.model, blockers=[])
        if probe.generate(requests, backend.encode, backend.generate_kwargs, 1)[1] == GENERATE:
            return requests
    raise AssertionError("no clip's own caption made the fast path differ")


def test_a_mismatch_on_the_first_micro_batch_turns_the_fast_path_off_once(qwen3, videos,
                                                                         warnings_logged):
    """With a repetition penalty (which the allowlist refuses) the fast path really differs:
    generate is fed only the prompt's last token, so it does not penalise the prompt's words.
    A prompt made of the model's own caption makes the difference certain."""
    backend = backend_for(qwen3, {**GREEDY, "repetition_penalty": 1000.0})
    assert not backend.separate_prefill  # refused up front...
    requests = mismatching_requests(backend, videos)
    warnings_logged.clear()  # the probes' own warnings
    fast = FastDecoding(backend.model, blockers=[])  # ...and forced here, to see the check
    tokens, path = fast.generate(requests, backend.encode, backend.generate_kwargs, 1)
    assert path == GENERATE and fast.checked and not fast.enabled
    assert not any(type(m) is PatchConv3d for m in backend.model.modules())
    with torch.inference_mode():
        expected = plain_generate(backend.model, backend.encode(requests), backend.generate_kwargs)
    assert torch.equal(tokens, expected)
    _, again = fast.generate(requests, backend.encode, backend.generate_kwargs, 1)
    assert again == GENERATE
    [warning] = [w for w in warnings_logged if "fast decoding turned off" in w]
    assert "greedy tokens differ from plain generate's" in warning


def text_model(config) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


TEXT_KWARGS = {"max_new_tokens": 5, "do_sample": False, "num_return_sequences": 1,
               "pad_token_id": 0}


def test_attention_that_bypasses_the_interface_falls_back_and_stays_off(warnings_logged):
    model, inputs = text_model(transformers.BloomConfig(vocab_size=64, hidden_size=32,
                                                        n_layer=2, n_head=2))
    fast = FastDecoding(model, blockers=[])
    fast.checked = True  # straight to a fast micro-batch
    with torch.inference_mode():
        tokens, path = fast.generate(["one"], lambda _: inputs, TEXT_KWARGS, 1)
        expected = plain_generate(model, inputs, TEXT_KWARGS)
    assert path == GENERATE and torch.equal(tokens, expected) and not fast.enabled
    assert any("did not call the registered attention function" in w for w in warnings_logged)


class InjectedFault(RuntimeError):
    """The error :func:`failing_forwards` raises (not out of memory: the fast path falls back)."""


@contextlib.contextmanager
def failing_forwards(model: torch.nn.Module, times: int):
    """The model's next ``times`` forward calls raise :class:`InjectedFault`, then it runs as
    before. With the fast path on, the first forward of a micro-batch is its first separate
    prefill, so the fault lands in the fast path whatever the model class."""
    left = [times]

    def hook(module, args, kwargs):
        if left[0] > 0:
            left[0] -= 1
            raise InjectedFault("injected fault in the fast path's prefill")

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield left
    finally:
        handle.remove()


def test_a_failing_fast_micro_batch_is_generated_plainly_and_the_next_tries_again(
        warnings_logged):
    """A tiny Llama, on which the fast path runs (checked below), made to fail once by an
    injected fault: that micro-batch falls back to plain generate, the next runs fast again."""
    model, inputs = text_model(transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2))
    fast = FastDecoding(model, blockers=[])
    fast.checked = True
    with torch.inference_mode():
        expected = plain_generate(model, inputs, TEXT_KWARGS)
        with failing_forwards(model, times=1) as left:
            tokens, path = fast.generate(["one"], lambda _: inputs, TEXT_KWARGS, 1)
        assert left == [0]  # the fault fired
        assert path == GENERATE and torch.equal(tokens, expected)
        assert fast.enabled  # one micro-batch fell back; the fast path is not given up
        assert any("which plain generate captions instead" in w and "InjectedFault" in w
                   for w in warnings_logged)
        tokens, path = fast.generate(["two"], lambda _: inputs, TEXT_KWARGS, 1)
    assert path == SHARED_PREFIX and torch.equal(tokens, expected)
