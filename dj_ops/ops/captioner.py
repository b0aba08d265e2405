"""The op's per-process lifecycle: set up once, caption batches, close (NeMo Curator's stages).

A :class:`Captioner` lives in the process that runs the op's batches and owns what it opens.
:meth:`Captioner.setup` builds, once, what every batch shares: the backend (on the worker's
device; the captioner is its one owner and closes it), the frame settings sized to the
backend's patch factor, the decoding source (processes it owns), the result store's session
(the one place a process opens the store), the torch thread count, the random generator and
the tally of outcomes. :meth:`Captioner.caption` turns one Data-Juicer batch into its output
batch through the call path that :data:`CALL_PATHS` picks from the configuration and the
backend's declared capabilities; :meth:`close` stops what setup opened (the backend's engine
included) and logs the process's totals. Nothing here is shared between processes: the op sends
its :class:`CaptionConfig`, never a captioner.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from data_juicer.utils.resource_utils import cuda_device_count

from dj_ops.backends.base import CaptionBackend
from dj_ops.cluster.identity import worker_identity
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
from dj_ops.runtime.lifetime import guard_op_process, results_kept
from dj_ops.runtime.progress import VideoProgress, videos_in_batch
from dj_ops.store import ResultKeyer, model_identity, open_store
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


def process_device(placement: ProcessPlacement) -> str:
    """The device this process's backend runs on: ``cuda:{rank % GPUs}`` on a GPU worker (as
    Data-Juicer's model zoo places its models), else ``cpu``."""
    if placement.on_gpu and cuda_device_count() > 0:
        return f"cuda:{(placement.rank or 0) % cuda_device_count()}"
    return "cpu"


def sized_frames(frames: FrameSettings, backend: CaptionBackend) -> FrameSettings:
    """``frames`` with sides a multiple of the backend's patch factor (when it declares one)."""
    factor = backend.size_factor
    return replace(frames, size_factor=factor) if factor else frames


