"""The HTTP server: ``POST /v1/chat/completions`` (the contract of :mod:`protocol`),
``GET /v1/models`` and ``GET /health``, on Python's own ``http.server``.

The standard library's threading server is enough here (one model, ``generate`` calls taken
one at a time under a lock, videos decoded concurrently), and keeps the environment down to
torch, transformers 4.42 and decord: an ASGI stack would bring dependencies the old pins clash
with for no gain at this request rate.

Command line: ``dj-ops-cogvlm2-server --model THUDM/cogvlm2-llama3-caption --port 8000``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dj_ops_cogvlm2_server.frames import STRATEGIES, load_video, video_bytes
from dj_ops_cogvlm2_server.protocol import completion_body, read_call

CHAT_PATH = "/v1/chat/completions"
MAX_BODY_BYTES = 512 * 1024 * 1024
log = logging.getLogger("dj_ops_cogvlm2_server")


class CaptionService:
    """What the handler calls: a :class:`~dj_ops_cogvlm2_server.model.Captioner` and the
    server's settings.

    :param captioner: the loaded model.
    :param served_model: the model name reported in answers.
    :param template_version: the default frame strategy and template (``chat`` or ``base``).
    :param allow_local_files: whether ``file://`` video URLs may be read.
    :param api_key: when set, requests must carry ``Authorization: Bearer <api_key>``.
    """

    def __init__(self, captioner, served_model: str, template_version: str = "chat",
                 allow_local_files: bool = False, api_key: str | None = None):
        if template_version not in STRATEGIES:
            raise ValueError(f"--template-version must be one of {list(STRATEGIES)}")
        self.captioner, self.served_model = captioner, served_model
        self.template_version, self.allow_local_files = template_version, allow_local_files
        self.api_key = api_key
        self._generating = threading.Lock()

    def complete(self, body: dict) -> dict:
        """The answer to one request body. :raises ValueError: for a bad request."""
        call = read_call(body, self.template_version)
        video, indices = load_video(video_bytes(call.video_url, self.allow_local_files),
                                    call.template_version)
        with self._generating:
            choices, prompt_tokens = self.captioner.caption(call, video)
        received = {"frame_indices": indices, "frames_shape": list(video.shape),
                    "template_version": call.template_version, "query": call.query,
                    "generate_kwargs": call.generate_kwargs, "n": call.n}
        return completion_body(body.get("model") or self.served_model, choices,
                               prompt_tokens, received)


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the server's :class:`CaptionService`."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        service = self.server.service
        if self.path == "/health":
            self._reply(200, {"status": "ok"})
        elif self.path == "/v1/models":
            self._reply(200, {"object": "list", "data": [
                {"id": service.served_model, "object": "model", "owned_by": "dj_ops"}]})
        else:
            self._reply(404, _error(404, f"no route {self.path}"))

    def do_POST(self) -> None:
        service = self.server.service
        length = int(self.headers.get("Content-Length") or 0)
        if self.path != CHAT_PATH:
            self._reply(404, _error(404, f"no route {self.path}"))
        elif length > MAX_BODY_BYTES:
            self._reply(413, _error(413, f"request body over {MAX_BODY_BYTES} bytes"))
        elif service.api_key and self.headers.get("Authorization") != (
                f"Bearer {service.api_key}"):
            self.rfile.read(length)
            self._reply(401, _error(401, "invalid API key"))
        else:
            self._answer(service, self.rfile.read(length))

    def _answer(self, service: CaptionService, raw: bytes) -> None:
        started = time.monotonic()
        try:
            body = json.loads(raw)
            answer = service.complete(body)
        except (ValueError, KeyError, TypeError) as error:
            self._reply(400, _error(400, f"{type(error).__name__}: {error}"))
            return
        except Exception as error:  # a model failure: answer it, keep serving the others
            log.exception("generation failed")
            self._reply(500, _error(500, f"{type(error).__name__}: {error}"))
            return
        log.info("captioned in %.2f s: frames %s", time.monotonic() - started,
                 answer["dj_ops_received"]["frame_indices"])
        self._reply(200, answer)

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args) -> None:
        log.debug(fmt, *args)


def _error(status: int, message: str) -> dict:
    return {"error": {"message": message, "code": status}}


def serve(service: CaptionService, host: str, port: int) -> ThreadingHTTPServer:
    """A started-to-be server bound to ``host:port`` (port 0: any free port)."""
    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    httpd.service = service
    return httpd


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say which model to load and how (the server's and the check's)."""
    parser.add_argument("--model", required=True, help="checkpoint folder or hub id")
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when available)")
    parser.add_argument("--dtype", default="auto",
                        choices=["auto", "bfloat16", "float16", "float32"])
    parser.add_argument("--quant", type=int, default=0, choices=[0, 4, 8])


def load_captioner(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The model of ``args``; a model that cannot run as asked ends the program (status 2)
    with the reason and the fix."""
    from dj_ops_cogvlm2_server.model import Captioner

    try:
        return Captioner(args.model, args.device, args.dtype, args.quant)
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: {error}\n")


def main(argv: list[str] | None = None) -> None:
    """Command line: load the model, then serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--served-model-name", help="name in answers (default: --model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--template-version", default="chat", choices=STRATEGIES,
                        help="default frame strategy and template (a request's "
                             "template_version field overrides it)")
    parser.add_argument("--allow-local-files", action="store_true",
                        help="read file:// video URLs (dj_ops' video_transport: path)")
    parser.add_argument("--api-key-env", help="environment variable holding the required key")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    captioner = load_captioner(parser, args)
    api_key = os.environ[args.api_key_env] if args.api_key_env else None
    service = CaptionService(captioner, args.served_model_name or args.model,
                             args.template_version, args.allow_local_files, api_key)
    httpd = serve(service, args.host, args.port)
    log.info("serving %s at http://%s:%d/v1 on %s (%s)", args.model, args.host,
             httpd.server_address[1], captioner.device, captioner.dtype)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
