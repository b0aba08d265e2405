"""Feed an in-process vLLM engine one request at a time, and survive its death once.

``LLM.generate`` blocks until every prompt of its call is done, so the next videos could only
join once the slowest of the call had finished. vLLM's own engine loop is public: the
``LLMEngine`` behind ``LLM.llm_engine`` takes requests with ``add_request`` and advances all
of them by one scheduler step per ``step()`` (which is what ``LLM.generate`` runs inside). This
session drives that loop itself, so decoded videos join the running batch at any step.

When the engine process dies (``EngineDeadError``; vLLM 0.32's CPU engine dies so on a
per-request seed meeting chunked prefill, see ``vllm_requests.sampling_kwargs``), the backend
rebuilds the engine and every request in flight is tried again, once: a request that was in
flight at a second death gets an ``engine_dead`` error record, and the job goes on.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Hashable

from loguru import logger

from dj_ops.backends.base import CaptionRequest, CaptionResult
from dj_ops.backends.isolation import OUTPUT, guarded
from dj_ops.backends.streaming import ENGINE_DEAD, StreamSession
from dj_ops.backends.vllm_requests import (
    build_request,
    check_context,
    classify_engine_error,
    parse_request_output,
)

# Tries of one request on a rebuilt engine after the engine died with it in flight.
ENGINE_RETRIES = 1
# How often a step waiting for output checks that the engine process is alive.
STEP_WAIT_S = 0.5


def wait_for_engine_output(core, timeout_s: float) -> bool:
    """Whether the engine client ``core`` has output to step on, waiting up to ``timeout_s``.

    Written here because vLLM 0.32's ``LLMEngine.step()`` blocks for ever once the engine
    process is killed: its monitor thread marks the client dead but puts nothing in the output
    queue that ``step()`` waits on. So the queue is waited on here, and a dead client raises
    ``EngineDeadError`` as vLLM's other calls do. Clients without that queue (in-process engines,
    other versions) are stepped directly.

    :raises EngineDeadError: when the engine process is gone.
    """
    queue = getattr(core, "outputs_queue", None)
    resources = getattr(core, "resources", None)
    if queue is None or resources is None:
        return True
    with queue.not_empty:
        queue.not_empty.wait_for(lambda: queue._qsize() or resources.engine_dead, timeout_s)
        ready = queue._qsize() > 0
    if not ready and resources.engine_dead:
        from vllm.v1.engine.exceptions import EngineDeadError

        raise EngineDeadError("the engine process exited")
    return ready


class VLLMStream(StreamSession):
    """Requests in flight in ``backend.llm``'s engine; ``poll`` runs one engine step.

    :param backend: a :class:`~dj_ops.backends.vllm_backend.VLLMBackend` (its ``llm``,
        ``restart_engine()`` and ``is_engine_dead(error)``).
    """

    def __init__(self, backend):
        self.backend = backend
        self.ids = itertools.count()
        # request id -> (key, prompt dict, tries so far on a rebuilt engine)
        self.running: dict[str, tuple[Hashable, dict, int]] = {}
        self.finished: list[tuple[Hashable, CaptionResult]] = []
        # key -> sampling parameters of a request with its own (a quality-gate retry's)
        self.own_params: dict[Hashable, object] = {}

    @property
    def in_flight(self) -> int:
        return len(self.running) + len(self.finished)

    def submit(self, key: Hashable, request: CaptionRequest) -> None:
        backend = self.backend
        prompt = build_request(backend.adapter, request, backend.render)
        tokens = len(backend.tokenizer.encode(prompt["prompt"]))
        refused = check_context(backend.adapter, request, tokens, backend.max_model_len)
        if refused is not None:
            self.finished.append((key, refused))
            return
        params = backend.request_sampling_params(request)
        if params is not backend.sampling_params:
            self.own_params[key] = params
        try:
            self._add(key, prompt, tries=0)
        except Exception as error:  # noqa: BLE001 - only a dead engine; re-raised otherwise
            if not backend.is_engine_dead(error):
                raise
            self._recover(error)

    def poll(self, wait_s: float) -> list[tuple[Hashable, CaptionResult]]:
        if self.running and not self.finished:
            if not self.backend.llm.llm_engine.has_unfinished_requests():
                raise RuntimeError(f"vLLM has no request left but {len(self.running)} were "
                                   "never answered")  # a bug here, not a hang in step()
            try:
                outputs = self._step()
            except Exception as error:  # noqa: BLE001 - only a dead engine; re-raised otherwise
                if not self.backend.is_engine_dead(error):
                    raise
                self._recover(error)
                outputs = []
            for output in outputs:
                if output.finished and output.request_id in self.running:
                    key, _, _ = self.running.pop(output.request_id)
                    self.own_params.pop(key, None)
                    result = guarded(OUTPUT, parse_request_output, output,
                                     self.backend.config.num_candidates)
                    self.finished.append((key, result))
        done, self.finished = self.finished, []
        return done

    def _step(self) -> list:
        """One engine step once the engine has output for it (else [] after a while)."""
        engine = self.backend.llm.llm_engine
        if not wait_for_engine_output(engine.engine_core, STEP_WAIT_S):
            return []
        return engine.step()

    def close(self) -> None:
        if self.running:
            try:
                self.backend.llm.llm_engine.abort_request(list(self.running))
            except Exception as error:  # noqa: BLE001 - best effort on the way out
                logger.debug(f"aborting vLLM requests failed: {error!r}")
        self.running.clear()
        self.finished.clear()
        self.own_params.clear()

    def _add(self, key: Hashable, prompt: dict, tries: int) -> None:
        """Hand one prompt to the engine; a prompt vLLM refuses fails alone."""
        request_id = str(next(self.ids))
        self.running[request_id] = (key, prompt, tries)  # what to retry if the engine dies here
        try:
            # (vLLM adds a random suffix for its own use; outputs carry the id given here)
            self.backend.llm.llm_engine.add_request(
                request_id, prompt, self.own_params.get(key, self.backend.sampling_params))
        except ValueError as error:  # vLLM's refusal of this prompt (too long, bad input)
            del self.running[request_id]
            self.own_params.pop(key, None)
            self.finished.append((key, CaptionResult.failure(classify_engine_error(str(error)),
                                                             str(error))))


    def _recover(self, error: BaseException) -> None:
        """Rebuild the engine; requests that were running are tried again (each at most
        ``ENGINE_RETRIES`` times), or fail with ``engine_dead``."""
        victims = deque(self.running.values())
        self.running.clear()
        while True:
            message = f"the vLLM engine died: {type(error).__name__}: {error}"
            logger.warning(f"{message}; rebuilding it and retrying {len(victims)} requests")
            self.backend.restart_engine()
            try:
                while victims:
                    key, prompt, tries = victims.popleft()
                    if tries >= ENGINE_RETRIES:
                        self.finished.append((key, CaptionResult.failure(ENGINE_DEAD, message)))
                    else:
                        self._add(key, prompt, tries + 1)
                return
            except Exception as again:  # noqa: BLE001 - only a dead engine; re-raised otherwise
                if not self.backend.is_engine_dead(again):
                    raise
                victims.extendleft(reversed(list(self.running.values())))
                self.running.clear()
                error = again
