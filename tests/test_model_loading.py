"""The model is loaded lazily, once per worker, in the right dtype, by the captioner that owns
it: closing the op closes the backend, and a later batch builds it again."""

import torch

from dj_ops.backends.transformers_backend import pick_dtype
from tests.conftest import make_op, run_op


def test_fp32_on_cpu():
    assert pick_dtype("cpu") == torch.float32


def test_model_is_loaded_lazily_and_once_per_process(qwen3, videos):
    built = []
    op = make_op(qwen3, keep_original_sample=False)
    factory = op.model_key
    op.model_key = lambda device: built.append(factory(device=device)) or built[-1]
    assert op._captioner is None  # construction loads nothing
    samples = [{"text": "", "videos": [v]} for v in videos]
    run_op(op, samples, batch_size=2)  # three batches in this process
    assert len(built) == 1 and built[0].model.dtype == torch.float32
    assert op._captioner.backend is built[0]
    op.close()  # the owner closes the backend it built
    assert op._captioner.backend is None
    run_op(op, samples[:1])
    assert len(built) == 2
    op.close()
