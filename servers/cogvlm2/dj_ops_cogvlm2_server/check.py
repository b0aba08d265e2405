"""One command for a user who has the checkpoint: load it as the server does, serve it on a
loopback port, caption a generated clip through the HTTP API with each template version, and
print what was verified.

``dj-ops-cogvlm2-check --model THUDM/cogvlm2-llama3-caption`` (the server's model options:
``--device``, ``--dtype``, ``--quant``). Checked: every module the remote code imports is
installed and in the project's list (``remote_code.py``); the frames picked (``chat``: the frame
nearest each whole second; ``base``: 24); the prompt's tokens and positions against the
interface's formulas (``cogvlm2_interface.py``); the dtype and device the model runs in; a
non-empty caption. Exit status 0 when all hold, 1 when one does not, 2 when the model cannot
run as asked.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

import numpy as np

from dj_ops_cogvlm2_server import remote_code
from dj_ops_cogvlm2_server.cogvlm2_interface import (
    TEMPLATE_VERSIONS,
    VISION_TOKENS_PER_FRAME,
    prompt_position_count,
    prompt_token_count,
)
from dj_ops_cogvlm2_server.protocol import read_call
from dj_ops_cogvlm2_server.server import (
    CaptionService,
    add_model_arguments,
    load_captioner,
    serve,
)

PROMPT = "Please describe this video in detail."
CLIP_SECONDS, CLIP_FPS, CLIP_SIZE = 4.5, 8, (320, 240)


def write_clip(path: Path) -> int:
    """A few seconds of a square crossing a gradient, as H.264 MP4; returns its frame count."""
    import av

    width, height = CLIP_SIZE
    count = round(CLIP_SECONDS * CLIP_FPS)
    ramp = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(count):
            frame = np.broadcast_to(ramp, (height, width, 3)).copy()
            x = int(i * (width - 60) / count)
            frame[90:150, x:x + 60] = (230, 40, 40)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return count


def expected_frames(count: int, strategy: str) -> int:
    """How many frames the card's strategy picks from ``count`` frames at :data:`CLIP_FPS`."""
    if strategy == "base":
        return 24
    return min(round((count - 1) / CLIP_FPS) + 1, 24)


def import_report(model: str) -> list[tuple[bool, str, str]]:
    """The environment against the project's list, and the checkpoint's code against it."""
    listed = remote_code.top_level_names(remote_code.REMOTE_CODE_IMPORTS)
    missing = remote_code.missing_modules(remote_code.required_modules(
        remote_code.torch_has_cuda()))
    files = remote_code.code_files(model)
    found = set().union(*remote_code.code_imports(files).values()) - set(
        sys.stdlib_module_names)
    unlisted = sorted(found - listed)
    return [
        (not missing, "environment", "every listed module imports" if not missing else
         f"missing {sorted(missing)}: run servers/cogvlm2/setup_env.sh"),
        (bool(files) and not unlisted, "remote code",
         f"{', '.join(files) or 'none (no auto_map)'} import {', '.join(sorted(found))}"
         + (f"; NOT in the project's list: {unlisted}" if unlisted else
            " (all in the project's list)")),
    ]


def caption_report(captioner, url: str, clip: Path, count: int, version: str):
    """Caption the clip with ``version`` through the server; what held."""
    body = {"messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": clip.as_uri()}},
        {"type": "text", "text": PROMPT}]}], "max_tokens": 48, "template_version": version}
    request = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=900) as answer:
        reply = json.loads(answer.read())
    received, usage = reply["dj_ops_received"], reply["usage"]
    frames = len(received["frame_indices"])
    tokens = prompt_token_count(captioner.tokenizer, frames, PROMPT, version)
    positions = prompt_positions(captioner, body, clip)
    expected_positions = prompt_position_count(captioner.tokenizer, frames, PROMPT, version)
    text = reply["choices"][0]["message"]["content"]
    times = " + time indices" if version == "chat" else ""
    return [
        (frames == expected_frames(count, version) == received["frames_shape"][1],
         f"frames ({version})", f"{received['frame_indices']} of {count}, "
                                f"shape {received['frames_shape']} uint8"),
        (usage["prompt_tokens"] == tokens, f"prompt ({version})",
         f"{usage['prompt_tokens']} tokens, formula {tokens} (1 + {frames} x "
         f"{VISION_TOKENS_PER_FRAME} vision{times} + text)"),
        (positions == expected_positions, f"positions ({version})",
         f"{positions}, formula {expected_positions} (vision tokens share positions)"),
        (bool(text.strip()), f"caption ({version})",
         f"{usage['completion_tokens']} tokens: {text[:100]!r}"),
    ]


def prompt_positions(captioner, body: dict, clip: Path) -> int:
    """The positions the model's own ``build_position_ids`` gives the prompt."""
    from dj_ops_cogvlm2_server.frames import load_video, video_bytes

    call = read_call(body, "chat")
    video, _ = load_video(video_bytes(call.video_url, True), call.template_version)
    batch = captioner.inputs(call, video)
    module = sys.modules[type(captioner.model).__module__]
    return int(module.build_position_ids(batch["token_type_ids"],
                                         batch["attention_mask"])[0, -1]) + 1


def report(results: list[tuple[bool, str, str]]) -> list[str]:
    """Print ``results``; the labels of those that failed."""
    for ok, label, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {label:20s} {detail}", flush=True)
    return [label for ok, label, _ in results if not ok]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    failed = report(import_report(args.model))
    captioner = load_captioner(parser, args)  # a device the code cannot run on: status 2
    parameter = next(captioner.model.parameters())
    failed += report([(parameter.device.type == captioner.device.split(":")[0], "model",
                       f"device {parameter.device}, dtype {captioner.dtype} "
                       f"(parameters: {parameter.dtype})")])
    httpd = serve(CaptionService(captioner, args.model, allow_local_files=True), "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            clip = Path(folder) / "clip.mp4"
            count = write_clip(clip)
            url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
            for version in TEMPLATE_VERSIONS:
                failed += report(caption_report(captioner, url, clip, count, version))
    finally:
        httpd.shutdown()
        httpd.server_close()
    print(f"{args.model}: " + (f"FAILED {failed}" if failed else "all checks passed"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
