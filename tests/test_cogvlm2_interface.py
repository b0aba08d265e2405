"""The stand-in CogVLM2 checkpoint against the facts of the real remote code, each stated next
to its source: the files of ``THUDM/cogvlm2-llama3-caption`` (public copies: ``modeling_cogvlm.py``
in csbhr/Vivid-VR, ``visual.py`` and ``configuration_cogvlm.py`` vendored in
Alwaysssssss/sglang; see ``servers/cogvlm2/dj_ops_cogvlm2_server/remote_code.py``). The facts
are restated here, not imported from the stand-in, so that the stand-in (and through it every
CI run of the server) is held to them; ``prompt_token_count`` and ``prompt_position_count``
are dj_ops' own statement of them (``dj_ops/adapters/cogvlm2_interface.py``), checked here
too.

Tier ``cogvlm2_env``: the stand-in is loaded by transformers 4.42 in the server's environment.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dj_ops.adapters import CogVLM2Adapter, resolve_adapter
from dj_ops.adapters.cogvlm2_interface import (
    PAD_TOKEN_ID,
    prompt_position_count,
    prompt_token_count,
)
from dj_ops.testing.cogvlm2_server import env_python, server_env, shared_standin

pytestmark = [
    pytest.mark.cogvlm2_env,
    pytest.mark.skipif(env_python() is None, reason=(
        "the CogVLM2 server environment is absent: run `bash servers/cogvlm2/setup_env.sh`")),
]
QUERY = "Please describe this video in detail."
FRAMES = 24  # the card's most
LANGUAGE, VISION = 0, 1
# Run in the server's environment: the stand-in, loaded as remote code, given one video.
PROBE = """
import inspect, json, sys, tempfile, torch
from dj_ops_cogvlm2_server.compat import provide_functional_tensor
provide_functional_tensor()
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.utils import GenerationMixin
checkpoint, frames, query = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained(checkpoint, trust_remote_code=True)
model.config.record_dir = tempfile.mkdtemp()
embedding = model.get_input_embeddings()
out = {"tokenizer_size": len(tokenizer), "vocab_size": model.config.vocab_size,
       "embedding_rows": embedding.num_embeddings, "padding_idx": embedding.padding_idx,
       "token_128002": tokenizer.convert_ids_to_tokens(128002),
       "time_ids": [tokenizer.encode(str(i), add_special_tokens=False) for i in range(frames)],
       "hook": list(inspect.signature(type(model)._update_model_kwargs_for_generation).parameters),
       "extract": list(inspect.signature(
           GenerationMixin._extract_past_from_model_output).parameters)}
torch.manual_seed(0)
video = torch.randint(0, 256, (3, frames, 48, 64), dtype=torch.uint8)
for version in ("chat", "base"):
    built = model.build_conversation_input_ids(tokenizer, query=query, images=[video],
                                               history=[], template_version=version)
    out[version] = {k: built[k].tolist() for k in ("input_ids", "token_type_ids")}
    out[version]["images"] = [list(built["images"][0].shape), str(built["images"][0].dtype)]
    out[version]["text_ids"] = tokenizer.encode(
        {"chat": "Question: %s Answer:", "base": "%s"}[version] % query, add_special_tokens=False)
    model.generate(input_ids=built["input_ids"][None], token_type_ids=built["token_type_ids"][None],
                   attention_mask=built["attention_mask"][None], images=[[built["images"][0]]],
                   max_new_tokens=2, do_sample=False, pad_token_id=128002)
    calls = [json.loads(line) for line in open(model.config.record_dir + "/calls.jsonl")]
    out[version]["prefill"] = [c for c in calls if c["call"] == "prefill"][-1]
for dtype in ("bfloat16", "float32"):
    try:
        model.build_conversation_input_ids(tokenizer, query=query, history=[],
            images=[video.to(getattr(torch, dtype))], template_version="chat")
        out[dtype] = "accepted"
    except AssertionError:
        out[dtype] = "AssertionError"
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> tuple[Path, Path]:
    return shared_standin(env_python(), tmp_path_factory.getbasetemp() / "cogvlm2_standin")


@pytest.fixture(scope="module")
def probe(standin) -> dict:
    result = subprocess.run([str(env_python()), "-W", "ignore", "-c", PROBE, str(standin[0]),
                             str(FRAMES), QUERY], capture_output=True, text=True, timeout=600,
                            env=server_env())
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def tokenizer(standin):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(standin[0])


def runs(types: list[int]) -> list[tuple[int, int]]:
    """``(token type, length)`` of each run of equal token types."""
    out: list[tuple[int, int]] = []
    for t in types:
        out[-1:] = [(t, out[-1][1] + 1)] if out and out[-1][0] == t else [*out[-1:], (t, 1)]
    return out


def real_position_ids(types: list[int]) -> list[int]:
    """modeling_cogvlm.py, ``build_position_ids`` (no padding): a vision token that starts or
    ends a run counts as language; a position is taken by every language token and by a vision
    token following a language one; positions are the running count from 0."""
    marked = list(types)
    for i, t in enumerate(types):
        starts = t == VISION and (i == 0 or types[i - 1] == LANGUAGE)
        ends = t == VISION and (i == len(types) - 1 or types[i + 1] == LANGUAGE)
        if starts or ends:
            marked[i] = LANGUAGE
    steps = [0] + [int(marked[i] == LANGUAGE or marked[i - 1] == LANGUAGE)
                   for i in range(1, len(marked))]
    return [sum(steps[:i + 1]) for i in range(len(steps))]


