"""Bad parameters fail at construction with the fix in the message; good ones work."""

from __future__ import annotations

import re

import pytest
import torch
from data_juicer.utils.constant import Fields

from dj_ops.adapters.registry import ADAPTER_PARAM_KEYS
from dj_ops.backends.base import BackendConfig, check_model_params
from dj_ops.backends.transformers_backend import FROM_PRETRAINED_KEYS, TransformersBackend
from dj_ops.captioning.generation import parse_sampling_params
from dj_ops.captioning.records import META_KEY
from tests.conftest import make_op, run_op


def test_unknown_model_params_are_refused_naming_the_valid_keys(qwen3):
    with pytest.raises(ValueError) as error:
        make_op(qwen3, model_params={"dtyp": "float32", "attn_implementation": "eager"})
    message = str(error.value)
    assert message.startswith(
        "unknown model_params key(s) ['dtyp'] for the 'transformers' backend; valid keys are "
        "['attn_implementation', 'cache_dir', 'device_map', 'dtype', ")
    assert "'processor_kwargs'" in message and "'trust_remote_code'" in message


def test_the_transformers_backend_declares_from_pretrained_keys_and_processor_kwargs():
    assert TransformersBackend.model_param_keys == FROM_PRETRAINED_KEYS | ADAPTER_PARAM_KEYS | {
        "processor_kwargs", "quantization"}
    assert {"model_type", "template_version"} <= ADAPTER_PARAM_KEYS
    assert {"dtype", "torch_dtype", "device_map", "quantization_config"} <= FROM_PRETRAINED_KEYS


def test_each_backend_checks_against_its_own_declared_set():
    check_model_params("custom", {"tensor_parallel_size": 2}, frozenset({"tensor_parallel_size"}))
    with pytest.raises(ValueError, match=re.escape(
            "unknown model_params key(s) ['a', 'b'] for the 'custom' backend; valid keys are "
            "['c']")):
        check_model_params("custom", {"b": 1, "a": 2, "c": 3}, frozenset({"c"}))


def test_accepted_model_params_reach_the_model(qwen3, videos):
    op = make_op(qwen3, keep_original_sample=False,
                 model_params={"dtype": "float32", "attn_implementation": "eager",
                               "low_cpu_mem_usage": True, "processor_kwargs": {}})
    rows = run_op(op, [{"text": "", "videos": videos[:1]}])
    assert rows[0][Fields.meta][META_KEY]["status"] == "captioned"


@pytest.mark.parametrize("key", ["dtype", "torch_dtype"])
def test_dtype_under_either_spelling_reaches_the_model(qwen3, key):
    config = BackendConfig(model=qwen3, settings=parse_sampling_params(None, 1),
                           model_params={key: "bfloat16"})
    assert TransformersBackend(config).model.dtype == torch.bfloat16


@pytest.mark.parametrize("system_prompt", ["", "  \n\t"])
def test_blank_system_prompt_is_refused(qwen3, system_prompt):
    with pytest.raises(ValueError, match="system_prompt is empty"):
        make_op(qwen3, system_prompt=system_prompt)
