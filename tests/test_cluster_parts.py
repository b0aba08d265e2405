"""The parts of dj_ops.cluster that need no cluster: how rows are cut for the replicas, which
worker a record names, and what copies of one op share in a process. (On a real multi-node
cluster: test_ray_cluster.py, marker ray.)"""

from __future__ import annotations

import os
import pickle
import socket

import dill
from data_juicer.utils import model_utils
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens
from hypothesis import given
from hypothesis import strategies as st

from dj_ops.captioning.records import META_KEY
from dj_ops.cluster import spread
from dj_ops.cluster.identity import worker_identity
from dj_ops.cluster.per_process import shared_captioner
from dj_ops.cluster.spread import MAX_BLOCK_ROWS, plan_spread
from tests.conftest import make_op, run_op

V, E = SpecialTokens.video, SpecialTokens.eoc


@given(rows=st.integers(1, 3_000_000), replicas=st.integers(1, 512),
       batch_size=st.integers(1, 4096))
def test_every_replica_gets_a_block_and_every_block_a_whole_batch(rows, replicas, batch_size):
    plan = plan_spread(rows, replicas, batch_size)
    assert plan.blocks >= min(rows, replicas)  # no replica idles for lack of a block
    assert 1 <= plan.batch_size <= batch_size
    # Ray Data fills a task until it holds batch_size rows: blocks of at least one batch
    # (the last may be short) are one task each
    assert plan.rows_per_block >= plan.batch_size
    assert plan.rows_per_block <= max(MAX_BLOCK_ROWS, plan.batch_size)
    assert (plan.blocks - 1) * plan.rows_per_block < rows <= plan.blocks * plan.rows_per_block


def test_small_datasets_get_one_block_per_replica_and_large_ones_bounded_blocks():
    assert (plan_spread(24, 2, 16).blocks, plan_spread(24, 2, 16).batch_size) == (2, 12)
    assert plan_spread(32, 2, 128).rows_per_block == 16
    assert plan_spread(1_000_000, 8, 128).rows_per_block == MAX_BLOCK_ROWS


def test_the_hook_waits_for_data_juicers_ray_dataset(monkeypatch):
    monkeypatch.delitem(__import__("sys").modules, spread.RAY_DATASET_MODULE, raising=False)
    assert spread.install() is False  # no Ray executor in this process: nothing wrapped


def test_records_name_the_worker_that_built_them(qwen3, videos):
    op = make_op(qwen3, keep_original_sample=False)
    rows = run_op(op, [{"text": f"{V} {E}", "videos": [videos[0]]}])
    worker = rows[0][Fields.meta][META_KEY]["worker"]
    assert worker == {"host": socket.gethostname(), "node": "", "pid": os.getpid()}
    assert worker_identity()["node"] == ""  # not in a Ray process


def test_copies_of_an_op_share_its_model_and_separate_ops_do_not(qwen3):
    op, other = make_op(qwen3), make_op(qwen3)
    for copy in (pickle.loads(pickle.dumps(op.model_key)), dill.loads(dill.dumps(op)).model_key):
        assert copy == op.model_key and hash(copy) == hash(op.model_key)
    assert other.model_key != op.model_key
    model_utils.free_models()
    try:
        first = model_utils.get_model(op.model_key)
        assert model_utils.get_model(dill.loads(dill.dumps(op)).model_key) is first
        assert len(model_utils.MODEL_ZOO) == 1
    finally:
        model_utils.free_models()


def test_outside_ray_workers_every_copy_builds_its_own_captioner():
    built = []
    captioners = [shared_captioner("key", lambda: built.append(object()) or built[-1])
                  for _ in range(2)]
    assert captioners[0] is not captioners[1] and len(built) == 2
