"""Torch threads while the op generates on CPU: chosen per process, restored after each batch."""

from __future__ import annotations

import pytest
import torch

from dj_ops.ops import captioner as op_module
from dj_ops.ops.cpu_threads import generation_threads, intra_op_threads
from dj_ops.ops.pipeline import caption_batch
from tests.conftest import make_op, run_op
from tests.test_op import single_video_samples


@pytest.mark.parametrize(("cores", "workers", "on_gpu", "requested", "expected"), [
    (2, 2, False, None, 1),     # this machine: one thread beside two decoding processes
    (16, 16, False, None, 8),   # half the cores of the op process
    (1, 1, False, None, 1),     # never zero
    (8, 0, False, None, None),  # decoding in the op's thread: torch keeps its own
    (8, 8, True, None, None),   # the model is on a GPU: torch keeps its own
    (8, 8, False, 3, 3),        # asked for
    (8, 8, True, 3, 3),
])
def test_generation_threads(cores, workers, on_gpu, requested, expected):
    assert generation_threads(cores, workers, on_gpu, requested) == expected


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_intra_op_threads_sets_then_restores(restore_threads):
    torch.set_num_threads(2)
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), intra_op_threads(1):
        raise RuntimeError("a failed batch restores the threads too")
    assert torch.get_num_threads() == 2
    with intra_op_threads(None):
        assert torch.get_num_threads() == 2


def test_the_op_generates_with_its_threads_and_restores_the_callers(qwen3, videos, monkeypatch,
                                                                    restore_threads):
    seen = []

    def spying_caption_batch(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return caption_batch(*args, **kwargs)

    monkeypatch.setattr(op_module, "caption_batch", spying_caption_batch)
    torch.set_num_threads(2)
    rows = run_op(make_op(qwen3, torch_threads=1), single_video_samples(videos[:1]))
    assert len(rows) == 2 and seen == [1]
    assert torch.get_num_threads() == 2


def test_default_batch_size_lets_decoding_run_ahead(qwen3):
    assert make_op(qwen3).batch_size == 16 * 8
    assert make_op(qwen3, generation_batch_size=2).batch_size == 32
    assert make_op(qwen3, batch_size=5).batch_size == 5
