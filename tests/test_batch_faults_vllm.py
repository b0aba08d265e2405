"""No raise costs more than its request on vLLM: faults injected where the ``vllm`` backend builds
an engine request and reads the engine's output, and where the ``openai`` backend builds a
payload and reads the answer of vLLM's own server (``pytest -m vllm`` in ``.venv-vllm``). Inside
the engine's model step vLLM makes any exception fatal to the engine (see docs/findings.md): a
fault raised in its vision tower or language model kills the engine, which the backend rebuilds
and retries its requests on (tests/test_vllm_cpu_engine.py kills the engine's process too)."""

from __future__ import annotations

import pytest
from loguru import logger

pytest.importorskip("vllm")

from dj_ops.backends.isolation import INPUT_ERROR, OUTPUT_ERROR  # noqa: E402
from dj_ops.testing.fault_injection import Fault  # noqa: E402, I001
from dj_ops.testing.tiny_models import VLLM_HEAD_DIM, build_tiny_model  # noqa: E402
from dj_ops.testing.vllm_server import VLLMServer  # noqa: E402
from tests.test_batch_faults import caption  # noqa: E402
from tests.video_families import PROMPT_KEY, make_varied_clips  # noqa: E402
from tests.vllm_support import ENGINE  # noqa: E402

pytestmark = pytest.mark.vllm
# one request fails where its input is built, another where its result is read
FAULTS = [Fault("inputs", match="one_second"), Fault("decode", match="three_seconds")]
EXPECTED = {"one_second": (INPUT_ERROR, "InjectedFault: injected inputs fault (one_second)"),
            "three_seconds": (OUTPUT_ERROR, "InjectedFault: injected decode fault "
                                            "(three_seconds)")}
SAMPLING = {"max_new_tokens": 8, "temperature": 1.0}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return build_tiny_model("qwen3_vl", tmp_path_factory.mktemp("hd32") / "qwen3_vl",
                            head_dim=VLLM_HEAD_DIM)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, str]:
    return make_varied_clips(tmp_path_factory.mktemp("varied_clips"))


def check(records: dict[str, dict]) -> None:
    for name, (kind, message) in EXPECTED.items():
        video = records.pop(name)["videos"][0]
        assert (video["error_kind"], video["error_message"]) == (kind, message)
    assert {r["status"] for r in records.values()} == {"captioned"}


def test_vllm_engine_request_faults_cost_their_request_alone(model, clips):
    check(caption(model, clips, FAULTS, backend="vllm", model_params=ENGINE,
                  prompt_key=PROMPT_KEY, caption_num=2, sampling_params=SAMPLING))


def test_openai_faults_against_vllms_server_cost_their_request_alone(model, clips,
                                                                     tmp_path_factory):
    log = tmp_path_factory.mktemp("vllm_server") / "server.log"
    with VLLMServer(model, max_model_len=2048, log_path=log) as server:
        params = {"api_base": server.url, "backoff_s": 0.2, "max_backoff_s": 2.0}
        # seed null: vLLM 0.32's CPU engine dies on a per-request seed (README)
        check(caption(model, clips, FAULTS, backend="openai", model_params=params,
                      prompt_key=PROMPT_KEY, caption_num=2, sampling_params=SAMPLING,
                      seed=None))


@pytest.mark.parametrize("stage", ["vision", "generate"])
def test_a_fault_inside_the_engines_model_costs_an_engine_not_the_job(model, clips, stage,
                                                                       monkeypatch):
    """The engine's model raises once (the rebuilt engine runs clean): every row captioned."""
    monkeypatch.setenv("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # apply_model's function
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="WARNING")
    try:
        records = caption(model, clips, [Fault(stage)], backend="vllm", model_params=ENGINE,
                          sampling_params=SAMPLING)
    finally:
        logger.remove(sink)
    assert {r["status"] for r in records.values()} == {"captioned"}
    assert sum("rebuilding the vLLM engine (restart 1)" in line for line in lines) == 1
