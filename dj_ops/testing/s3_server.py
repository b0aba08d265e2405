"""An S3-compatible server on loopback for tests: moto's server mode (PyPI ``moto``, with
``flask`` and ``flask-cors``), in a child process of its own.

``python -m dj_ops.testing.s3_server`` serves on 127.0.0.1 (a free port), prints
``{"endpoint": "http://127.0.0.1:PORT"}`` and serves until its stdin ends (the parent closed
it, or died however it died). :class:`S3Server` runs it from a test.

What moto does not reproduce of a cloud object store (so what these tests do not show):
latency (a loopback request takes about a millisecond, S3 tens of milliseconds) and
bandwidth; request-rate limits and throttling (S3's 503 SlowDown per prefix); transient
server errors and the client's retries; authentication and access policies (moto accepts any
key, so a wrong credential is not caught); TLS; durability (moto keeps objects in memory and
loses them when stopped); the consistency of other S3-compatible services (AWS S3 is
strongly consistent for reads and lists after a write, some others list late); costs per
request.
"""

from __future__ import annotations

import json
import subprocess
import sys

LOOPBACK = "127.0.0.1"
# Fake credentials for the tests, in the environment as a real job's would be.
TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "djopsTestKeyId", "AWS_SECRET_ACCESS_KEY":
                    "djopsTestSecretKey", "AWS_REGION": "us-east-1",
                    "AWS_DEFAULT_REGION": "us-east-1"}


def serve() -> None:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(LOOPBACK, 0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(json.dumps({"endpoint": f"http://{host}:{port}"}), flush=True)
    for _ in sys.stdin:  # until the parent closes stdin or dies
        pass
    server.stop()


class S3Server:
    """The server above in a child process; a context manager that stops it.

    :attr:`env`: the environment a client needs (fake credentials, region, endpoint).
    """

    def __init__(self):
        self._process = subprocess.Popen([sys.executable, "-m", "dj_ops.testing.s3_server"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True)
        line = self._process.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"the S3 test server exited ({self._process.returncode})")
        self.endpoint: str = json.loads(line)["endpoint"]
        self.env = {**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def create_bucket(self, name: str) -> None:
        from pyarrow import fs

        s3 = fs.S3FileSystem(access_key=self.env["AWS_ACCESS_KEY_ID"],
                             secret_key=self.env["AWS_SECRET_ACCESS_KEY"], region="us-east-1",
                             endpoint_override=self.endpoint, allow_bucket_creation=True)
        s3.create_dir(name)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    serve()
