"""What the real CogVLM2 checkpoint's remote code needs from the server's environment, and the
server's start with it: every module its files import (the project's list,
``dj_ops_cogvlm2_server/remote_code.py``) imports in the environment ``setup_env.sh`` makes,
pytorchvideo included on a torchvision without ``functional_tensor``; a checkpoint whose code
imports triton (the real rotary kernel, CUDA only) is refused on CPU at start, saying why and
what to do, while the stand-in serves; and the one-command check for a user's checkpoint.

Tier ``cogvlm2_env`` (the server's environment).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from dj_ops.testing.cogvlm2_server import (
    SERVER_DIR,
    ServerProcess,
    cuda_only_copy,
    env_python,
    server_env,
    shared_standin,
)

pytestmark = [
    pytest.mark.cogvlm2_env,
    pytest.mark.skipif(env_python() is None, reason=(
        "the CogVLM2 server environment is absent: run `bash servers/cogvlm2/setup_env.sh`")),
]


def run_in_env(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(env_python()), "-W", "ignore", *args], capture_output=True,
                          text=True, timeout=timeout, env=server_env())


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> tuple[Path, Path]:
    return shared_standin(env_python(), tmp_path_factory.getbasetemp() / "cogvlm2_standin")


@pytest.fixture(scope="module")
def cuda_only(standin, tmp_path_factory) -> Path:
    return cuda_only_copy(standin[0], tmp_path_factory.mktemp("cuda_only") / "checkpoint_cuda")


@pytest.fixture(scope="module")
def listed() -> dict[str, list[str]]:
    result = run_in_env("-c", "import json; from dj_ops_cogvlm2_server.remote_code import "
                              "REMOTE_CODE_IMPORTS as m; print(json.dumps(m))")
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_the_environment_imports_every_module_of_the_real_code(listed):
    """``python -m dj_ops_cogvlm2_server.remote_code`` (the last step of ``setup_env.sh``)
    imports each listed module, as executing the real files does; triton is required with a
    CUDA build of torch, the default pair's."""
    cuda = run_in_env("-c", "import torch; print(torch.version.cuda is not None)")
    result = run_in_env("-m", "dj_ops_cogvlm2_server.remote_code")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    status = dict(line.split(maxsplit=1) for line in result.stdout.splitlines())
    required = [m for m in listed if cuda.stdout.strip() == "True" or
                not m.startswith("triton")]
    assert {m: status[m] for m in required} == dict.fromkeys(required, "ok")
    assert {"einops", "pytorchvideo.transforms", "torchvision.transforms._transforms_video",
            "triton"} <= set(listed)


def test_the_stand_in_imports_what_the_real_code_does_but_triton(standin):
    """transformers' own parser (``get_imports``, what ``check_imports`` tries on load) finds
    in the stand-in's files the real code's third-party top-level names, triton aside (the
    stand-in runs on CPU)."""
    script = ("import json, sys; from dj_ops_cogvlm2_server.remote_code import checked_names, "
              "code_files, code_imports; print(json.dumps([code_imports(code_files("
              "sys.argv[1])), sorted(checked_names())]))")
    result = run_in_env("-c", script, str(standin[0]))
    assert result.returncode == 0, result.stderr[-2000:]
    imports, checked = json.loads(result.stdout)
    assert sorted(imports) == ["configuration_cogvlm.py", "modeling_cogvlm.py"]
    stdlib = {"argparse", "math", "typing", "warnings", "json", "os", "__future__"}
    found = set().union(*map(set, imports.values())) - stdlib
    assert found == set(checked) - stdlib - {"triton"}
    assert {"einops", "pytorchvideo", "torchvision", "transformers"} <= found


