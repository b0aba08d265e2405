"""CogVLM2-Llama3-Caption's path end to end, in its own environment: a tiny random-weight
**remote-code** stand-in (``config.json`` with ``auto_map``, its own modelling file) loaded with
``trust_remote_code=True`` by transformers 4.42 inside the server's virtual environment, served
by ``servers/cogvlm2``, and captioned through by the op (``backend: openai``, the CogVLM2
preset) and by ``dj-process``. The stand-in records what it is given: the frames (read back by
the index each generated frame shows), the template and the generation settings.

Tier ``cogvlm2_env``: ``bash servers/cogvlm2/setup_env.sh && .venv/bin/python -m pytest -m
cogvlm2_env``; skipped when that environment is absent.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from data_juicer.utils.constant import Fields

from dj_ops.adapters.cogvlm2_interface import VISION_TOKENS_PER_FRAME, prompt_token_count
from dj_ops.captioning.records import META_KEY
from dj_ops.ops import VLMVideoCaptioningMapper
from dj_ops.testing.clips import make_clip, read_frame_index, sample_videos
from dj_ops.testing.cogvlm2_server import (
    ServerProcess,
    env_python,
    read_calls,
    server_env,
    shared_standin,
)
from dj_ops.video import FrameSettings, decode_video
from tests.conftest import run_op
from tests.test_cogvlm_sampling import card_base, card_chat
from tests.test_dj_process import run_recipe

pytestmark = [
    pytest.mark.cogvlm2_env,
    pytest.mark.skipif(env_python() is None, reason=(
        "the CogVLM2 server environment is absent: run `bash servers/cogvlm2/setup_env.sh` "
        "(transformers 4.42, torch, decord; about 1.5 min)")),
]
PRESET = Path(__file__).resolve().parents[1] / "configs" / "cogvlm2_llama3_caption.yaml"
PROMPT = "Please describe this video in detail."
NEW_TOKENS = 12
GREEDY = {"max_new_tokens": NEW_TOKENS, "pad_token_id": 128002, "do_sample": False}
CFR = {"seconds": 5.5, "fps": 10}  # frames at 0.0..5.4 s: chat picks 6, at whole seconds
VFR_TIMES = [0.0, 0.3, 0.45, 1.1, 1.9, 2.05, 2.6, 3.2, 3.3]


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> tuple[Path, Path]:
    return shared_standin(env_python(), tmp_path_factory.getbasetemp() / "cogvlm2_standin")


@pytest.fixture(scope="module")
def server(standin, tmp_path_factory):
    log = tmp_path_factory.mktemp("cogvlm2_server") / "server.log"
    with ServerProcess(env_python(), standin[0], log) as running:
        running.record_dir = standin[1]  # where the stand-in records its calls
        yield running


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, tuple[str, list[float]]]:
    """Clips whose frames show their index, with each frame's time."""
    root = tmp_path_factory.mktemp("cogvlm2_clips")
    cfr = make_clip(root / "cfr.mp4", width=96, height=64, **CFR)
    vfr = make_clip(root / "vfr.mp4", width=96, height=64, frame_times=VFR_TIMES)
    count = round(CFR["seconds"] * CFR["fps"])
    return {"cfr": (str(cfr), [i / CFR["fps"] for i in range(count)]),
            "vfr": (str(vfr), VFR_TIMES)}


def preset_params(api_base: str, **overrides) -> dict:
    """The preset's op block pointed at ``api_base``, with few new tokens."""
    params = yaml.safe_load(PRESET.read_text())["process"][0]["vlm_video_captioning_mapper"]
    params["model_params"]["api_base"] = api_base
    params["sampling_params"]["max_new_tokens"] = NEW_TOKENS
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            params[key] = {**params[key], **value}
        else:
            params[key] = value
    return params


def caption(server, videos: list[str], **overrides) -> tuple[list[dict], list[dict]]:
    """Rows the op returns for one sample per video, and the stand-in's calls meanwhile."""
    before = len(read_calls(server.record_dir))
    op = VLMVideoCaptioningMapper(**preset_params(server.url, **overrides))
    rows = run_op(op, [{"text": "<__dj__video>", "videos": [v]} for v in videos])
    return rows, read_calls(server.record_dir)[before:]


