"""Faults raised at a named stage of a real backend, for tests: no model is mocked.

A :class:`Fault` names a stage and the requests it hits (text found in a request's video path or
prompt; or every call holding more than one request, a batch-level fault such as a processor
that cannot stack two videos). Armed on a loaded backend, it raises :class:`InjectedFault` from
inside the real code path:

=============  ==================================================================================
``inputs``     transformers: the family's input builder (chat template and processor); vLLM:
               building the engine request; openai: building the payload
``vision``     transformers: a forward pre-hook on the model's vision tower
``generate``   transformers: a forward pre-hook on the language model's output layer, inside
               ``generate``
``decode``     transformers: the tokenizer's ``decode`` of the generated ids; vLLM: reading the
               engine's output; openai: once the server's answer is in
=============  ==================================================================================

On the openai backend, ``vision`` and ``generate`` faults are the server's: arm the loopback
server's own transformers backend (:func:`arm_server`). On the vllm backend they are raised
inside the engine's model (:func:`raise_in_engine_model`), which vLLM makes fatal to the engine.

:func:`armed` arms every backend the op builds in this process (tests through the op);
:func:`sitecustomize_source` writes a ``sitecustomize.py`` that does the same at the start of a
``dj-process`` run (a folder put first on ``PYTHONPATH``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

STAGES = ("inputs", "vision", "generate", "decode")
VISION_MODULES = ("video_tower", "visual", "vision_tower", "vision_model")


class InjectedFault(RuntimeError):
    """The exception a :class:`Fault` raises."""


@dataclass(frozen=True)
class Fault:
    """A failure to raise at ``stage``.

    :param stage: one of :data:`STAGES`.
    :param match: raise for calls holding a request whose video path or prompt contains this
        ("": any request).
    :param batches_only: raise only for calls holding more than one request.
    """

    stage: str
    match: str = ""
    batches_only: bool = False

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")

    @property
    def message(self) -> str:
        which = "batches of several videos" if self.batches_only else (self.match or "any")
        return f"injected {self.stage} fault ({which})"

    def hits(self, labels: list[str]) -> bool:
        if self.batches_only and len(labels) < 2:
            return False
        return any(self.match in label for label in labels)


def request_label(request) -> str:
    """What a fault's ``match`` is looked for in: the request's video path and prompt."""
    return f"{request.video_path or ''}\n{request.prompt}"


class Armed:
    """Faults armed on one backend, and the requests of the call being made."""

    def __init__(self, faults: list[Fault]):
        self.faults = list(faults)
        self.current: list[str] = []
        self.undo: list = []  # callables that disarm

    def check(self, stage: str, labels: list[str] | None = None) -> None:
        labels = self.current if labels is None else labels
        for fault in self.faults:
            if fault.stage == stage and fault.hits(labels):
                raise InjectedFault(fault.message)

    def wrap(self, owner, name: str, before=None, after=None) -> None:
        """Replace ``owner.name`` (an instance attribute shadows the method) by a call that
        runs ``before(*args)`` first and ``after(result, *args)`` last."""
        original = getattr(owner, name)

        def call(*args, **kwargs):
            if before is not None:
                before(*args)
            result = original(*args, **kwargs)
            if after is not None:
                after(result, *args)
            return result

        setattr(owner, name, call)
        self.undo.append(lambda: owner.__dict__.pop(name, None))

    def disarm(self) -> None:
        while self.undo:
            self.undo.pop()()


def _vision_module(model):
    """The model's vision tower (the first module named as one)."""
    for wanted in VISION_MODULES:
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] == wanted:
                return module
    raise ValueError(f"no vision tower ({'/'.join(VISION_MODULES)}) in {type(model).__name__}")


def arm_transformers(backend, armed: Armed) -> Armed:
    """Arm a loaded :class:`~dj_ops.backends.transformers_backend.TransformersBackend`."""
    original = backend.run_micro_batch

    def run_micro_batch(requests):
        armed.current = [request_label(r) for r in requests]
        try:
            return original(requests)
        finally:
            armed.current = []

    backend.run_micro_batch = run_micro_batch
    armed.undo.append(lambda: backend.__dict__.pop("run_micro_batch", None))
    armed.wrap(backend.inputs, "encode", before=lambda processor, model, requests, kwargs:
               armed.check("inputs", [request_label(r) for r in requests]))
    armed.wrap(backend.tokenizer, "decode", before=lambda *args: armed.check("decode"))
    hooks = [(_vision_module(backend.model), "vision"),
             (backend.model.get_output_embeddings(), "generate")]
    for module, stage in hooks:
        handle = module.register_forward_pre_hook(
            lambda *_, stage=stage: armed.check(stage))
        armed.undo.append(handle.remove)
    return armed


def arm_openai(backend, armed: Armed) -> Armed:
    """Arm an :class:`~dj_ops.backends.openai_backend.OpenAIBackend` (its client side)."""
    armed.wrap(backend, "_payload",
               before=lambda request: armed.check("inputs", [request_label(request)]))
    original = backend._caption

    async def caption(client, payload):
        result = await original(client, payload)
        armed.check("decode", [json.dumps(payload.get("messages"))])
        return result

    backend._caption = caption
    armed.undo.append(lambda: backend.__dict__.pop("_caption", None))
    return armed


