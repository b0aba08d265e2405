"""The CogVLM2 caption server's pure parts (``servers/cogvlm2``), in dj_ops' own environment:
the request contract against what dj_ops' ``openai`` backend sends, the model card's generation
settings, and its frame picking (dj_ops' samplers, importable without dj_ops)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from dj_ops.backends.base import BackendConfig, CaptionRequest
from dj_ops.backends.openai_backend import OpenAIBackend
from dj_ops.backends.openai_payload import build_payload, sampling_fields
from dj_ops.captioning.generation import parse_sampling_params
from dj_ops.testing.cogvlm2_server import SERVER_DIR
from tests.test_cogvlm_sampling import VFR_TIMES, card_base, card_chat

sys.path.insert(0, str(SERVER_DIR))
from dj_ops_cogvlm2_server.frames import (  # noqa: E402
    VideoInputError,
    frame_indices,
    video_bytes,
)
from dj_ops_cogvlm2_server.model import card_dtype_name, load_kwargs  # noqa: E402
from dj_ops_cogvlm2_server.protocol import (  # noqa: E402
    PAD_TOKEN_ID,
    Choice,
    completion_body,
    cut_at_stop,
    read_call,
)

PRESET = SERVER_DIR.parents[1] / "configs" / "cogvlm2_llama3_caption.yaml"
VIDEO = {"type": "video_url", "video_url": {"url": "file:///v.mp4"}}


def preset_op() -> dict:
    return yaml.safe_load(PRESET.read_text())["process"][0]["vlm_video_captioning_mapper"]


def client_payload(sampling: dict, caption_num: int = 1, seed=None, system=None) -> dict:
    """The body dj_ops' openai backend sends for one video."""
    config = BackendConfig("THUDM/cogvlm2-llama3-caption",
                           parse_sampling_params(sampling, caption_num), caption_num,
                           seed=seed)
    request = CaptionRequest(np.zeros((1, 2, 2, 3), np.uint8), {}, "Describe.", system)
    return build_payload(config.model, request, "file:///v.mp4", sampling_fields(config),
                         {"template_version": "base"})


def test_the_presets_request_becomes_the_model_cards_greedy_generation():
    op = preset_op()
    call = read_call(client_payload(op["sampling_params"]), "chat")
    assert call.generate_kwargs == {"max_new_tokens": 2048, "pad_token_id": PAD_TOKEN_ID,
                                    "do_sample": False}
    assert (call.video_url, call.query, call.n) == ("file:///v.mp4", "Describe.", 1)
    assert call.template_version == "base"  # the request's extra_body beats the default


def test_sampling_requests_keep_their_settings_seed_and_candidates():
    body = client_payload({"temperature": 0.7, "top_p": 0.9, "top_k": 5, "max_new_tokens": 9,
                           "min_new_tokens": 3, "repetition_penalty": 1.1}, 3, seed=4,
                          system="Be brief.")
    call = read_call(body, "chat")
    assert call.generate_kwargs == {
        "max_new_tokens": 9, "pad_token_id": PAD_TOKEN_ID, "do_sample": True,
        "temperature": 0.7, "top_p": 0.9, "top_k": 5, "min_new_tokens": 3,
        "repetition_penalty": 1.1}
    assert (call.n, call.seed, call.query) == (3, 4, "Be brief.\nDescribe.")


@pytest.mark.parametrize("body, message", [
    ({"messages": [{"role": "user", "content": "no video"}]}, "no video_url"),
    ({"messages": [{"role": "user", "content": [VIDEO, VIDEO]}]}, "one video per request"),
    ({"messages": [{"role": "user", "content": [VIDEO]}], "logprobs": True},
     r"unsupported fields \['logprobs'\]"),
    ({"messages": [{"role": "user", "content": [VIDEO]}], "stream": True}, "stream"),
    ({"messages": [{"role": "user", "content": [VIDEO]}], "n": 0}, "n must be >= 1"),
    ([], "must be a JSON object"),
])
def test_bad_requests_are_refused_naming_the_problem(body, message):
    with pytest.raises(ValueError, match=message):
        read_call(body, "chat")


def test_stop_strings_cut_the_text_before_the_first():
    assert cut_at_stop("a cat. The end", ("end", ".")) == ("a cat", True)
    assert cut_at_stop("a cat", ("dog",)) == ("a cat", False)


def test_the_answer_parses_as_the_backend_expects():
    from dj_ops.backends.openai_payload import parse_completion

    body = completion_body("m", [Choice("a cat", 4, False), Choice("a dog", 6, True)], 50, {})
    candidates = parse_completion(body)
    assert [(c.text, c.hit_token_limit) for c in candidates] == [("a cat", False),
                                                                 ("a dog", True)]
    assert body["usage"] == {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}


def test_frames_are_those_of_the_model_cards_load_video():
    times = np.array(VFR_TIMES)
    assert frame_indices(times, 8 / 2.0, "chat") == card_chat(VFR_TIMES)
    regular = np.arange(150) / 30.0
    assert frame_indices(regular, 30.0, "chat") == card_chat(regular.tolist())
    assert frame_indices(regular, 30.0, "base") == card_base(150, 30.0)
    with pytest.raises(VideoInputError, match=r"template_version must be one of \['chat'"):
        frame_indices(regular, 30.0, "video")