class Captioner:
    """Captions Data-Juicer batches in one process.

    :param config: the op's parsed parameters.
    :param load_backend: ``(device) -> CaptionBackend``: builds the backend, which this
        captioner then owns (closes).
    :param name: the op's name, in log lines.
    :param progress_board: where this process reports its progress per video (the job's
        ``ProgressBoard``; None: it logs its own lines).
    """

    def __init__(self, config: CaptionConfig, load_backend: Callable[[str], CaptionBackend],
                 name: str, progress_board: str | None = None):
        self.config = config
        self.load_backend = load_backend
        self.name = name
        self.outcomes = OutcomeLog(name)
        self.progress = VideoProgress(name, progress_board)
        self.backend: CaptionBackend | None = None
        self.frames = config.frames
        self.source = None
        self.threads: int | None = None
        self.rng = random.Random(config.model.seed)
        self.run_info = config.run_info
        self.store: StoreSession | None = None
        self.budget: FrameBudget | None = None
        self.windows: WindowedCaptioning | None = None  # window_seconds set
        self.gate = QualityGate(config.quality, config.generation,
                                config.structured.schema if config.structured else None)

    @property
    def ready(self) -> bool:
        return self.source is not None

    def setup(self, placement: ProcessPlacement) -> Captioner:
        """Build the backend, the decoding source and the thread counts (once)."""
        if self.ready:
            return self
        guard_op_process()  # a worker of the job: ends with it, stops cleanly on SIGTERM
        decoding = self.config.decoding
        self.backend = self.load_backend(process_device(placement))
        self.frames = sized_frames(self.config.frames, self.backend)
        self.budget = FrameBudget(self.frames, self.backend, self.config.layout.system_prompt)
        # what generation actually runs with, as the loaded backend resolved it
        self.run_info = replace(self.config.run_info, generation=self.config.with_caption_format(
            self.backend.generation_record()), worker=worker_identity())
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
        # the gate decides what is kept (loops trimmed with its thresholds, retries)
        run["quality"] = config.quality.store_key()
        if config.windows.enabled:  # a video's caption is the merge of its windows'
            run["windows"] = config.windows
        keyer = ResultKeyer(
            model=model_identity(model.model, model.model_params.get("revision")),
            run=run,
            content_hash=config.store.content_hash)
        return StoreSession(open_store(config.store.path), keyer, origin=self.run_info.worker)

    def caption(self, samples: dict[str, list]) -> dict[str, list]:
        """The output batch of one input batch (see :class:`SampleBuilder`)."""
        if not self.ready:
            raise RuntimeError("Captioner.setup() must run before caption()")
        config = self.config
        builder = SampleBuilder(samples, config.layout, config.structured,
                                windowed=self.windows is not None, on_video=self.progress.video,
                                thumbnails=config.thumbnails if config.thumbnails.enabled else None,
                                timing=config.timing)
        frames = self.budget.for_prompts(slot.prompt for slot in builder.video_slots())
        with intra_op_threads(self.threads), results_kept(self.store):
            CALL_PATHS[call_path(config)](self, builder, frames)
        output, records = builder.build(self.run_info, config.output, self.rng)
        if self.windows is not None and config.output.caption_key:
            output = with_windows_field(output, config.layout, config.output.caption_key)
        self.outcomes.add_batch(records)
        self.progress.batch_done(videos_in_batch(samples, config.layout.video_key))
        return output

    def _micro_batches(self, builder: SampleBuilder, frames: FrameSettings) -> None:
        """Micro-batches of ``generation_batch_size`` videos, one backend call each."""
        decoding = self.config.decoding
        caption_batch(builder, self.backend, self.source, frames,
                      batch_size=self.config.model.batch_size, prefetch=decoding.prefetch,
                      system_prompt=self.config.layout.system_prompt, store=self.store,
                      gate=self.gate)

    def _stream(self, builder: SampleBuilder, frames: FrameSettings) -> None:
        """The engine batches by itself: each video fed to it once decoded."""
        decoding = self.config.decoding
        caption_with_engine(
            builder, self.backend, self.source, frames, max_in_flight=decoding.max_in_flight,
            max_decoded=(decoding.prefetch + 1) * self.config.model.batch_size,
            system_prompt=self.config.layout.system_prompt, store=self.store, gate=self.gate)

    def _windows(self, builder: SampleBuilder, frames: FrameSettings) -> None:
        """Every backend: micro-batches of window requests, then the merges (ops/windowed.py)."""
        decoding = self.config.decoding
        caption_batch(builder, self.backend, self.source, self.windows.budgeted(frames),
                      batch_size=self.config.model.batch_size, prefetch=decoding.prefetch,
                      system_prompt=self.config.layout.system_prompt, store=self.store,
                      gate=self.gate, caption_group=self.windows.caption_group)

    def close(self) -> None:
        """Stop the decoding processes, write and close the result store, close the backend
        (its engine's processes), and log this process's totals (idempotent; a later
        :meth:`setup` builds them again)."""
        source, self.source = self.source, None
        store, self.store = self.store, None
        backend, self.backend = self.backend, None
        if store is not None:
            store.close()
        if source is not None:
            source.close()
        if backend is not None:
            backend.close()
        if source is not None:
            self.outcomes.log_total()
            self.progress.close()


def call_path(config: CaptionConfig) -> tuple[bool, bool]:
    """The key of :data:`CALL_PATHS` for ``config``: (windows on, the backend streams)."""
    return config.windows.enabled, config.capabilities.streams


# How a batch is captioned, by (windows on, the backend streams): windows take micro-batches on
# every backend (a video's merge needs all its windows first); otherwise a streaming backend is
# fed continuously and the others get micro-batches.
CALL_PATHS: dict[tuple[bool, bool], Callable[[Captioner, SampleBuilder, FrameSettings], None]] = {
    (False, False): Captioner._micro_batches,
    (False, True): Captioner._stream,
    (True, False): Captioner._windows,
    (True, True): Captioner._windows,
}