def received_frames(server, call: dict) -> list[int]:
    """The index shown by each frame the stand-in received (``C, T, H, W``)."""
    frames = np.load(Path(server.record_dir) / call["frames_file"])
    return [read_frame_index(frames[:, t].transpose(1, 2, 0)) for t in range(frames.shape[1])]


def test_the_stand_in_is_remote_code_loaded_by_transformers_4_42(standin, tmp_path):
    checkpoint = standin[0]
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_cogvlm.CogVLMConfig",
                                  "AutoModelForCausalLM": "modeling_cogvlm.CogVLMVideoForCausalLM"}
    assert (checkpoint / "modeling_cogvlm.py").is_file()
    script = f"""
import importlib.util, transformers
from dj_ops_cogvlm2_server.compat import provide_functional_tensor
provide_functional_tensor()
from transformers import AutoModelForCausalLM
print(transformers.__version__)
print([m for m in ("data_juicer", "dj_ops") if importlib.util.find_spec(m)])
try:
    AutoModelForCausalLM.from_pretrained({str(checkpoint)!r}, trust_remote_code=False)
except ValueError as error:
    print("refused:", "trust_remote_code=True" in str(error))
model = AutoModelForCausalLM.from_pretrained({str(checkpoint)!r}, trust_remote_code=True)
print(type(model).__name__, type(model).__module__.startswith("transformers_modules"))
"""
    result = subprocess.run([str(env_python()), "-W", "ignore", "-c", script],
                            capture_output=True, text=True, cwd=tmp_path, timeout=600,
                            env=server_env())
    assert result.stdout.splitlines() == [
        "4.42.4", "[]", "refused: True", "CogVLMVideoForCausalLM True"], result.stderr[-2000:]


@pytest.mark.parametrize("transport, names", [("path", ["cfr", "vfr"]), ("mp4", ["cfr"])])
def test_the_op_captions_through_the_server_as_the_model_card_does(server, clips, transport,
                                                                   names):
    """``path``: the server decodes each file with decord and picks the card's ``chat`` frames.
    ``mp4``: the op's ``chat`` frames, re-encoded, picked again (the same frames here: they lie
    at whole seconds)."""
    rows, calls = caption(server, [clips[n][0] for n in names],
                          model_params={"video_transport": transport})
    assert [r[Fields.meta][META_KEY]["status"] for r in rows] == ["captioned"] * len(
        names)
    assert all(r["text"].strip() != "<__dj__video>" for r in rows)
    builds = [c for c in calls if c["call"] == "build_conversation_input_ids"]
    generates = [c for c in calls if c["call"] == "generate"]
    assert len(builds) == len(generates) == len(names)
    expected = sorted(card_chat(clips[n][1]) for n in names)
    assert sorted(received_frames(server, b) for b in builds) == expected
    for build, generate in zip(builds, generates):
        assert (build["template_version"], build["query"], build["history"]) == (
            "chat", PROMPT, [])
        assert build["text"] == f"Question: {PROMPT} Answer:"  # the stand-in's chat template
        assert build["video_dtype"] == "torch.uint8" and build["video_shape"][0] == 3
        assert generate["settings"] == GREEDY
        frames = build["video_shape"][1]
        assert sum(generate["token_type_ids"][0]) == frames * VISION_TOKENS_PER_FRAME == (
            frames * 66)
        assert generate["images_dtype"] == "torch.float32"  # on CPU; bf16/fp16 on GPUs


def test_the_base_strategy_and_template_per_request(server, clips):
    rows, calls = caption(server, [clips["cfr"][0]], frame_strategy="base",
                          model_params={"extra_body": {"template_version": "base"}})
    assert rows[0][Fields.meta][META_KEY]["status"] == "captioned"
    (build,) = [c for c in calls if c["call"] == "build_conversation_input_ids"]
    assert build["template_version"] == "base" and build["text"] == PROMPT
    assert received_frames(server, build) == card_base(len(clips["cfr"][1]), CFR["fps"])


