"""The op's per-process lifecycle: set up once, caption batches, close (NeMo Curator's stages).

A :class:`Captioner` lives in the process that runs the op's batches. :meth:`Captioner.setup`
builds, once, what every batch shares: the backend (through Data-Juicer's model zoo, on the
worker's device), the frame settings sized to the backend's patch factor, the decoding source
(processes it owns), the result store's session, the torch thread count, the random generator
and the tally of outcomes.
:meth:`Captioner.caption` turns one Data-Juicer batch into its output batch; :meth:`close`
stops what setup opened and logs the process's totals. Nothing here is shared between
processes: the op sends its :class:`CaptionConfig`, never a captioner.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from dj_ops.backends.base import CaptionBackend
from dj_ops.backends.streaming import is_streaming
from dj_ops.ops.config import CaptionConfig
from dj_ops.ops.cpu_threads import generation_threads, intra_op_threads
from dj_ops.ops.frame_budget import FrameBudget
from dj_ops.ops.outcome_log import OutcomeLog
from dj_ops.ops.pipeline import caption_batch
from dj_ops.ops.quality_gate import QualityGate
from dj_ops.ops.sample_builder import SampleBuilder
from dj_ops.ops.streaming import caption_with_engine
from dj_ops.ops.structured_config import output_key
from dj_ops.ops.windowed import WindowedCaptioning, with_windows_field
from dj_ops.store import ResultKeyer, ResultStore, model_identity
from dj_ops.store.session import StoreSession
from dj_ops.video.decoders import cores_per_process, open_decode_source
from dj_ops.video.settings import FrameSettings


@dataclass(frozen=True)
class ProcessPlacement:
    """Where this process runs: its device rank, whether it has a GPU, and how many processes
    run the op on this machine (their decoders share its cores)."""

    rank: int | None = None
    on_gpu: bool = False
    op_processes: int = 1


def sized_frames(frames: FrameSettings, backend: CaptionBackend) -> FrameSettings:
    """``frames`` with sides a multiple of the backend's patch factor (when it declares one)."""
    factor = backend.size_factor
    return replace(frames, size_factor=factor) if factor else frames


class Captioner:
    """Captions Data-Juicer batches in one process.

    :param config: the op's parsed parameters.
    :param load_backend: ``(rank, on_gpu) -> CaptionBackend`` (Data-Juicer's ``get_model``).
    :param name: the op's name, in log lines.
    """

    def __init__(self, config: CaptionConfig,
                 load_backend: Callable[[int | None, bool], CaptionBackend], name: str):
        self.config = config
        self.load_backend = load_backend
        self.name = name
        self.outcomes = OutcomeLog(name)
        self.backend: CaptionBackend | None = None
        self.frames = config.frames
        self.source = None
        self.threads: int | None = None
        self.rng = random.Random(config.model.seed)
        self.run_info = config.run_info
        self.store: StoreSession | None = None
        self.budget: FrameBudget | None = None
        self.windows: WindowedCaptioning | None = None  # window_seconds set
        self.gate = QualityGate(config.quality, config.generation)

    @property
    def ready(self) -> bool:
        return self.source is not None

    def setup(self, placement: ProcessPlacement) -> Captioner:
        """Build the backend, the decoding source and the thread counts (once)."""
        if self.ready:
            return self
        decoding = self.config.decoding
        self.backend = self.load_backend(placement.rank, placement.on_gpu)
        self.frames = sized_frames(self.config.frames, self.backend)
        self.budget = FrameBudget(self.frames, self.backend, self.config.layout.system_prompt)
        # what generation actually runs with, as the loaded backend resolved it
        self.run_info = replace(self.config.run_info, generation=self.config.with_caption_format(
            self.backend.generation_record()))
        cores = cores_per_process(placement.op_processes)
        # by default one decoding process per core of this op process
        workers = cores if decoding.workers is None else decoding.workers
        self.threads = generation_threads(cores, workers, on_gpu=placement.on_gpu,
                                          requested=decoding.torch_threads)
        if self.config.windows.enabled:
            self.windows = WindowedCaptioning(self.config.windows, self.frames,
                                              self.config.model.batch_size)
            self.source = self.windows.open_source(decoding, workers)
        else:
            self.source = open_decode_source(decoding.decoder, workers, decoding.timeout_s)
        self.store = self._open_store()
        return self

    def _open_store(self) -> StoreSession | None:
        """The result store with the keys of this configuration (None without a store)."""
        config, model = self.config, self.config.model
        if not config.store.path:
            return None
        run = {"backend": config.backend, "system_prompt": config.layout.system_prompt,
               "frames": self.frames, "generation": self.run_info.generation,
               "caption_num": model.num_candidates, "model_params": model.model_params,
               "output": output_key(config.structured)}
        if config.quality.changes_output:  # else the keys of stores written before the gate
            run["quality"] = config.quality.store_key()
        keyer = ResultKeyer(
            model=model_identity(model.model, model.model_params.get("revision")),
            run=run,
            content_hash=config.store.content_hash)
        return StoreSession(ResultStore(config.store.path), keyer)

    def caption(self, samples: dict[str, list]) -> dict[str, list]:
        """The output batch of one input batch (see :class:`SampleBuilder`)."""
        if not self.ready:
            raise RuntimeError("Captioner.setup() must run before caption()")
        config = self.config
        builder = SampleBuilder(samples, config.layout, config.structured,
                                windowed=self.windows is not None,
                                thumbnails=config.thumbnails if config.thumbnails.enabled else None,
                                timing=config.timing)
        decoding, system_prompt = config.decoding, config.layout.system_prompt
        frames = self.budget.for_prompts(slot.prompt for slot in builder.video_slots())
        with intra_op_threads(self.threads):
            if self.windows is not None:  # every backend: micro-batches (ops/windowed.py)
                caption_batch(builder, self.backend, self.source, self.windows.budgeted(frames),
                              batch_size=config.model.batch_size, prefetch=decoding.prefetch,
                              system_prompt=system_prompt,
                              caption_group=self.windows.caption_group)
            elif is_streaming(self.backend):  # the engine batches by itself: feed it continuously
                caption_with_engine(
                    builder, self.backend, self.source, frames,
                    max_in_flight=decoding.max_in_flight,
                    max_decoded=(decoding.prefetch + 1) * config.model.batch_size,
                    system_prompt=system_prompt, store=self.store, gate=self.gate)
            else:
                caption_batch(builder, self.backend, self.source, frames,
                              batch_size=config.model.batch_size, prefetch=decoding.prefetch,
                              system_prompt=system_prompt, store=self.store, gate=self.gate)
        output, records = builder.build(self.run_info, config.output, self.rng)
        if self.windows is not None and config.output.caption_key:
            output = with_windows_field(output, config.layout, config.output.caption_key)
        self.outcomes.add_batch(records)
        return output

    def close(self) -> None:
        """Stop the decoding processes, write and close the result store, and log this
        process's totals (idempotent)."""
        source, self.source = self.source, None
        store, self.store = self.store, None
        if store is not None:
            store.close()
        if source is not None:
            source.close()
            self.outcomes.log_total()
