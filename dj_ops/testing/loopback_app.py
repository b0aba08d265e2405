"""An aiohttp application served on a loopback port by an event loop in a background thread: the
lifecycle the test servers share (the chat-completions server and the counting proxy). A test
uses it as a context manager; the loop, its thread and the runner are opened by ``start`` and
closed by ``stop``."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

MAX_BODY_BYTES = 256 * 1024 * 1024  # an inline MP4 of a long clip fits
CALL_TIMEOUT_S = 60.0  # longest wait for a call into the loop (start, stop, settings)


class LoopbackApp:
    """The base: a subclass adds its routes in :meth:`_open` and may end work in
    :meth:`_stopping`.

    :param host: the address to listen on.
    :param port: the port (0: a free one, known after :meth:`start`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host, self.port = host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The API root to give the ``openai`` backend as ``api_base``."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self):
        """Serve, and return self once the port listens."""
        self._thread.start()
        self.call(self._serve)
        return self

    def stop(self) -> None:
        """Stop serving, then stop the loop and its thread."""
        async def shutdown():
            await self._stopping()
            await self._runner.cleanup()

        self.call(shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=CALL_TIMEOUT_S)

    def call(self, function, *args):
        """Run the coroutine function ``function(*args)`` in the loop and return its result."""
        async def run():
            return await function(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(CALL_TIMEOUT_S)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        await self._open(app)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]

    async def _open(self, app: web.Application) -> None:
        """Add the routes, and open what they use (in the loop)."""
        raise NotImplementedError

    async def _stopping(self) -> None:
        """End what must end before the runner waits for open requests (in the loop)."""
