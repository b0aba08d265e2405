"""``dj_ops.testing.counting_proxy`` in front of the loopback chat-completions server: it passes
answers through unchanged, counts open requests exactly, holds them as told, and answers 502
for a server that is gone. The vLLM server tests rely on each of these."""

from __future__ import annotations

import threading

from dj_ops.testing.counting_proxy import CountingProxy
from dj_ops.testing.openai_server import CompletionServer
from tests.test_openai_backend import backend, free_port, request_  # noqa: F401 (fixture)


def _root(api_base: str) -> str:
    return api_base.removesuffix("/v1")


def test_answers_pass_through_and_open_requests_are_counted(qwen3, request_):  # noqa: F811
    with CompletionServer(qwen3) as server:
        direct = backend(qwen3, server.url).generate([request_])
        with CountingProxy(_root(server.url), hold_until=2) as proxy:
            results = backend(qwen3, proxy.url, max_concurrency=2).generate([request_] * 4)
    assert [r.candidates[0].text for r in results] == [direct[0].candidates[0].text] * 4
    assert proxy.requests == 4 and proxy.in_flight == 0
    # held until two were open: the bound is reached whatever the timing, and never exceeded
    assert proxy.max_in_flight == 2


def test_held_requests_wait_until_released(qwen3, request_):  # noqa: F811
    with CompletionServer(qwen3) as server, CountingProxy(_root(server.url)) as proxy:
        proxy.hold()
        results: list = []
        client = threading.Thread(target=lambda: results.extend(
            backend(qwen3, proxy.url).generate([request_])))
        client.start()
        client.join(timeout=1.0)  # held: no answer, however long we wait
        assert client.is_alive() and not proxy.sent.is_set() and not server.received
        proxy.release()
        client.join(timeout=60)
    assert not client.is_alive() and results[0].ok and len(server.received) == 1


def test_a_server_that_is_gone_gets_502_and_the_backend_retries(qwen3, request_):  # noqa: F811
    with CountingProxy(f"http://127.0.0.1:{free_port()}") as proxy:
        [result] = backend(qwen3, proxy.url, max_retries=2).generate([request_])
    assert result.error_kind == "http_error" and result.error_message.startswith("HTTP 502")
    assert "did not answer" in result.error_message
    assert proxy.requests == proxy.upstream_errors == 3  # the first try and two retries
