"""The HTTP backend's pure parts: settings, payload JSON, answer parsing, retry policy."""

from __future__ import annotations

import base64
import io
import re

import av
import numpy as np
import pytest
from pydantic import ValidationError

from dj_ops.backends.base import BackendConfig, Candidate, CaptionRequest
from dj_ops.backends.openai_payload import (
    BadResponse,
    ServerSettings,
    auth_headers,
    backoff_delay,
    build_payload,
    file_url,
    is_retryable,
    mp4_url,
    parse_completion,
    sampling_fields,
    single_choice_payloads,
)
from dj_ops.captioning.generation import parse_sampling_params
from dj_ops.video.encode import frames_fps

FRAMES = np.random.default_rng(0).integers(0, 256, (6, 64, 96, 3), dtype=np.uint8)
METADATA = {"total_num_frames": 300, "fps": 30.0, "duration": 10.0,
            "frames_indices": [0, 15, 30, 45, 60, 75], "width": 96, "height": 64}
REQUEST = CaptionRequest(FRAMES, METADATA, "Describe.", "Be brief.", video_path="/data/a b.mp4")
SERVER = ServerSettings(api_base="http://127.0.0.1:8000/v1/")


def config(caption_num=1, sampling=None, seed=None) -> BackendConfig:
    return BackendConfig("Qwen/Qwen3-VL-8B-Instruct", parse_sampling_params(sampling, caption_num),
                         num_candidates=caption_num, seed=seed)


def test_settings_defaults_and_url():
    assert SERVER.chat_url == "http://127.0.0.1:8000/v1/chat/completions"
    assert SERVER.model_dump() == {
        "api_base": "http://127.0.0.1:8000/v1/", "api_key_env": None, "served_model": None,
        "max_concurrency": 8, "timeout_s": 120.0, "max_retries": 3, "backoff_s": 1.0,
        "max_backoff_s": 30.0, "video_transport": "mp4", "n_supported": True, "extra_body": {}}


@pytest.mark.parametrize("params, message", [
    ({}, "api_base\n  Field required"),
    ({"api_base": "localhost:8000"}, "String should match pattern '^https?://'"),
    ({"api_base": "http://h/v1", "timeout": 5}, "timeout\n  Extra inputs are not permitted"),
    ({"api_base": "http://h/v1", "video_transport": "gif"}, "Input should be 'mp4' or 'path'"),
    ({"api_base": "http://h/v1", "max_concurrency": 0}, "Input should be greater than 0"),
])
def test_bad_settings_are_refused(params, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        ServerSettings(**params)


def test_api_key_comes_from_the_named_variable_only():
    settings = ServerSettings(api_base="http://h/v1", api_key_env="MY_KEY")
    assert auth_headers(settings, {"MY_KEY": "sk-123"}) == {"Authorization": "Bearer sk-123"}
    assert auth_headers(SERVER, {"OPENAI_API_KEY": "sk-123"}) == {}
    with pytest.raises(ValueError, match="environment variable 'MY_KEY', which is not set"):
        auth_headers(settings, {})


def test_greedy_fields_ask_one_choice():
    assert sampling_fields(config(3, {"max_new_tokens": 64, "do_sample": False})) == {
        "n": 1, "max_tokens": 64, "temperature": 0.0}


def test_sampling_fields_ask_n_choices():
    sampling = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "max_tokens": 128,
                "min_tokens": 8, "repetition_penalty": 1.05, "stop": ["\n\n"]}
    assert sampling_fields(config(2, sampling, seed=11)) == {
        "n": 2, "max_tokens": 128, "min_tokens": 8, "temperature": 0.7, "top_p": 0.8,
        "top_k": 20, "repetition_penalty": 1.05, "stop": ["\n\n"], "seed": 11}


def test_payload_exactly():
    fields = {"n": 2, "max_tokens": 64, "temperature": 0.7, "seed": 1}
    payload = build_payload("qwen3-vl", REQUEST, "data:video/mp4;base64,AAAA", fields,
                            {"mm_processor_kwargs": {"fps": 2}})
    assert payload == {
        "model": "qwen3-vl",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}},
                {"type": "text", "text": "Describe."}]},
        ],
        "n": 2, "max_tokens": 64, "temperature": 0.7, "seed": 1,
        "mm_processor_kwargs": {"fps": 2},
    }
    no_system = build_payload("m", CaptionRequest(FRAMES, METADATA, "Hi"), "u", {"n": 1})
    assert [m["role"] for m in no_system["messages"]] == ["user"]


def test_mp4_url_holds_the_frames_at_their_sampling_rate():
    assert frames_fps(METADATA) == 2.0  # 6 frames over 75 / 30 = 2.5 s
    url = mp4_url(REQUEST)
    assert url.startswith("data:video/mp4;base64,")
    data = base64.b64decode(url.split(",", 1)[1])
    with av.open(io.BytesIO(data)) as container:
        frames = [f for f in container.decode(container.streams.video[0])]
    assert [(f.width, f.height) for f in frames] == [(96, 64)] * 6
    assert [round(float(f.time), 3) for f in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


def test_path_transport_sends_the_file_url():
    assert file_url(REQUEST) == "file:///data/a%20b.mp4"
    with pytest.raises(ValueError, match="needs the request's video_path"):
        file_url(CaptionRequest(FRAMES, METADATA, "Hi"))


def test_separate_requests_get_distinct_seeds():
    payload = {"model": "m", "messages": [], "n": 3, "seed": 10}
    assert single_choice_payloads(payload, 2, 1) == [
        {"model": "m", "messages": [], "n": 1, "seed": 11},
        {"model": "m", "messages": [], "n": 1, "seed": 12}]
    assert single_choice_payloads({"n": 2}, 2, 0) == [{"n": 1}, {"n": 1}]


def test_answer_parsing():
    body = {"choices": [
        {"index": 1, "message": {"role": "assistant", "content": "A dog runs"},
         "finish_reason": "length"},
        {"index": 0, "message": {"role": "assistant", "content": " A cat sits. "},
         "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 900, "completion_tokens": 14, "total_tokens": 914}}
    assert parse_completion(body) == [Candidate("A cat sits.", 7, False),
                                      Candidate("A dog runs", 7, True)]
    no_content = {"choices": [{"index": 0, "message": {"content": None}}]}
    assert parse_completion(no_content) == [Candidate("", 0, False)]


@pytest.mark.parametrize("body, message", [
    ({"error": {"message": "overloaded"}}, "not a chat completion: missing 'choices'"),
    ({"choices": []}, "the answer has no choices"),
    ({"choices": [{"text": "legacy completion"}]}, "not a chat completion"),
    (["not", "an", "object"], "not a chat completion"),
])
def test_malformed_answers_are_refused(body, message):
    with pytest.raises(BadResponse, match=message):
        parse_completion(body)


def test_retry_policy():
    assert [s for s in (200, 400, 401, 404, 408, 422, 429, 500, 502, 503) if is_retryable(s)] == [
        408, 429, 500, 502, 503]
    settings = ServerSettings(api_base="http://h/v1", backoff_s=0.5, max_backoff_s=3.0)
    assert [backoff_delay(a, settings) for a in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(0, settings, retry_after="2") == 2.0
    assert backoff_delay(0, settings, retry_after="120") == 3.0
    assert backoff_delay(1, settings, retry_after="Wed, 21 Oct 2026 07:28:00 GMT") == 1.0