def test_file_urls_need_the_servers_permission(tmp_path):
    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"bytes")
    assert video_bytes(clip.as_uri(), allow_files=True) == b"bytes"
    with pytest.raises(VideoInputError, match="--allow-local-files"):
        video_bytes(clip.as_uri(), allow_files=False)
    with pytest.raises(VideoInputError, match="cannot read"):
        video_bytes((tmp_path / "missing.mp4").as_uri(), allow_files=True)
    with pytest.raises(VideoInputError, match="must be a file:// or"):
        video_bytes("https://example.com/a.mp4", allow_files=True)


@pytest.mark.parametrize("linked, source", [("sampling.py", "dj_ops/video/sampling.py"), (
    "cogvlm2_interface.py", "dj_ops/adapters/cogvlm2_interface.py")])
def test_the_server_runs_dj_ops_own_files_not_copies(linked, source):
    """The frame samplers and CogVLM2's input builder exist once: the server's package links
    dj_ops' files (its wheel copies them when it is built, setup_env.sh rebuilds it each run)."""
    assert (SERVER_DIR / "dj_ops_cogvlm2_server" / linked).is_symlink()
    assert (SERVER_DIR / "dj_ops_cogvlm2_server" / linked).resolve() == (
        SERVER_DIR.parents[1] / source)


def test_the_server_package_imports_without_dj_ops():
    """The server's environment has no dj_ops: its code, including the linked modules, must
    import without it."""
    code = ("import sys; sys.modules['dj_ops'] = None; "
            f"sys.path.insert(0, {str(SERVER_DIR)!r}); "
            "import dj_ops_cogvlm2_server.frames, dj_ops_cogvlm2_server.protocol, "
            "dj_ops_cogvlm2_server.server, dj_ops_cogvlm2_server.remote_code, "
            "dj_ops_cogvlm2_server.check; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_the_hf_backend_and_the_server_build_cogvlm2_inputs_alike():
    """One builder (``generate_inputs``) and one query rule for both callers."""
    from dj_ops_cogvlm2_server import model as server_model

    from dj_ops.adapters.cogvlm2 import CogVLM2Adapter

    assert server_model.generate_inputs.__code__.co_filename == str(
        SERVER_DIR / "dj_ops_cogvlm2_server" / "cogvlm2_interface.py")
    request = CaptionRequest(np.zeros((1, 2, 2, 3), np.uint8), {}, "Describe.", "Be brief.")
    assert CogVLM2Adapter().query(request) == read_call(
        client_payload({}, system="Be brief."), "chat").query == "Be brief.\nDescribe."


def test_the_server_package_ships_what_it_runs():
    """The dependencies the distribution declares are all pinned in the environment's
    requirements (setup_env.sh installs those; torch and torchvision come as TORCH_SPEC)."""
    pyproject = (SERVER_DIR / "pyproject.toml").read_text()
    declared = re.search(r"dependencies = \[(.*?)\]", pyproject, re.DOTALL).group(1)
    names = {re.match(r"[\w-]+", d).group(0) for d in re.findall(r'"([^"]+)"', declared)}
    pinned = {re.match(r"[\w-]+", line).group(0) for line in
              (SERVER_DIR / "requirements.txt").read_text().splitlines()
              if line and not line.startswith("#")}
    assert names - {"torch", "torchvision"} == pinned


def test_the_preset_passes_the_openai_backends_checks():
    op = preset_op()
    assert op["backend"] == "openai" and op["frame_strategy"] == "chat"
    assert op["model_params"]["extra_body"]["template_version"] == op["frame_strategy"]
    config = BackendConfig(op["hf_model"], parse_sampling_params(op["sampling_params"], 1),
                           model_params=op["model_params"])
    OpenAIBackend.check_config(config)


def test_a_local_checkpoint_folder_is_served_without_trusting_its_code_in_the_op(tmp_path):
    """On the served route the op never loads the model: a local CogVLM2 folder (a
    ``config.json`` as the real one: no ``model_type``, its architecture and ``auto_map``) is
    accepted without ``trust_remote_code`` and known as CogVLM2. The transformers backend,
    which would load the code, still asks for it (the adapter's check, which loaders make)."""
    from dj_ops.adapters import resolve_adapter
    from dj_ops.ops import VLMVideoCaptioningMapper

    (tmp_path / "config.json").write_text(json.dumps({
        "architectures": ["CogVLMVideoForCausalLM"],
        "auto_map": {"AutoModelForCausalLM": "modeling_cogvlm.CogVLMVideoForCausalLM"}}))
    params = {**preset_op()["model_params"], "api_base": "http://127.0.0.1:9/v1"}
    config = BackendConfig(str(tmp_path), parse_sampling_params({}, 1), model_params=params)
    OpenAIBackend.check_config(config)
    VLMVideoCaptioningMapper(hf_model=str(tmp_path), backend="openai", frame_strategy="chat",
                             model_params=params)  # built: the op's checks passed
    assert type(OpenAIBackend(config).adapter).__name__ == "CogVLM2Adapter"
    with pytest.raises(ValueError, match="trust_remote_code: true"):  # what loaders check
        resolve_adapter(str(tmp_path)).check({})


def test_dtype_and_loading_follow_the_model_card():
    assert [card_dtype_name(c) for c in [(9, 0), (8, 0), (7, 5), None]] == [
        "bfloat16", "bfloat16", "float16", "float32"]
    assert load_kwargs("cpu", "float32", 0) == {"torch_dtype": "float32",
                                                "trust_remote_code": True}
    with pytest.raises(ValueError, match="--quant needs a CUDA device"):
        load_kwargs("cpu", "float32", 4)
    with pytest.raises(ValueError, match=r"quant must be one of \[0, 4, 8\]"):
        load_kwargs("cuda", "float16", 3)
