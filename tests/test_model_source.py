"""``hf_model`` as a local folder or a model id: a missing folder is named as such."""

from __future__ import annotations

import pytest

from dj_ops.backends.model_source import (
    check_model_source,
    local_model_problem,
    looks_like_local_path,
)


@pytest.mark.parametrize("model, local", [
    ("Qwen/Qwen3-VL-8B-Instruct", False), ("gpt2", False), ("outputs/demo/model", True),
    ("./model", True), ("../m", True), ("~/m", True), ("/abs/m", True), ("org/name/", True),
    ("C:\\models\\m", True)])
def test_what_can_only_be_a_path(model, local):
    assert looks_like_local_path(model) is local


def test_problems_of_local_checkpoints(tmp_path):
    (tmp_path / "ckpt").mkdir()
    assert "holds no config.json" in local_model_problem(str(tmp_path / "ckpt"))
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    assert local_model_problem(str(tmp_path / "ckpt")) is None
    assert "is a file" in local_model_problem(str(tmp_path / "ckpt" / "config.json"))
    assert local_model_problem("Qwen/Qwen3-VL-8B-Instruct") is None  # left to the Hub client
    with pytest.raises(ValueError, match=r"no such folder .*Hugging Face model id"):
        check_model_source(str(tmp_path / "missing" / "model"))
