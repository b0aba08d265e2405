"""The isolation rules on their own (dj_ops/backends/isolation.py): stage tags name the error
kind, out of memory halves while anything else goes one by one, and a stream session's raise
fails only what it can be pinned on. The real backends are faulted in test_batch_faults.py."""

from __future__ import annotations

import pytest

from dj_ops.backends.isolation import (
    GENERATION_ERROR,
    INPUT_ERROR,
    INPUTS,
    MAX_MESSAGE_CHARS,
    OUT_OF_MEMORY,
    OUTPUT,
    OUTPUT_ERROR,
    SPLIT_AFTER_ERROR,
    IsolatingBackend,
    IsolatingSession,
    at_stage,
    failure_of,
    run_isolated,
)
from dj_ops.captioning.requests import Candidate, CaptionResult


def ok(item) -> CaptionResult:
    return CaptionResult([Candidate(f"caption of {item}", 3, False)])


def test_the_innermost_stage_names_the_kind():
    with pytest.raises(ValueError) as raised, at_stage(OUTPUT), at_stage(INPUTS):
        raise ValueError("bad template")
    assert failure_of(raised.value).error_kind == INPUT_ERROR
    assert failure_of(RuntimeError("boom")).error_kind == GENERATION_ERROR  # untagged: model
    assert failure_of(KeyError("x"), OUTPUT).error_kind == OUTPUT_ERROR
    assert failure_of(MemoryError()).error_kind == OUT_OF_MEMORY
    long = failure_of(ValueError("x" * 5000)).error_message
    assert len(long) == MAX_MESSAGE_CHARS and long.startswith("ValueError: xxx")


def test_a_batch_error_is_retried_one_by_one_and_marked():
    calls = []

    def run(batch):
        calls.append(list(batch))
        if "bad" in batch:
            with at_stage(INPUTS):
                raise ValueError(f"cannot stack {len(batch)}")
        return [ok(item) for item in batch]

    results = run_isolated(["a", "bad", "c"], run)
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    assert results[1].error_kind == INPUT_ERROR
    assert results[1].error_message == "ValueError: cannot stack 1"
    assert [c.batching for r in (results[0], results[2]) for c in r.candidates] == [
        SPLIT_AFTER_ERROR] * 2


def test_out_of_memory_still_halves():
    sizes = []

    def run(batch):
        sizes.append(len(batch))
        if len(batch) > 1:
            raise MemoryError("too big")
        return [ok(item) for item in batch]

    assert all(r.ok for r in run_isolated(list("abcd"), run))
    assert sizes == [4, 2, 1, 1, 2, 1, 1]


def test_interrupts_are_not_caught():
    def run(batch):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_isolated(["a", "b"], run)


class Backend:
    name = "plain"

    def generate(self, requests):
        if "bad" in requests:
            raise TypeError("a bug")
        return [ok(r) for r in requests]


def test_a_backend_that_raises_costs_only_the_request_that_fails_alone():
    backend = IsolatingBackend(Backend())
    results = backend.generate(["a", "bad"])
    assert results[0].ok and results[1].error_kind == GENERATION_ERROR
    assert backend.name == "plain"  # everything else is the backend's


class Session:
    """A stream session that raises where told: submitting ``bad``, or polling once."""

    def __init__(self, poll_raises: bool = False):
        self.queue, self.poll_raises, self.closed = [], poll_raises, False

    def submit(self, key, request):
        if request == "bad":
            raise ValueError("cannot build")
        self.queue.append(key)

    def poll(self, wait_s):
        if self.poll_raises:
            self.poll_raises = False
            raise RuntimeError("lost track")
        done, self.queue = self.queue, []
        return [(key, ok(key)) for key in done]

    def close(self):
        self.closed = True


def test_a_submission_that_raises_fails_its_request_alone():
    session = IsolatingSession(Session())
    session.submit(1, "good")
    session.submit(2, "bad")
    assert session.in_flight == 2
    results = dict(session.poll(0))
    results.update(session.poll(0))
    assert results[1].ok and results[2].error_kind == INPUT_ERROR
    assert results[2].error_message == "ValueError: cannot build"
    assert session.in_flight == 0


def test_a_poll_that_raises_fails_what_is_in_flight_and_drops_their_late_results():
    inner = Session(poll_raises=True)
    with IsolatingSession(inner) as session:
        session.submit(1, "a")
        session.submit(2, "b")
        failed = session.poll(0)
        assert sorted(key for key, _ in failed) == [1, 2]
        assert {r.error_message for _, r in failed} == {"RuntimeError: lost track"}
        assert session.poll(0) == [] and session.in_flight == 0  # 1 and 2's late results
        session.submit(3, "c")
        assert [key for key, r in session.poll(0) if r.ok] == [3]
    assert inner.closed
