"""Backends that batch by themselves are fed continuously: each decoded video is submitted at
once, up to ``max_in_flight`` requests are in flight, and nothing waits for a micro-batch's
slowest video. Checked through the real op and the real HTTP backend against the loopback
server (which counts the requests it is answering at once)."""

from __future__ import annotations

import time

import pytest
from data_juicer.utils.constant import Fields

from dj_ops.captioning.records import META_KEY
from dj_ops.ops.sample_builder import SampleBuilder
from dj_ops.ops.streaming import caption_with_engine
from dj_ops.testing.openai_server import CompletionServer, Faults
from dj_ops.video import FrameSettings
from dj_ops.video.decoders import open_decode_source
from tests.conftest import FAST_FRAMES, make_op, run_op
from tests.test_op import single_video_samples


@pytest.fixture(scope="module")
def server(qwen3):
    with CompletionServer(qwen3) as running:
        yield running


@pytest.mark.parametrize("max_in_flight", [1, 3])
def test_requests_in_flight_reach_max_in_flight_not_the_micro_batch(qwen3, videos,
                                                                    max_in_flight):
    """The server holds the first max_in_flight requests until that many are in flight (60 s
    at most): micro-batches of one video would keep one at a time."""
    faults = Faults(hold_first=max_in_flight)
    with CompletionServer(qwen3, faults=faults) as server:
        _run_and_check(qwen3, videos, server, max_in_flight)


def _run_and_check(qwen3, videos, server, max_in_flight):
    received = len(server.received)
    samples = single_video_samples(videos)
    op = make_op(qwen3, backend="openai", model_params={"api_base": server.url},
                 generation_batch_size=1, prefetch=4, max_in_flight=max_in_flight,
                 keep_original_sample=False)
    rows = run_op(op, samples, batch_size=len(samples))
    assert len(rows) == len(samples)
    assert all(r[Fields.meta][META_KEY]["status"] == "captioned" for r in rows)
    assert len(server.received) - received == len(samples)
    # micro-batches of generation_batch_size=1 would never have two requests on the wire
    assert server.max_in_flight == max_in_flight


class Predecoded:
    """A decoding source whose videos are all decoded (for real, by ``source``) before the
    stream starts: every video is ready at once, so how many requests the stream puts in flight
    depends on its bound alone, not on how fast decoding and answers are."""

    def __init__(self, source, paths: list[str], settings: FrameSettings):
        self.videos = [source.result(source.submit(path, settings)) for path in paths]
        self.paths = paths
        self.tickets: dict[int, str] = {}

    def submit(self, path: str, settings: FrameSettings) -> int:
        self.tickets[len(self.tickets)] = path
        return len(self.tickets) - 1

    def ready(self, tickets, timeout_s):
        return list(tickets)

    def result(self, ticket):
        return self.videos[self.paths.index(self.tickets[ticket])]

    def discard(self, tickets) -> None:
        pass


@pytest.mark.parametrize("max_concurrency", [2, 64])
def test_the_backend_concurrency_limit_caps_max_in_flight(qwen3, videos, max_concurrency):
    """The op keeps min(max_in_flight, the backend's concurrency_limit) requests in flight:
    with every video ready at once, the stream's peak is that bound exactly (2 with
    max_concurrency 2; all the videos with 64, which shows the peak can exceed 2)."""
    with CompletionServer(qwen3) as server:
        op = make_op(qwen3, backend="openai", max_in_flight=64,
                     model_params={"api_base": server.url, "max_concurrency": max_concurrency})
        backend = op.model_key("cpu")
        frames = FrameSettings(**FAST_FRAMES, size_factor=backend.size_factor or 28)
        inline = open_decode_source("pyav", 0, 60.0)
        source = Predecoded(inline, list(videos), frames)
        builder = SampleBuilder({"text": [""] * len(videos), "videos": [[v] for v in videos]},
                                op.config.layout)
        peak = caption_with_engine(builder, backend, source, frames, max_in_flight=64,
                                   max_decoded=len(videos))
        backend.close()
    assert len(videos) > 2
    assert peak == min(max_concurrency, len(videos))
    assert server.max_in_flight <= max_concurrency
    assert all(builder.rows[r].candidates for r in range(len(videos)))  # every video captioned


def test_the_pool_says_which_tickets_are_ready(videos):
    source = open_decode_source("pyav", 1, 60.0)
    try:
        settings = FrameSettings(max_frames=2, min_frames=2, max_pixels=64 * 64,
                                 min_pixels=28 * 28)
        tickets = [source.submit(path, settings) for path in videos[:2]]
        start = time.monotonic()
        first = source.ready(tickets, timeout_s=60.0)
        assert first and set(first) <= set(tickets) and time.monotonic() - start < 60.0
        while len(source.ready(tickets, timeout_s=1.0)) < 2:
            pass
        assert [source.result(t).frames.shape[0] for t in tickets] == [2, 2]
        assert source.ready([], timeout_s=5.0) == []
    finally:
        source.close()


def test_the_result_store_works_on_the_continuous_path(qwen3, videos, server, tmp_path):
    """Captions of the openai backend go to the result store; a second run reuses them all
    and sends the server nothing."""
    samples = single_video_samples(videos)
    params = dict(backend="openai", model_params={"api_base": server.url},
                  keep_original_sample=False, result_store=str(tmp_path / "store.sqlite"),
                  max_in_flight=2, generation_batch_size=1)
    first = run_op(make_op(qwen3, **params), samples, batch_size=len(samples))
    received = len(server.received)
    again = run_op(make_op(qwen3, **params), samples, batch_size=len(samples))
    assert len(server.received) == received
    assert [r["text"] for r in again] == [r["text"] for r in first]
