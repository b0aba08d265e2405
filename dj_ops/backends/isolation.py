"""No exception in one micro-batch costs the job: it is isolated down to the video.

Whatever raises while a backend builds a micro-batch's inputs, runs the model or decodes its
tokens, the micro-batch is retried: as two halves when it ran out of memory (a smaller batch may
fit), else video by video. A video that still fails alone gets its own error record carrying the
exception's type and message; the other videos are captioned. Exceptions are tagged with the
stage they rose from (:func:`at_stage`), which names the record's kind:

==================  ==================================================================
``input_error``     building the model's inputs: chat template, processor, payload
``generation_error`` the model: its vision tower, ``generate``, the engine
``output_error``    turning generated tokens (or a server's answer) into text
``out_of_memory``   a single request does not fit in memory
==================  ==================================================================

Three entry points, one per call path:

- :func:`run_isolated` runs one micro-batch of an in-process backend (the transformers one);
- :class:`IsolatingBackend` wraps any backend's ``generate`` (the op's micro-batch paths: a raise
  that escapes a backend costs only its requests, each tried alone);
- :class:`IsolatingSession` wraps a stream session (vLLM, a server): a request whose submission
  raises fails alone; a poll that raises fails the requests in flight, which the session cannot
  attribute any more (sessions isolate their own results, so this is the last resort).

Only ``Exception`` is caught: an interrupt or ``SystemExit`` still stops the job, and
``on_error: raise`` still stops it at the first error record.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from loguru import logger

from dj_ops.captioning.batching import HALVES, SINGLES, run_splitting
from dj_ops.captioning.requests import CaptionRequest, CaptionResult

INPUTS, MODEL, OUTPUT = "inputs", "model", "output"  # stages
INPUT_ERROR = "input_error"
GENERATION_ERROR = "generation_error"
OUTPUT_ERROR = "output_error"
STAGE_KINDS = {INPUTS: INPUT_ERROR, MODEL: GENERATION_ERROR, OUTPUT: OUTPUT_ERROR}
OUT_OF_MEMORY = "out_of_memory"  # also dj_ops.backends.memory's (which imports torch)
# Candidate.batching of a video generated again, in a smaller batch or alone, after its
# micro-batch failed.
SPLIT_AFTER_ERROR = "split_after_error"
MAX_MESSAGE_CHARS = 2000  # of an exception's text in a record
_STAGE_ATTRIBUTE = "_dj_ops_stage"


def mark_stage(error: BaseException, stage: str) -> BaseException:
    """Tag ``error`` with ``stage`` unless an inner stage tagged it first; returns it."""
    if getattr(error, _STAGE_ATTRIBUTE, None) is None:
        try:
            setattr(error, _STAGE_ATTRIBUTE, stage)
        except AttributeError:  # an exception type that takes no attributes: untagged
            pass
    return error


@contextmanager
def at_stage(stage: str) -> Iterator[None]:
    """Exceptions raised inside are tagged with ``stage`` (then re-raised unchanged)."""
    try:
        yield
    except Exception as error:
        mark_stage(error, stage)
        raise


def staged(stage: str, function: Callable) -> Callable:
    """``function`` whose exceptions are tagged with ``stage``."""
    def call(*args, **kwargs):
        with at_stage(stage):
            return function(*args, **kwargs)
    return call


def guarded(stage: str, function: Callable[..., CaptionResult], *args) -> CaptionResult:
    """``function(*args)``, or the error record of what it raised (at ``stage``)."""
    try:
        return function(*args)
    except Exception as error:  # noqa: BLE001 - one request's failure, recorded on it
        return failure_of(error, stage)


def error_message(error: BaseException) -> str:
    """``Type: message``, at most :data:`MAX_MESSAGE_CHARS` characters."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    if type(error).__name__ != "OutOfMemoryError" and not isinstance(error, RuntimeError):
        return False
    from dj_ops.backends.memory import is_out_of_memory  # torch: loaded if it raised this

    return is_out_of_memory(error)


def failure_of(error: BaseException, stage: str = MODEL) -> CaptionResult:
    """The error record of a request that ``error`` stopped (``stage``: where, if untagged)."""
    if _is_out_of_memory(error):
        return CaptionResult.failure(OUT_OF_MEMORY, error_message(error))
    kind = STAGE_KINDS[getattr(error, _STAGE_ATTRIBUTE, None) or stage]
    return CaptionResult.failure(kind, error_message(error))


