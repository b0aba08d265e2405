"""The Ray recipe on a real Ray cluster on loopback: same rows as the default executor."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.testing.ray_cluster import RAY_ENV, LoopbackCluster
from tests.store_support import comparable_rows
from tests.test_recipes import clips, run_offline

ROOT = Path(__file__).resolve().parents[1]
V, E = SpecialTokens.video, SpecialTokens.eoc


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray cluster on loopback: a head with no CPUs and one worker node of 2 CPUs
    (dj_ops.testing.ray_cluster), stopped after the module. Drivers started by the tests
    inherit the environment that keeps them on loopback (RAY_ENV)."""
    with pytest.MonkeyPatch.context() as env, LoopbackCluster(workers=1, cpus=2) as cluster:
        for name, value in RAY_ENV.items():
            env.setenv(name, value)
        yield cluster


@pytest.fixture(scope="module")
def ray_address(ray_cluster) -> str:
    return ray_cluster.address


@pytest.mark.ray  # about 80 s: CI runs the Ray tests in their own step (.ci/run)
def test_ray_recipe_equals_the_default_executor(tmp_path, qwen3, ray_address):
    videos = clips(tmp_path, [2.0, 3.0, 2.5, 1.5, 2.0])
    samples = [{"text": f"{V} {E}", "videos": [v]} for v in videos]
    samples.append({"text": f"{V} first {E}{V} second {E}", "videos": videos[:2]})
    overrides = {"batch_size": 2}  # several Ray tasks, each a batch of its own
    on_ray = run_offline("caption_ray.yaml", tmp_path / "ray", qwen3, samples, overrides,
                         top_level={"ray_address": ray_address})
    default = run_offline("caption_ray.yaml", tmp_path / "default", qwen3, samples, overrides,
                          top_level={"executor_type": "default"})
    assert len(on_ray) == len(samples)
    assert comparable_rows(on_ray) == comparable_rows(default)
    assert (tmp_path / "ray" / "out" / "result.jsonl").is_dir()  # Ray writes shards