@pytest.mark.parametrize("transport", ["path", "mp4"])
def test_hf_model_may_be_the_local_checkpoint_folder(server, standin, clips, transport):
    """The served route with ``hf_model`` pointing at the checkpoint the server loads, and no
    ``trust_remote_code`` on the op (which never loads it)."""
    rows, calls = caption(server, [clips["cfr"][0]], hf_model=str(standin[0]),
                          model_params={"video_transport": transport})
    assert "trust_remote_code" not in preset_params(server.url)["model_params"]
    assert rows[0][Fields.meta][META_KEY]["status"] == "captioned"
    assert [c["call"] for c in calls] == ["build_conversation_input_ids", "generate", "prefill"]


def test_sampled_candidates_are_generated_one_by_one_with_their_settings(server, clips):
    rows, calls = caption(server, [clips["cfr"][0]], caption_num=2, keep_candidate_mode="all",
                          seed=3, sampling_params={"do_sample": True, "temperature": 0.8})
    assert len(rows) == 2
    generates = [c["settings"] for c in calls if c["call"] == "generate"]
    assert generates == [{"max_new_tokens": NEW_TOKENS, "pad_token_id": 128002,
                          "do_sample": True, "temperature": 0.8}] * 2


def _post(server, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{server.url}/chat/completions",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_bad_video_is_a_clear_400_and_the_server_goes_on(server, clips):
    garbage = "data:video/mp4;base64," + base64.b64encode(b"not a video" * 50).decode()
    content = [{"type": "video_url", "video_url": {"url": garbage}},
               {"type": "text", "text": PROMPT}]
    status, body = _post(server, {"messages": [{"role": "user", "content": content}],
                                  "max_tokens": 4})
    assert status == 400 and "cannot decode the video" in body["error"]["message"]
    content[0]["video_url"]["url"] = Path(clips["cfr"][0]).as_uri()
    status, body = _post(server, {"messages": [{"role": "user", "content": content}],
                                  "max_tokens": 4, "temperature": 0})
    assert status == 200 and body["dj_ops_received"]["frame_indices"] == card_chat(
        clips["cfr"][1])
    assert body["usage"]["completion_tokens"] == 4 and body["choices"][0]["message"]["content"]


@pytest.mark.parametrize("version", ["chat", "base"])
def test_prompt_tokens_follow_the_real_formula(server, standin, clips, version):
    """The served prompt's length is the real ``build_conversation_input_ids``' (dj_ops'
    statement of it, ``prompt_token_count``), counted with the checkpoint's tokenizer loaded
    in dj_ops' own environment."""
    from transformers import AutoTokenizer

    content = [{"type": "video_url", "video_url": {"url": Path(clips["vfr"][0]).as_uri()}},
               {"type": "text", "text": PROMPT}]
    status, body = _post(server, {"messages": [{"role": "user", "content": content}],
                                  "max_tokens": 2, "template_version": version})
    assert status == 200, body
    frames = len(body["dj_ops_received"]["frame_indices"])
    tokenizer = AutoTokenizer.from_pretrained(standin[0])
    assert body["usage"]["prompt_tokens"] == prompt_token_count(tokenizer, frames, PROMPT,
                                                                version)


def test_dj_process_runs_the_preset_on_real_clips(server, tmp_path):
    """The preset recipe through ``dj-process``: every clip captioned from the frames the
    card's ``chat`` strategy picks, a missing file recorded, not lost."""
    videos = [str(p) for p in sample_videos()]
    samples = [{"text": "<__dj__video>", "videos": [v]} for v in [*videos, "/no/such.mp4"]]
    before = len(read_calls(server.record_dir))
    rows = run_recipe(tmp_path, samples, preset_params(server.url))
    calls = read_calls(server.record_dir)[before:]
    records = {r["videos"][0]: r[Fields.meta][META_KEY] for r in rows}
    assert len(rows) == len(samples)
    assert [records[v]["status"] for v in videos] == ["captioned"] * len(videos)
    assert records["/no/such.mp4"]["videos"][0]["error_kind"] == "missing_file"
    assert all(records[v]["backend"] == "openai" for v in videos)
    shapes = sorted(c["video_shape"] for c in calls if c["call"] == "build_conversation_input_ids")
    expected = []
    for video in videos:  # dj_ops' own decoder with the same strategy, unpadded
        decoded = decode_video(video, FrameSettings(strategy="chat", temporal_factor=1))
        meta = decoded.transformers_metadata()
        expected.append([3, len(meta["frames_indices"]), meta["height"], meta["width"]])
    assert shapes == sorted(expected)