def arm_vllm(backend, armed: Armed) -> Armed:
    """Arm a :class:`~dj_ops.backends.vllm_backend.VLLMBackend` (building requests, reading
    outputs: module functions of ``vllm_stream``, restored on disarm)."""
    from dj_ops.backends import vllm_stream

    build, parse = vllm_stream.build_request, vllm_stream.parse_request_output

    def build_request(adapter, request, render=None):
        armed.check("inputs", [request_label(request)])
        return build(adapter, request, render)

    def parse_request_output(output, num_candidates):
        armed.check("decode", [str(getattr(output, "prompt", ""))])
        return parse(output, num_candidates)

    vllm_stream.build_request = build_request
    vllm_stream.parse_request_output = parse_request_output

    def restore() -> None:
        vllm_stream.build_request, vllm_stream.parse_request_output = build, parse

    armed.undo.append(restore)
    in_engine = [fault.stage for fault in armed.faults if fault.stage in ENGINE_STAGES]
    if in_engine:  # the engine as built now; a rebuilt one runs clean
        hooked = backend.llm.apply_model(functools.partial(raise_in_engine_model, in_engine))
        if any(count != len(in_engine) for count in hooked):
            raise ValueError(f"could not hook {in_engine} in the engine's model: {hooked}")
    return armed


def _engine_module(model, stage: str):
    """The engine model's module a stage raises in: its vision tower, or its language model's
    first decoder layer (run at every step; vLLM calls the inner model, not its wrapper)."""
    for name, module in model.named_modules():
        if stage == "vision" and name.rsplit(".", 1)[-1] in VISION_MODULES:
            return module
        if stage == "generate" and name.startswith("language_model") and name.endswith(
                "layers.0"):
            return module
    return None


ENGINE_STAGES = ("vision", "generate")


def raise_in_engine_model(stages: list[str], model) -> int:
    """Run by vLLM inside its engine process (``LLM.apply_model``; the engine must be started
    with ``VLLM_ALLOW_INSECURE_SERIALIZATION=1`` to accept a function): the named stages of
    its model raise on their next call. Any request selection is impossible there: vLLM makes an
    exception in its model step fatal to the whole engine. Returns the hooks installed."""
    installed = 0
    for stage in stages:
        module = _engine_module(model, stage)
        if module is not None:
            message = f"injected {stage} fault (in the engine)"

            def hook(*_, message=message):
                raise InjectedFault(message)

            module.register_forward_pre_hook(hook)
            installed += 1
    return installed


ARMERS = {"transformers": arm_transformers, "openai": arm_openai, "vllm": arm_vllm}


def arm(backend, faults: list[Fault]) -> Armed:
    """Arm ``faults`` on a loaded backend (by its registered name)."""
    return ARMERS[backend.name](backend, Armed(faults))


def arm_server(server, faults: list[Fault]) -> Armed:
    """Arm ``faults`` on every transformers backend the loopback chat-completions server
    (:class:`~dj_ops.testing.openai_server.CompletionServer`) builds: server-side faults."""
    armed = Armed(faults)
    original, done = server._backend, set()

    def backend(*args):
        built = original(*args)
        if id(built) not in done:
            done.add(id(built))
            arm_transformers(built, armed)
        return built

    server._backend = backend
    armed.undo.append(lambda: server.__dict__.pop("_backend", None))
    return armed


# ---- every backend the op builds in this process ----

_ACTIVE: list[Fault] = []
_CLASSES: dict[str, type] = {}
_ARMED: list[Armed] = []  # of the backends built while armed, disarmed with the process


def _armed_class(name: str) -> type:
    """The registered backend ``name`` armed with the active faults once built."""
    if name not in _CLASSES:
        from dj_ops.backends.base import BACKENDS
        from dj_ops.lazy_import import load_entry

        path, extra = _ORIGINAL.get(name) or BACKENDS[name]
        base = load_entry(path, what=f"the {name!r} backend", extra=extra)

        def __init__(self, config, device="cpu"):
            base.__init__(self, config, device)
            self.armed_faults = arm(self, list(_ACTIVE))
            _ARMED.append(self.armed_faults)

        _CLASSES[name] = type(f"Armed{base.__name__}", (base,), {"__init__": __init__})
    return _CLASSES[name]


def __getattr__(attribute: str):  # "armed_<backend>": the registry's lazy entries
    if attribute.startswith("armed_"):
        return _armed_class(attribute[len("armed_"):])
    raise AttributeError(attribute)


_ORIGINAL: dict[str, tuple[str, str]] = {}


def arm_process(faults: list[Fault]) -> None:
    """From now on, every backend built in this process is armed with ``faults``."""
    from dj_ops.backends.base import BACKENDS

    _ACTIVE[:] = faults
    for name, entry in BACKENDS.items():
        _ORIGINAL.setdefault(name, entry)
        BACKENDS[name] = (f"{__name__}:armed_{name}", entry[1])


def disarm_process() -> None:
    from dj_ops.backends.base import BACKENDS

    BACKENDS.update(_ORIGINAL)
    _ORIGINAL.clear()
    _ACTIVE.clear()
    _CLASSES.clear()
    while _ARMED:  # module functions patched for a vLLM backend are restored here
        _ARMED.pop().disarm()


@contextmanager
def armed(faults: list[Fault]) -> Iterator[None]:
    """Backends built inside are armed with ``faults``."""
    arm_process(faults)
    try:
        yield
    finally:
        disarm_process()


def sitecustomize_source(faults: list[Fault]) -> str:
    """A ``sitecustomize.py`` arming ``faults`` in every Python process started with its folder
    first on ``PYTHONPATH`` (a real ``dj-process`` run)."""
    specs = repr([asdict(fault) for fault in faults])  # Python literals
    return ("from dj_ops.testing.fault_injection import Fault, arm_process\n"
            f"arm_process([Fault(**spec) for spec in {specs}])\n")