def test_pytorchvideo_finds_every_name_it_takes_from_functional_tensor():
    """pytorchvideo 0.1.5 imports ``torchvision.transforms.functional_tensor`` (gone since
    torchvision 0.17) and calls its functions by name: each exists in what the server provides
    under that name."""
    script = """
import json, re, pathlib, importlib.util
from dj_ops_cogvlm2_server.compat import provide_functional_tensor
how = provide_functional_tensor()
import torchvision.transforms.functional_tensor as F_t
folder = pathlib.Path(importlib.util.find_spec("pytorchvideo").origin).parent
used = sorted({n for f in folder.rglob("*.py") for n in re.findall(r"F_t\\.(\\w+)", f.read_text())})
print(json.dumps({"how": how, "used": used, "missing": [n for n in used if not hasattr(F_t, n)]}))
"""
    result = run_in_env("-c", script)
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout)
    assert found["how"] in ("alias", "torchvision") and found["used"]
    assert found["missing"] == []


def test_a_triton_checkpoint_is_refused_on_cpu_at_start_saying_why(cuda_only, tmp_path):
    server = ServerProcess(env_python(), cuda_only, tmp_path / "server.log", "--device", "cpu")
    with pytest.raises(RuntimeError, match=r"the server exited \(2\)") as refused:
        server.__enter__()
    message = str(refused.value)
    for said in ("cannot run on cpu", "util.py", "imports triton", "CUDA", "--device cuda",
                 "setup_env.sh"):
        assert said in message
    assert "Traceback" not in message


def test_the_check_passes_on_the_stand_in_and_says_what_it_verified(standin):
    """``dj-ops-cogvlm2-check``: loads the checkpoint as the server does, captions a generated
    clip through the HTTP API with both template versions, prints each verified fact."""
    check = Path(env_python()).parent / "dj-ops-cogvlm2-check"
    result = subprocess.run([str(check), "--model", str(standin[0]), "--device", "cpu"],
                            capture_output=True, text=True, timeout=900, env=server_env())
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    lines = {m.group(2).strip(): (m.group(1), m.group(3)) for m in re.finditer(
        r"^(ok  |FAIL) (.{20}) (.*)$", result.stdout, re.MULTILINE)}
    expected = ["environment", "remote code", "model"] + [
        f"{what} ({version})" for version in ("chat", "base")
        for what in ("frames", "prompt", "positions", "caption")]
    assert sorted(lines) == sorted(expected)
    assert all(status == "ok  " for status, _ in lines.values())
    assert lines["model"][1].startswith("device cpu, dtype torch.float32")
    assert lines["frames (chat)"][1].startswith("[0, 8, 16, 24, 32] of 36")
    assert re.match(r"\d+ tokens, formula \d+ \(1 \+ 24 x 66", lines["prompt (base)"][1])
    assert result.stdout.rstrip().endswith("all checks passed")


def test_the_check_refuses_a_triton_checkpoint_on_cpu(cuda_only):
    check = Path(env_python()).parent / "dj-ops-cogvlm2-check"
    result = subprocess.run([str(check), "--model", str(cuda_only), "--device", "cpu"],
                            capture_output=True, text=True, timeout=600, env=server_env())
    assert result.returncode == 2
    assert "imports triton" in result.stderr and "Traceback" not in result.stderr


def test_the_installed_server_is_this_checkout():
    """The server's wheel copies dj_ops' sampler and CogVLM2 builder: the installed files are
    this checkout's, byte for byte (``setup_env.sh`` reinstalls the server on every run)."""
    script = ("import dj_ops_cogvlm2_server, pathlib; "
              "print(pathlib.Path(dj_ops_cogvlm2_server.__file__).parent)")
    installed = Path(run_in_env("-c", script).stdout.strip())
    source = SERVER_DIR / "dj_ops_cogvlm2_server"
    stale = [f.name for f in sorted(source.glob("*.py"))
             if not (installed / f.name).is_file()
             or (installed / f.name).read_bytes() != f.resolve().read_bytes()]
    assert stale == [], "rerun bash servers/cogvlm2/setup_env.sh"