def _classify(error: Exception) -> tuple[str, CaptionResult]:
    """How to retry a failed batch, and the failure a request failing alone gets."""
    result = failure_of(error)
    return (HALVES if result.error_kind == OUT_OF_MEMORY else SINGLES), result


def _log_failure(size: int, failure: CaptionResult, how: str) -> None:
    if size == 1:
        logger.warning(f"a request failed alone, recording {failure.error_kind}: "
                       f"{failure.error_message}")
    else:
        then = "as two halves" if how == HALVES else "video by video"
        logger.warning(f"a micro-batch of {size} failed ({failure.error_kind}: "
                       f"{failure.error_message}); generating it again {then}")


def mark_split(result: CaptionResult) -> CaptionResult:
    """``result`` with each candidate marked as generated after its micro-batch failed."""
    if not result.ok:
        return result
    return CaptionResult([replace(c, batching=SPLIT_AFTER_ERROR) for c in result.candidates])


def run_isolated(requests: list, run_batch: Callable[[list], list[CaptionResult]],
                 after_failure: Callable[[int, CaptionResult, str], None] | None = None
                 ) -> list[CaptionResult]:
    """``run_batch(requests)``; on any exception, its halves (out of memory) or its requests
    one by one, down to a per-request error record.

    :param after_failure: called after each failure, once the error is released (free memory);
        the failure is logged either way.
    """
    def on_failure(size: int, failure: CaptionResult, how: str) -> None:
        if after_failure is not None:
            after_failure(size, failure, how)
        _log_failure(size, failure, how)

    return run_splitting(requests, run_batch, _classify, lambda _, failure: failure,
                         on_failure, mark_split)


class IsolatingBackend:
    """A backend whose ``generate`` and ``generate_text`` never raise ``Exception``: a call that
    raises is made again request by request, and a request that raises alone gets its error
    record."""

    def __init__(self, backend):
        self.backend = backend

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        return run_isolated(list(requests), self.backend.generate)

    def generate_text(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        return run_isolated(list(requests), self.backend.generate_text)

    def __getattr__(self, name: str):  # everything else is the backend's
        return getattr(self.backend, name)


def isolating(backend) -> IsolatingBackend:
    """``backend`` with :class:`IsolatingBackend`'s ``generate`` (idempotent)."""
    return backend if isinstance(backend, IsolatingBackend) else IsolatingBackend(backend)


class IsolatingSession:
    """A stream session (``submit``, ``poll``, ``in_flight``, ``close``) whose calls never raise
    ``Exception`` for a request: a submission that raises fails that request alone (its input
    stage); a poll that raises fails every request in flight with that error (a result the
    session returns for one of them later is dropped)."""

    def __init__(self, session):
        self.session = session
        self.pending: set[Hashable] = set()  # submitted to the session, not returned yet
        self.failed: list[tuple[Hashable, CaptionResult]] = []

    def submit(self, key: Hashable, request: CaptionRequest) -> None:
        try:
            self.session.submit(key, request)
        except Exception as error:  # noqa: BLE001 - the request fails, the job goes on
            failure = failure_of(error, INPUTS)
            _log_failure(1, failure, SINGLES)
            self.failed.append((key, failure))
            return
        self.pending.add(key)

    def poll(self, wait_s: float) -> list[tuple[Hashable, CaptionResult]]:
        done, self.failed = self.failed, []
        if self.pending and not done:
            try:
                got = self.session.poll(wait_s)
            except Exception as error:  # noqa: BLE001 - nothing left to attribute it to
                failure = failure_of(error, MODEL)
                logger.warning(f"collecting results failed ({failure.error_message}); "
                               f"recording {failure.error_kind} on the {len(self.pending)} "
                               "requests in flight")
                got = [(key, failure) for key in sorted(self.pending, key=repr)]
            done = [(key, result) for key, result in got if key in self.pending]
        for key, _ in done:
            self.pending.discard(key)
        return done

    @property
    def in_flight(self) -> int:
        return len(self.pending) + len(self.failed)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> IsolatingSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
