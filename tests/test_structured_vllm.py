"""caption_format json on vLLM (the CPU tier, ``.venv-vllm``): the in-process engine through
real ``dj-process``, and vLLM's OpenAI-compatible server through the ``openai`` backend's
``response_format``. A random-weight model under the schema gives a strictly valid document for
every caption, and every rendering stays within its budget."""

from __future__ import annotations

import pytest

pytest.importorskip("vllm")
pytest.importorskip("llguidance")

from data_juicer.utils.constant import Fields  # noqa: E402
from data_juicer.utils.mm_utils import SpecialTokens  # noqa: E402

from dj_ops.captioning.records import META_KEY  # noqa: E402
from dj_ops.captioning.structured import DEFAULT_SCHEMA  # noqa: E402
from dj_ops.ops.structured_config import DEFAULT_CAPTION_LENGTHS  # noqa: E402
from dj_ops.testing.clips import make_clip  # noqa: E402
from dj_ops.testing.tiny_models import VLLM_HEAD_DIM, build_tiny_model  # noqa: E402
from dj_ops.testing.vllm_server import VLLMServer  # noqa: E402
from tests.conftest import make_op, run_op  # noqa: E402
from tests.test_dj_process import run_recipe  # noqa: E402
from tests.test_structured_op import USER_SCHEMA, check_rows  # noqa: E402
from tests.vllm_support import ENGINE, FRAMES  # noqa: E402

pytestmark = pytest.mark.vllm
V = SpecialTokens.video
# what vllm_requests.STRUCTURED_OUTPUTS_CONFIG gives the in-process engine
GUIDANCE = '{"backend": "guidance", "disable_any_whitespace": true}'


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return build_tiny_model("qwen3_vl", tmp_path_factory.mktemp("hd32") / "qwen3_vl",
                            head_dim=VLLM_HEAD_DIM)


@pytest.mark.composes("vllm", "json", "all")
def test_vllm_engine_default_schema_through_dj_process(tmp_path, model, videos):
    samples = [{"text": f"{V} clip {i}", "videos": [v]} for i, v in enumerate(videos[:3])]
    params = {"hf_model": model, "backend": "vllm", **FRAMES, "model_params": ENGINE,
              "sampling_params": {"max_new_tokens": 2048, "temperature": 1.0}, "seed": 0,
              "caption_num": 2, "keep_candidate_mode": "all", "keep_original_sample": False,
              "caption_format": "json"}
    rows = run_recipe(tmp_path, samples, params)
    assert len(rows) == 6
    assert check_rows(rows, DEFAULT_SCHEMA, DEFAULT_CAPTION_LENGTHS, "engine") == 6


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    log = tmp_path_factory.mktemp("vllm_server") / "server.log"
    with VLLMServer(model, max_model_len=4096, log_path=log,
                    extra_args=("--structured-outputs-config", GUIDANCE)) as running:
        yield running


@pytest.fixture(scope="module")
def short_clips(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("short_clips")
    return [str(make_clip(folder / f"clip{i}.mp4", seconds=2.0 + i, width=96, height=64))
            for i in range(3)]


@pytest.mark.composes("openai", "json", "all")
@pytest.mark.parametrize("schema", [None, USER_SCHEMA], ids=["default", "user"])
def test_openai_server_honours_response_format(model, server, short_clips, schema):
    lengths = {"tiny": 6, "full": 60}
    op = make_op(model, backend="openai", caption_format="json", json_schema=schema,
                 caption_lengths=lengths, caption_num=2, keep_candidate_mode="all",
                 keep_original_sample=False,
                 model_params={"api_base": server.url, "backoff_s": 0.2, "max_backoff_s": 2.0},
                 **{**FRAMES, "sampling_params": {"max_new_tokens": 2048, "temperature": 1.0}})
    samples = [{"text": f"{V} clip", "videos": [clip]} for clip in short_clips]
    rows = run_op(op, samples)
    assert len(rows) == 6
    for row in rows:
        assert row[Fields.meta][META_KEY]["backend"] == "openai"
    assert check_rows(rows, schema or DEFAULT_SCHEMA, lengths, "engine") == 6
