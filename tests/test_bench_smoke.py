"""Every benchmark in ``bench/`` runs at a tiny size and ends without an exception, so none can
rot unseen (``bench.vllm_cpu`` had, on an attribute the op no longer had). Each runs in a copy
of ``bench/`` under a temporary folder, so that what it saves (results, the performance page)
stays there. CI runs these with ``-m bench`` (``.venv`` with the ``bench`` extra) and the vLLM
one with ``-m vllm`` (``.venv-vllm``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# benchmark -> its command line at a tiny size (a module run with -m, unless a script path)
SMOKE = {
    "bench_decode": ["--repeats", "1", "--requests", "2", "--batch", "2"],
    "constrained_decoding": ["--rounds", "1", "--free-tokens", "8"],
    "dj_builtin": [],
    "enhancement_cost": ["--requests", "2", "--rounds", "1", "--new-tokens", "4", "--save", ""],
    "family_batching": ["--requests", "2", "--rounds", "1", "--new-tokens", "4", "--no-save"],
    "gpu": ["--device", "cpu", "--shape", "smoke", "--requests", "2", "--baseline-requests", "1",
            "--tokens", "4", "--caption-num", "1", "--save", ""],
    "long_video": ["--rounds", "1", "--seconds", "20", "--save", ""],
    "quality_gate": ["--requests", "2", "--rounds", "2", "--save", ""],
    "ray_scaling": ["--videos", "4", "--rounds", "1", "--save", ""],
    "report": ["--no-run"],
    "report_overhead": ["--requests", "2", "--rounds", "1", "--save", ""],
    "scaling": ["--repeats", "1", "--sweeps", "torch_threads", "--requests", "2", "--save", ""],
    "soak": ["--requests", "12", "--batch-size", "4", "--warmup-batches", "1", "--out",
             "soak_smoke.json"],
    "store_overhead": ["--requests", "2", "--rounds", "2", "--save", ""],
    "structured_captions": ["--rounds", "1", "--free-tokens", "8"],
    "throughput": ["--requests", "2", "--rounds", "1", "--scenario", "caption_num=1, 16 tokens",
                   "--save", ""],
}
VLLM_SMOKE = {"vllm_cpu": ["--requests", "2", "--rounds", "1", "--caption-num", "1",
                           "--new-tokens", "4", "--generation-batch-size", "1", "--save", ""]}
SCRIPTS = {"soak"}  # run as ``python bench/soak.py``
NEEDS = {"constrained_decoding": "xgrammar", "report": "matplotlib"}  # the bench extra


def benchmarks() -> set[str]:
    """The modules of ``bench/`` that run as a program."""
    return {path.stem for path in (ROOT / "bench").glob("*.py")
            if re.search(r'^if __name__ == "__main__":', path.read_text(), re.MULTILINE)}


def test_every_benchmark_has_a_smoke_run():
    assert benchmarks() == set(SMOKE) | set(VLLM_SMOKE)


def run_tiny(name: str, args: list[str], tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "bench", copy / "bench",
                    ignore=shutil.ignore_patterns("__pycache__", "*.png"))
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copytree(ROOT / "recipes", copy / "recipes")  # bench.ray_scaling reads its recipe
    command = ([sys.executable, f"bench/{name}.py"] if name in SCRIPTS
               else [sys.executable, "-m", f"bench.{name}"])
    env = {**os.environ, "PYTHONPATH": f"{copy}{os.pathsep}{ROOT}"}
    done = subprocess.run([*command, *args], cwd=copy, env=env, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, f"{name}: {done.stderr[-4000:]}"


@pytest.mark.bench
@pytest.mark.parametrize("name", sorted(SMOKE))
def test_the_benchmark_runs_at_a_tiny_size(name, tmp_path):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    run_tiny(name, SMOKE[name], tmp_path)


@pytest.mark.bench
@pytest.mark.vllm
@pytest.mark.parametrize("name", sorted(VLLM_SMOKE))
def test_the_vllm_benchmark_runs_at_a_tiny_size(name, tmp_path):
    pytest.importorskip("vllm")
    run_tiny(name, VLLM_SMOKE[name], tmp_path)
