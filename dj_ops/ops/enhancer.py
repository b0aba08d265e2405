"""The enhancement op's per-process lifecycle: set up once, rewrite captions, close.

An :class:`Enhancer` lives in the process that runs the op's batches and owns what it opens: the
backend (built through the same table and contract as the captioning op's, on this worker's
device) and the result store's session. :meth:`Enhancer.rewrite` turns captions into finished
rewrites: those in the store are reused; the others become text-only requests (the preset's
instruction as the system message, the caption as the user message), sent through the call path
:data:`CALL_PATHS` picks from the backend's declared capabilities (micro-batches of
``generation_batch_size`` through ``generate_text``, or, for a backend that batches by itself,
a stream keeping up to ``max_in_flight`` requests in it), checked by the quality gate (retries
as in the captioning op), stored after each micro-batch (streaming: every
``generation_batch_size`` results), then finished (``enhancement/records.py``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable

from dj_ops.backends.base import CaptionBackend, CaptionRequest, CaptionResult, text_request
from dj_ops.backends.streaming import StreamSession
from dj_ops.captioning.generation import generation_record
from dj_ops.enhancement.length import load_target
from dj_ops.enhancement.records import EnhanceRun, Finishing, Rewrite, finish
from dj_ops.enhancement.store import RewriteStore
from dj_ops.ops.captioner import ProcessPlacement, process_device
from dj_ops.ops.cpu_threads import intra_op_threads
from dj_ops.ops.enhancement_config import EnhanceConfig
from dj_ops.ops.pipeline import plan_groups
from dj_ops.ops.quality_gate import QualityGate, generate_checked
from dj_ops.ops.structured_config import output_key
from dj_ops.store import model_identity, open_store
from dj_ops.video.decoders import cores_per_process

POLL_S = 1.0  # longest wait for a streamed result


def run_info(config: EnhanceConfig, generation: dict) -> EnhanceRun:
    """The provenance of every rewrite of ``config`` (``generation``: as the backend resolved
    it), with json mode's format and schema hash in ``generation``."""
    rewrite = config.rewrite
    if config.structured is not None:
        generation = {**generation, **config.structured.provenance()}
    return EnhanceRun(model=config.model.model, backend=config.backend, preset=rewrite.preset,
                      custom_prompt=rewrite.custom_prompt, prompt=rewrite.instruction,
                      generation=generation, target_tokenizer=rewrite.target_tokenizer or "",
                      max_target_tokens=rewrite.max_target_tokens or -1)


