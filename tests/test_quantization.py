"""Quantization from model_params: translated per backend, refused at construction where it
cannot run (this machine has no GPU)."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch

from dj_ops.backends.quantization import (
    check_hf_quantization,
    hf_quantization_kwargs,
    vllm_quantization_kwargs,
)
from tests.conftest import make_op


def test_no_quantization_asks_for_nothing():
    check_hf_quantization(None, cuda_available=False)
    assert hf_quantization_kwargs(None, torch.float32, "cpu") == {}
    assert vllm_quantization_kwargs(None) == {}


def test_4bit_is_nf4_with_the_model_dtype_on_the_worker_gpu():
    kwargs = hf_quantization_kwargs("4bit", torch.bfloat16, "cuda:1")
    config = kwargs["quantization_config"]
    assert kwargs["device_map"] == {"": "cuda:1"}
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_compute_dtype == torch.bfloat16


def test_8bit_is_llm_int8():
    config = hf_quantization_kwargs("8bit", torch.float16, "cuda:0")["quantization_config"]
    assert config.load_in_8bit and not config.load_in_4bit


def test_vllm_translation():
    assert vllm_quantization_kwargs("4bit") == {"quantization": "bitsandbytes"}
    assert vllm_quantization_kwargs("fp8") == {"quantization": "fp8"}
    with pytest.raises(ValueError, match="'8bit' is not offered by vLLM"):
        vllm_quantization_kwargs("8bit")


def test_unknown_mode_and_cpu_are_refused():
    with pytest.raises(ValueError, match=re.escape("choose one of ['4bit', '8bit']")):
        check_hf_quantization("2bit", cuda_available=True)
    with pytest.raises(ValueError, match="needs a CUDA GPU, and none is available"):
        check_hf_quantization("4bit", cuda_available=False)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None,
                    reason="bitsandbytes is installed")
def test_missing_bitsandbytes_names_the_extra():
    with pytest.raises(ModuleNotFoundError, match=re.escape('pip install "dj-ops[quantization]"')):
        check_hf_quantization("8bit", cuda_available=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_op_refuses_quantization_on_cpu_at_construction(qwen3):
    with pytest.raises(ValueError, match="quantization='4bit' uses bitsandbytes, which needs a"):
        make_op(qwen3, model_params={"quantization": "4bit"})
