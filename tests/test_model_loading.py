"""The model is loaded lazily, once per worker, in the right dtype."""

import torch
from data_juicer.utils import model_utils

from dj_ops.backends.transformers_backend import pick_dtype
from tests.conftest import make_op, run_op


def test_fp32_on_cpu():
    assert pick_dtype("cpu") == torch.float32


def test_model_is_loaded_lazily_and_once_per_process(qwen3, videos):
    model_utils.free_models()
    op = make_op(qwen3, keep_original_sample=False)
    assert op.model_key not in model_utils.MODEL_ZOO  # construction loads nothing
    samples = [{"text": "", "videos": [v]} for v in videos]
    run_op(op, samples, batch_size=2)  # three batches in this process
    backends = [m for k, m in model_utils.MODEL_ZOO.items() if k is op.model_key]
    assert len(backends) == 1 and backends[0].model.dtype == torch.float32
    model_utils.free_models()
