"""``kill -9`` of ``dj-process`` running the ``vllm`` backend on vLLM's CPU engine, once the
result store holds a result: Data-Juicer's worker, vLLM's engine core, the engine watchdog and
the decoding workers are all gone within 10 s, and the store does not change any more.
In ``.venv-vllm`` (``pytest -m vllm``)."""

from __future__ import annotations

import pytest

pytest.importorskip("vllm")

from dj_ops.testing.tiny_models import VLLM_HEAD_DIM, build_tiny_model  # noqa: E402
from tests.job_support import dj_process, dj_process_recipe, make_clips  # noqa: E402
from tests.test_job_kill import (  # noqa: E402
    assert_nothing_left_and_store_still,
    killed_when_stored,
)
from tests.vllm_support import ENGINE, FRAMES  # noqa: E402

pytestmark = pytest.mark.vllm


def test_kill_9_of_dj_process_ends_the_vllm_engine_too(tmp_path):
    model = build_tiny_model("qwen3_vl", tmp_path / "model", head_dim=VLLM_HEAD_DIM)
    store = tmp_path / "store.sqlite"
    recipe = dj_process_recipe(tmp_path, make_clips(tmp_path / "clips"), str(model), np=1,
                               result_store=str(store), backend="vllm", model_params=ENGINE,
                               **FRAMES)
    job = dj_process(recipe, tmp_path / "job.log")
    try:
        at_kill = killed_when_stored(job, store)
        commands = " ".join(job.commands.values())
        assert "VLLM::EngineCore" in commands  # vLLM's engine core, as it names itself
        assert "engine_watchdog" in commands and "dj_ops.video.worker" in commands
        assert_nothing_left_and_store_still(job, store, at_kill)
    finally:
        job.kill_everything()
