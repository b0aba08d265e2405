"""One table of the op's parameters (dj_ops/captioning/parameters.py) is the single source of
the op's signature (checked here, since Data-Juicer reads the written signature), its
``:param`` docstring, the mode choices, ``dj-ops-caption``'s options and the README's
reference. Each test fails when one of them drifts from the table."""

from __future__ import annotations

import inspect
import typing

import pytest

from dj_ops.backends.base import BACKENDS, FAST_DECODING_MODES
from dj_ops.captioning import parameter_docs
from dj_ops.captioning.parameters import BY_NAME, DATA_JUICER_PARAMETERS, PARAMETERS
from dj_ops.captioning.selection import SELECTORS
from dj_ops.commands.caption import cli_parameters, op_params, option_kwargs, parse_args
from dj_ops.video.decoders import DECODERS
from dj_ops.video.settings import STRATEGIES


def _op():
    from dj_ops.ops.vlm_video_captioning_mapper import VLMVideoCaptioningMapper

    return VLMVideoCaptioningMapper


def _signature() -> dict[str, inspect.Parameter]:
    params = inspect.signature(_op().__init__).parameters
    return {n: p for n, p in params.items() if n not in ("self", "args", "kwargs")}


def test_the_signature_is_the_table():
    signature = _signature()
    hints = typing.get_type_hints(_op().__init__, include_extras=True)
    assert list(signature) == [p.name for p in PARAMETERS]  # names, in order
    for parameter in PARAMETERS:
        assert signature[parameter.name].default == parameter.default, parameter.name
        assert hints[parameter.name] == parameter.annotation, parameter.name


def test_every_parameter_has_one_docstring_entry():
    documented = [line.split(":param ")[1].split(":")[0]
                  for line in _op().__init__.__doc__.splitlines() if ":param " in line]
    assert documented == [p.name for p in PARAMETERS] + ["args", "kwargs"]


def test_mode_choices_come_from_their_tables():
    assert BY_NAME["keep_candidate_mode"].choices == tuple(SELECTORS)
    assert BY_NAME["backend"].choices == tuple(BACKENDS)
    assert BY_NAME["decoder"].choices == tuple(DECODERS)
    assert BY_NAME["frame_strategy"].choices == STRATEGIES
    assert BY_NAME["fast_decoding"].choices == FAST_DECODING_MODES
    for parameter in PARAMETERS:  # a Literal annotation allows exactly the listed choices
        if typing.get_origin(parameter.annotation) is typing.Literal:
            assert typing.get_args(parameter.annotation) == parameter.choices, parameter.name


def test_a_mode_outside_the_table_is_refused_when_the_op_is_built(qwen3):
    from tests.conftest import make_op

    for name in ("keep_candidate_mode", "on_error", "fast_decoding", "on_low_quality",
                 "caption_format", "backend", "decoder", "frame_strategy"):
        with pytest.raises(ValueError):
            make_op(qwen3, **{name: "no-such-mode"})


def test_the_readme_reference_is_generated_from_the_table():
    readme = parameter_docs.README.read_text(encoding="utf-8")
    assert parameter_docs.with_table(readme) == readme, (
        "README.md's parameter reference is stale: python -m dj_ops.captioning.parameter_docs")
    for parameter in (*PARAMETERS, *DATA_JUICER_PARAMETERS):
        assert f"| `{parameter.name}` |" in readme


def test_every_parameter_has_an_option_or_a_reason():
    for parameter in (*PARAMETERS, *DATA_JUICER_PARAMETERS):
        assert parameter.flag is not None or parameter.why_no_cli, parameter.name


# a value per option, to show that each reaches the op under its own name
SAMPLE = {"str": "x", "int": 3, "float": 1.5}


def _sample_value(parameter) -> tuple[list[str], object]:
    kwargs = option_kwargs(parameter)
    if kwargs.get("action") == "store_true":
        return [parameter.flag], True
    if "choices" in kwargs:
        choice = kwargs["choices"][-1]
        return [parameter.flag, choice], choice
    kind = getattr(kwargs["type"], "__name__", "")
    if kind in ("json_object", "json_or_path"):
        return [parameter.flag, '{"a": 1}'], {"a": 1}
    value = SAMPLE[kind]
    return [parameter.flag, str(value)], value


@pytest.mark.parametrize("parameter", cli_parameters(), ids=lambda p: p.name)
def test_each_option_reaches_the_op(parameter):
    argv, value = _sample_value(parameter)
    params = op_params(parse_args(["videos", "-o", "out.jsonl", *argv]))
    assert params[parameter.name] == value


def test_the_options_of_the_issue():
    """`--keep consensus` was refused; caption_format, json_schema and window_seconds had no
    option."""
    params = op_params(parse_args(["v", "-o", "o", "--keep", "consensus", "--caption-format",
                                   "json", "--json-schema", "schema.json",
                                   "--window-seconds", "60"]))
    assert params["keep_candidate_mode"] == "consensus"
    assert (params["caption_format"], params["json_schema"]) == ("json", "schema.json")
    assert params["window_seconds"] == 60.0
