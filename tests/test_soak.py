"""Soak: 1,000 requests, one in ten a bad input, on the tiny model. Nothing crashes, every row
is accounted for, and open file descriptors and memory stay flat after warm-up."""

from __future__ import annotations

import pytest

from dj_ops.ops import VLMVideoCaptioningMapper
from dj_ops.testing.soak import SOAK_PARAMS, run_soak

REQUESTS = 1000
FD_GROWTH_BOUND = 2  # descriptors
RSS_GROWTH_BOUND_MIB = 64  # over ~850 requests after warm-up


@pytest.mark.slow
def test_soak_thousand_requests_with_bad_inputs(qwen3, tmp_path):
    op = VLMVideoCaptioningMapper(hf_model=qwen3, **SOAK_PARAMS)
    figures = run_soak(op, tmp_path, requests=REQUESTS, bad_every=10)
    assert (figures["requests"], figures["bad_inputs"]) == (REQUESTS, REQUESTS // 10)
    assert figures["outcomes"]["by_status"] == {"captioned": 900, "error": 100}
    assert sum(figures["outcomes"]["error_kinds"].values()) == 100
    fd_growth = figures["open_fds_max_after_warmup"] - figures["open_fds_after_warmup"]
    rss_growth = figures["rss_mib_max_after_warmup"] - figures["rss_mib_after_warmup"]
    assert fd_growth <= FD_GROWTH_BOUND, figures
    assert rss_growth <= RSS_GROWTH_BOUND_MIB, figures
