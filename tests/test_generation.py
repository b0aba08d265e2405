"""Translation of sampling_params into backend settings."""

import json

import pytest

from dj_ops.captioning.generation import (
    DEFAULT_MAX_NEW_TOKENS,
    parse_sampling_params,
    to_hf_generate_kwargs,
    to_vllm_sampling_kwargs,
)


def test_defaults_are_greedy_for_one_candidate():
    s = parse_sampling_params(None, caption_num=1)
    assert to_hf_generate_kwargs(s, 1) == {
        "max_new_tokens": DEFAULT_MAX_NEW_TOKENS,
        "num_return_sequences": 1,
        "do_sample": False,
    }


def test_several_candidates_without_sampling_settings_sample():
    s = parse_sampling_params({}, caption_num=3)
    assert to_hf_generate_kwargs(s, 3) == {
        "max_new_tokens": DEFAULT_MAX_NEW_TOKENS,
        "num_return_sequences": 3,
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.9,
    }


def test_vllm_spelling_is_accepted_and_data_juicer_defaults_mean_greedy():
    dj_defaults = {
        "do_sample": True,
        "temperature": 0,
        "max_tokens": 1024,
        "top_k": -1,
        "stop_token_ids": [],
    }
    s = parse_sampling_params(dj_defaults, caption_num=2)
    assert s.max_new_tokens == 1024 and s.greedy
    assert to_hf_generate_kwargs(s, 2)["do_sample"] is False
    assert to_hf_generate_kwargs(s, 2)["num_return_sequences"] == 1  # repeated by the backend
    assert to_vllm_sampling_kwargs(s, 2, seed=None) == {
        "n": 2,
        "max_tokens": 1024,
        "min_tokens": 0,
        "temperature": 0.0,
    }


def test_explicit_sampling_settings_are_honoured():
    s = parse_sampling_params(
        {
            "temperature": 0.9,
            "top_p": 0.95,
            "top_k": -1,
            "max_new_tokens": 64,
            "min_new_tokens": 8,
            "repetition_penalty": 1.1,
            "stop": "###",
        },
        caption_num=1,
    )
    assert to_hf_generate_kwargs(s, 1) == {
        "max_new_tokens": 64,
        "min_new_tokens": 8,
        "num_return_sequences": 1,
        "do_sample": True,
        "temperature": 0.9,
        "top_p": 0.95,
        "top_k": 0,
        "repetition_penalty": 1.1,
        "stop_strings": ["###"],
    }
    assert to_vllm_sampling_kwargs(s, 4, seed=3) == {
        "n": 4,
        "max_tokens": 64,
        "min_tokens": 8,
        "temperature": 0.9,
        "top_p": 0.95,
        "top_k": -1,
        "repetition_penalty": 1.1,
        "stop": ["###"],
        "seed": 3,
    }


def test_unknown_keys_are_refused_naming_valid_ones():
    with pytest.raises(
        ValueError,
        match=r"unknown sampling_params key\(s\) \['temprature'\].*"
        r"valid keys are .*temperature",
    ):
        parse_sampling_params({"temprature": 0.5}, caption_num=1)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"max_new_tokens": 4, "min_new_tokens": 5}, "min_new_tokens must be in"),
        ({"temperature": -1}, "temperature must be >= 0"),
        ({"top_p": 0}, "top_p must be in"),
    ],
)
def test_out_of_range_values_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        parse_sampling_params(params, caption_num=1)


def test_settings_serialise_to_stable_json():
    s = parse_sampling_params({"max_tokens": 12}, caption_num=1)
    assert json.loads(s.to_json())["max_new_tokens"] == 12
    assert s.to_json() == parse_sampling_params({"max_new_tokens": 12}, 1).to_json()
