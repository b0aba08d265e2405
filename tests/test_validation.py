"""Bad parameters fail at construction with the fix in the message; good ones work."""

from __future__ import annotations

import re

import pytest
import torch
from data_juicer.utils.constant import Fields

from dj_ops.backends.base import BackendConfig, check_model_params
from dj_ops.backends.transformers_backend import TransformersBackend
from dj_ops.captioning.generation import GenerationSettings, parse_sampling_params
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


def test_each_group_of_declared_keys_is_accepted_and_goes_where_it_belongs(qwen3):
    """Adapter keys choose the family and stay away from the loader, processor options reach the
    processor, from_pretrained keys reach the model; the key after all groups is refused."""
    params = {"model_type": "qwen3_vl", "processor_kwargs": {"cap_pixels_per_frame": True},
              "dtype": "bfloat16", "low_cpu_mem_usage": True}
    config = BackendConfig(model=qwen3, settings=GenerationSettings(), model_params=params)
    TransformersBackend.check_config(config)
    backend = TransformersBackend(config)
    assert backend.adapter.name == "qwen3_vl" and backend.model.dtype == torch.bfloat16
    assert backend.videos_kwargs["cap_pixels_per_frame"] is True
    assert config.params.loader == {"dtype": "bfloat16", "low_cpu_mem_usage": True}
    typo = BackendConfig(model=qwen3, settings=GenerationSettings(),
                         model_params={**params, "model_typ": "qwen3_vl"})
    with pytest.raises(ValueError, match=re.escape("unknown model_params key(s) ['model_typ']")):
        TransformersBackend.check_config(typo)


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