class Enhancer:
    """Rewrites captions in one process.

    :param config: the op's parsed parameters.
    :param load_backend: ``(device) -> CaptionBackend``; this enhancer owns (closes) it.
    """

    def __init__(self, config: EnhanceConfig, load_backend: Callable[[str], CaptionBackend]):
        self.config = config
        self.load_backend = load_backend
        self.backend: CaptionBackend | None = None
        self.store: RewriteStore | None = None
        # json mode: the gate also checks each document's validity (the run's one schema)
        self.gate = QualityGate(config.quality, config.model.settings,
                                config.structured.schema if config.structured else None)
        self.run = run_info(config, generation_record(config.model.settings, config.model.seed))
        self.finishing = Finishing(config.structured)
        self.threads: int | None = None  # torch threads while generating (None: torch's own)
        self.warned: set[str] = set()  # fields warned about in this process (enhancement_rows)

    @property
    def ready(self) -> bool:
        return self.backend is not None

    def setup(self, placement: ProcessPlacement) -> Enhancer:
        """Build the backend, load the target tokenizer, open the store (once)."""
        if self.ready:
            return self
        config = self.config
        self.backend = self.load_backend(process_device(placement))
        # on CPU the op's processes share the cores (torch's default, one thread per core in
        # each, oversubscribes them); a GPU process keeps torch's own setting
        on_cpu = process_device(placement) == "cpu"
        self.threads = cores_per_process(placement.op_processes) if on_cpu else None
        self.run = run_info(config, self.backend.generation_record())
        target = config.rewrite.target_tokenizer
        self.finishing = Finishing(config.structured, load_target(target) if target else None,
                                   config.rewrite.max_target_tokens)
        if config.store_path:
            run = {"backend": config.backend, "model_params": config.model.model_params,
                   "instruction": config.rewrite.instruction, "generation": self.run.generation,
                   "output": output_key(config.structured),
                   # the gate decides what is kept (loops cut with its thresholds, retries)
                   "quality": config.quality.store_key()}
            model = model_identity(config.model.model,
                                   config.model.model_params.get("revision"))
            self.store = RewriteStore(open_store(config.store_path), model, run)
        return self

    def request(self, caption: str) -> CaptionRequest:
        """The text-only request rewriting ``caption``."""
        return text_request(caption, self.config.rewrite.instruction)

    def rewrite(self, captions: list[str]) -> dict[str, Rewrite]:
        """The finished rewrite of each distinct caption (a caption met twice is rewritten
        once: the same text and settings give the same key in the store, too)."""
        if not self.ready:
            raise RuntimeError("Enhancer.setup() must run before rewrite()")
        distinct = list(dict.fromkeys(captions))
        stored = self.store.reuse(distinct) if self.store is not None else {}
        done = {caption: finish(result, self.finishing, from_store=True)
                for caption, result in stored.items()}
        todo = [caption for caption in distinct if caption not in stored]
        if todo:
            with intra_op_threads(self.threads):
                results = CALL_PATHS[self.config.capabilities.streams](self, todo)
            done.update((caption, finish(results[caption], self.finishing)) for caption in todo)
        return done

    def _keep(self, caption: str, result: CaptionResult) -> None:
        if self.store is not None:
            self.store.add(caption, result)

    def _micro_batches(self, captions: list[str]) -> dict[str, CaptionResult]:
        """``generation_batch_size`` captions per ``generate_text`` call (and one per retry of
        the gate); stored after each."""
        results: dict[str, CaptionResult] = {}
        for group in plan_groups(captions, self.config.model.batch_size):
            answers = generate_checked(self.backend, [self.request(c) for c in group],
                                       self.gate, text_only=True)
            for caption, result in zip(group, answers, strict=True):
                results[caption] = result
                self._keep(caption, result)
            if self.store is not None:
                self.store.flush()  # one transaction per micro-batch: a kill loses at most it
        return results

    def _stream(self, captions: list[str]) -> dict[str, CaptionResult]:
        """Every caption fed to the backend's own batching, at most ``max_in_flight`` at once
        (and the backend's own limit); stored every ``generation_batch_size`` results."""
        limit = min(self.config.max_in_flight,
                    self.backend.concurrency_limit or self.config.max_in_flight)
        results: dict[str, CaptionResult] = {}

        def done(caption: str, result: CaptionResult) -> None:
            results[caption] = result
            self._keep(caption, result)
            if self.store is not None and (self.store.pending >= self.config.model.batch_size):
                self.store.flush()

        with self.backend.open_stream() as session:
            stream_requests(session, [(c, self.request(c)) for c in captions],
                            max_in_flight=limit, gate=self.gate, done=done)
        if self.store is not None:
            self.store.flush()
        return results

    def close(self) -> None:
        """Write and close the store, close the backend (idempotent; a later :meth:`setup`
        builds them again)."""
        store, self.store = self.store, None
        backend, self.backend = self.backend, None
        if store is not None:
            store.close()
        if backend is not None:
            backend.close()


def stream_requests(session: StreamSession, requests: list[tuple[Hashable, CaptionRequest]], *,
                    max_in_flight: int, gate: QualityGate,
                    done: Callable[[Hashable, CaptionResult], None]) -> int:
    """Feed ``requests`` (``(name, request)``) through ``session``, at most ``max_in_flight``
    at once; each answer checked by ``gate`` (a retry goes to the front of the queue) and handed
    to ``done(name, result)`` once final. Returns the most requests that were in flight."""
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
    queue: deque[tuple[Hashable, CaptionRequest, CaptionResult | None]] = deque(
        (name, request, None) for name, request in requests)
    waiting: dict[int, tuple[Hashable, CaptionRequest, CaptionResult | None]] = {}
    keys = iter(range(1 << 62))
    peak = 0
    while queue or waiting:
        while queue and len(waiting) < max_in_flight:
            entry = queue.popleft()
            key = next(keys)
            waiting[key] = entry
            session.submit(key, entry[1])
        peak = max(peak, len(waiting))
        for key, result in session.poll(POLL_S):
            name, request, previous = waiting.pop(key)
            result, retry = gate.after(request, result, previous)
            if retry is not None:
                queue.appendleft((name, retry, result))
            else:
                done(name, result)
    return peak


# How captions are rewritten, by whether the backend streams (its declared capability).
CALL_PATHS: dict[bool, Callable[[Enhancer, list[str]], dict[str, CaptionResult]]] = {
    False: Enhancer._micro_batches,
    True: Enhancer._stream,
}

