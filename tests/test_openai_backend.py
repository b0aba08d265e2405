"""The HTTP backend end to end against a real loopback chat-completions server running the tiny
Qwen3-VL (``dj_ops.testing.openai_server``; ``transformers serve`` cannot serve video here, see
its docstring), with injected faults: errors then success, no answer, ignored ``n``, API keys."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import yaml
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens, get_special_tokens

from dj_ops.backends.base import BackendConfig, CaptionRequest
from dj_ops.backends.openai_backend import OpenAIBackend
from dj_ops.captioning.generation import parse_sampling_params
from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.text import special_tokens_only
from dj_ops.testing.openai_server import CompletionServer, Faults
from dj_ops.video import FrameSettings, decode_video
from tests.conftest import FAST_FRAMES, FAST_SAMPLING, make_op, run_op
from tests.test_dj_process import run_recipe
from tests.test_op import single_video_samples

V, E = SpecialTokens.video, SpecialTokens.eoc
SPECIAL = list(get_special_tokens().values())
FAST_RETRY = {"backoff_s": 0.01, "max_backoff_s": 0.05}


@pytest.fixture(scope="module")
def server(qwen3):
    with CompletionServer(qwen3) as running:
        yield running


@pytest.fixture(scope="module")
def request_(videos) -> CaptionRequest:
    settings = FrameSettings(**{k: v for k, v in FAST_FRAMES.items()}, size_factor=32)
    video = decode_video(videos[0], settings)
    return CaptionRequest(video.frames, video.transformers_metadata(), "Describe.",
                          video_path=videos[0])


def backend(model, api_base, caption_num=1, sampling=None, seed=0, **server) -> OpenAIBackend:
    settings = parse_sampling_params(sampling or FAST_SAMPLING, caption_num)
    config = BackendConfig(model, settings, num_candidates=caption_num, seed=seed,
                           model_params={"api_base": api_base, **FAST_RETRY, **server})
    OpenAIBackend.check_config(config)
    return OpenAIBackend(config)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- the op through the server ----

def layout(row: dict) -> str:
    return special_tokens_only(row["text"], SPECIAL)


@pytest.mark.parametrize("mode, keep", [("random_any", True), ("all", False)])
def test_op_through_the_server_matches_the_transformers_backend(qwen3, videos, server, mode,
                                                                keep):
    samples = single_video_samples(videos[:3]) + [
        {"text": f"{V}{V} two clips {E} no video {E}", "videos": videos[3:5]},
        {"text": "plain text", "videos": []},
    ]
    params = dict(caption_num=2, keep_candidate_mode=mode, keep_original_sample=keep)
    reference = run_op(make_op(qwen3, **params), samples)
    rows = run_op(make_op(qwen3, backend="openai", model_params={"api_base": server.url},
                          **params), samples)
    assert len(rows) == len(reference)
    assert [layout(r) for r in rows] == [layout(r) for r in reference]
    assert [r["videos"] for r in rows] == [r["videos"] for r in reference]
    for row, ref in zip(rows, reference):
        record, expected = (r.get(Fields.meta, {}).get(META_KEY) for r in (row, ref))
        if expected is None:
            assert record is None
            continue
        assert record["status"] == expected["status"] == "captioned"
        assert record["backend"] == "openai" and record["candidate_index"] == (
            expected["candidate_index"])
        assert [v["timestamps"] for v in record["videos"]] == [
            v["timestamps"] for v in expected["videos"]]
        assert all(v["generated_tokens"] > 0 for v in record["videos"])


def test_the_openai_recipe_runs_through_the_server(tmp_path, qwen3, videos, server):
    """``recipes/caption_openai_server.yaml`` under ``dj-process``, pointed at the tiny model."""
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "caption_openai_server.yaml"
    params = yaml.safe_load(recipe.read_text())["process"][0]["vlm_video_captioning_mapper"]
    params.update(hf_model=qwen3, seed=0, **FAST_FRAMES, sampling_params=FAST_SAMPLING)
    params["model_params"]["api_base"] = server.url
    samples = [{"text": f"{V} clip {i} {E}", "videos": [v]} for i, v in enumerate(videos[:2])]
    rows = run_recipe(tmp_path, samples, params)
    assert len(rows) == 2
    assert all(r[Fields.meta][META_KEY]["status"] == "captioned" for r in rows)
    assert all(r[Fields.meta][META_KEY]["backend"] == "openai" for r in rows)


# ---- faults ----

def test_server_errors_are_retried_until_success(qwen3, request_):
    with CompletionServer(qwen3, faults=Faults(fail_first=2)) as flaky:
        [result] = backend(qwen3, flaky.url, max_retries=3).generate([request_])
    assert result.ok and result.candidates[0].text
    assert len(flaky.received) == 3 and flaky.received[0] == flaky.received[2]


def test_persistent_server_errors_become_an_http_error_record(qwen3, request_):
    with CompletionServer(qwen3, faults=Faults(fail_first=100)) as broken:
        [result] = backend(qwen3, broken.url, max_retries=2).generate([request_])
    assert result.error_kind == "http_error"
    assert result.error_message.startswith('HTTP 500: {"error": {"message": "injected failure"')
    assert len(broken.received) == 3


def test_client_errors_are_not_retried(qwen3, request_):
    with CompletionServer(qwen3, faults=Faults(fail_first=100, fail_status=422)) as strict:
        [result] = backend(qwen3, strict.url, max_retries=3).generate([request_])
    assert result.error_kind == "http_error" and result.error_message.startswith("HTTP 422")
    assert len(strict.received) == 1


def test_a_server_that_never_answers_gives_timeout_records_fast(qwen3, videos):
    samples = single_video_samples(videos[:2])
    model_params = {"timeout_s": 0.5, "max_retries": 1, **FAST_RETRY}
    with CompletionServer(qwen3, faults=Faults(hang=True)) as silent:
        op = make_op(qwen3, backend="openai", keep_original_sample=False,
                     model_params={"api_base": silent.url, **model_params})
        started = time.monotonic()
        rows = run_op(op, samples)
        elapsed = time.monotonic() - started
    assert len(rows) == 2 and elapsed < 10
    for row, sample in zip(rows, samples):
        assert row["text"] == sample["text"]
        record = row[Fields.meta][META_KEY]
        assert record["status"] == "error"
        video = record["videos"][0]
        assert video["error_kind"] == "timeout"
        assert video["error_message"] == "no answer within 0.5 s (2 tries)"
    assert len(silent.received) == 4  # two videos, two tries each


def test_an_unreachable_server_gives_connection_error_records(qwen3, request_):
    [result] = backend(qwen3, f"http://127.0.0.1:{free_port()}/v1",
                       max_retries=1).generate([request_])
    assert result.error_kind == "connection_error"
    assert result.error_message.startswith("ClientConnectorError")


def test_a_server_ignoring_n_gets_one_request_per_candidate(qwen3, request_):
    sampling = {**FAST_SAMPLING, "temperature": 0.9}
    with CompletionServer(qwen3, faults=Faults(ignore_n=True)) as single:
        client = backend(qwen3, single.url, caption_num=3, sampling=sampling, seed=5)
        [first] = client.generate([request_])
        assert [(p["n"], p["seed"]) for p in single.received] == [(3, 5), (1, 6), (1, 7)]
        assert client.n_supported is False
        [second] = client.generate([request_])
        assert [(p["n"], p["seed"]) for p in single.received[3:]] == [(1, 5), (1, 6), (1, 7)]
    assert len(first.candidates) == len(second.candidates) == 3
    assert len({c.text for c in first.candidates}) > 1


def test_greedy_candidates_need_one_request(qwen3, server, request_):
    before = len(server.received)
    [result] = backend(qwen3, server.url, caption_num=3,
                       sampling={**FAST_SAMPLING, "do_sample": False}).generate([request_])
    assert [p["n"] for p in server.received[before:]] == [1]
    assert len(result.candidates) == 3 and len({c.text for c in result.candidates}) == 1


def test_the_api_key_is_sent_from_the_named_variable(qwen3, request_, monkeypatch):
    monkeypatch.setenv("DJ_OPS_TEST_API_KEY", "sk-loopback-secret")
    with CompletionServer(qwen3, api_key="sk-loopback-secret") as guarded:
        [ok] = backend(qwen3, guarded.url, api_key_env="DJ_OPS_TEST_API_KEY").generate(
            [request_])
        [refused] = backend(qwen3, guarded.url).generate([request_])
    assert ok.ok
    assert refused.error_kind == "http_error" and refused.error_message.startswith("HTTP 401")
    assert "sk-loopback-secret" not in refused.error_message
    monkeypatch.delenv("DJ_OPS_TEST_API_KEY")
    with pytest.raises(ValueError, match="'DJ_OPS_TEST_API_KEY', which is not set"):
        make_op(qwen3, backend="openai", model_params={
            "api_base": "http://127.0.0.1:1/v1", "api_key_env": "DJ_OPS_TEST_API_KEY"})


def test_concurrency_is_bounded(qwen3, server, request_):
    server.max_in_flight = 0
    results = backend(qwen3, server.url, max_concurrency=2).generate([request_] * 5)
    assert all(r.ok for r in results) and server.max_in_flight == 2


def test_path_transport_sends_the_file(qwen3, server, request_):
    before = len(server.received)
    [result] = backend(qwen3, server.url, video_transport="path").generate([request_])
    url = server.received[before]["messages"][0]["content"][0]["video_url"]["url"]
    assert result.ok and url.startswith("file:///") and url.endswith(".mp4")


def test_bad_server_settings_fail_at_construction(qwen3):
    with pytest.raises(ValueError, match="api_base\n  Field required"):
        make_op(qwen3, backend="openai", model_params={})
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        make_op(qwen3, backend="openai", model_params={"api_base": "http://h/v1",
                                                       "quantization": "4bit"})


def test_a_request_that_cannot_be_built_fails_alone(qwen3, server, request_):
    without_file = CaptionRequest(request_.frames, request_.metadata, "Describe.")
    results = backend(qwen3, server.url, video_transport="path").generate(
        [without_file, request_])
    assert results[0].error_kind == "invalid_request"
    assert results[0].error_message == ("cannot build the request: video_transport 'path' "
                                        "needs the request's video_path")
    assert results[1].ok