def test_66_tokens_per_frame_at_224_px(probe):
    """modeling_cogvlm.py, ``build_conversation_input_ids``: ``(64 + 2)`` placeholders per frame;
    visual.py, ``EVA2CLIPModel.forward``: patch 14 at 224 px is 16x16, a stride-2 conv makes 8x8,
    begin/end of image added. The frames leave it 224x224, frames first, float32."""
    for version in ("chat", "base"):
        vision = [n for t, n in runs(probe[version]["token_type_ids"]) if t == VISION]
        assert sum(vision) == FRAMES * 66, version
    assert probe["chat"]["images"] == [[FRAMES, 3, 224, 224], "torch.float32"]


def test_chat_puts_the_frame_index_after_each_frame_and_base_does_not(probe):
    """modeling_cogvlm.py, ``build_conversation_input_ids``: ``add_time_indices`` for
    ``template_version == 'chat'`` only, ``tokenizer.encode(str(i))`` after frame ``i``; the text
    (``_history_to_prompt``) last: ``Question: {query} Answer:`` or the query."""
    chat, base = probe["chat"], probe["base"]
    layout = [(LANGUAGE, 1)]
    ids = [chat["input_ids"][0]]
    for time_ids in probe["time_ids"]:
        layout += [(VISION, 66), (LANGUAGE, len(time_ids))]
        ids += [PAD_TOKEN_ID] * 66 + time_ids
    layout[-1] = (LANGUAGE, layout[-1][1] + len(chat["text_ids"]))
    assert runs(chat["token_type_ids"]) == layout
    assert chat["input_ids"] == ids + chat["text_ids"]
    assert runs(base["token_type_ids"]) == [(LANGUAGE, 1), (VISION, FRAMES * 66),
                                           (LANGUAGE, len(base["text_ids"]))]
    assert base["input_ids"][1:] == [PAD_TOKEN_ID] * FRAMES * 66 + base["text_ids"]


def test_prompt_token_counts_are_dj_ops_formula(probe, tokenizer):
    for version in ("chat", "base"):
        assert len(probe[version]["input_ids"]) == prompt_token_count(tokenizer, FRAMES, QUERY,
                                                                     version)


def test_vision_tokens_share_position_ids(probe, tokenizer):
    """modeling_cogvlm.py, ``build_position_ids``: with ``chat`` each frame spans 3 positions
    and its index 1 more (one token, as in Llama 3), so 24 frames take 97 positions before the
    text (about 110 with Llama 3's text tokens), not 1600; with ``base`` the frames form one
    run (3 positions in all)."""
    for version in ("chat", "base"):
        used = probe[version]["prefill"]["position_ids"][0]
        assert used == real_position_ids(probe[version]["token_type_ids"]), version
        assert used[-1] + 1 == prompt_position_count(tokenizer, FRAMES, QUERY, version)
    assert all(len(ids) == 1 for ids in probe["time_ids"])
    chat, base = probe["chat"], probe["base"]
    assert chat["prefill"]["position_ids"][0][-1] + 1 - len(chat["text_ids"]) == 1 + 24 * 4
    assert base["prefill"]["position_ids"][0][-1] + 1 - len(base["text_ids"]) == 1 + 3


def test_the_pad_id_128002_is_in_the_vocabulary_and_embedded(probe):
    """modeling_cogvlm.py: ``build_conversation_input_ids`` sets ``tokenizer.pad_token_id =
    128002`` for the placeholders, and ``CogVLMVideoModel`` embeds them
    (``nn.Embedding(vocab_size, hidden, padding_idx=128002)``, vision features put in after):
    the vocabulary must reach 128002 (Llama 3's 128256)."""
    assert probe["tokenizer_size"] == probe["vocab_size"] == probe["embedding_rows"] == 128256
    assert probe["padding_idx"] == 128002 == PAD_TOKEN_ID
    assert probe["token_128002"] == "<|reserved_special_token_0|>"
    assert probe["chat"]["prefill"]["pad_tokens_embedded"] == FRAMES * 66


def test_config_json_has_no_model_type_and_is_still_known(standin):
    """configuration_cogvlm.py: ``CogVLMConfig`` names no ``model_type``; dj_ops knows the
    checkpoint by its architecture."""
    config = json.loads((standin[0] / "config.json").read_text())
    assert "model_type" not in config
    assert config["architectures"] == ["CogVLMVideoForCausalLM"]
    assert type(resolve_adapter(str(standin[0]))) is CogVLM2Adapter


def test_the_video_must_arrive_as_uint8(probe):
    """modeling_cogvlm.py, ``build_conversation_input_ids``: ``Lambda(x / 255.0)`` then
    ``ShortSideScale``, which asserts float32: a bf16 video fails; uint8 becomes float32."""
    assert probe["bfloat16"] == "AssertionError"
    assert probe["float32"] == "accepted"  # also wrong values (0-255 scaled by 1/255 again)


def test_the_generation_hook_ties_the_code_to_transformers_4_42(probe):
    """modeling_cogvlm.py, ``CogVLMVideoForCausalLM._update_model_kwargs_for_generation``:
    takes ``standardize_cache_format`` and passes it to ``_extract_past_from_model_output``,
    which transformers 4.42 still has."""
    assert "standardize_cache_format" in probe["hook"]
    assert probe["extract"] == ["self", "outputs", "standardize_cache_format"]
