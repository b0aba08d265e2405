"""A loopback reverse proxy in front of an OpenAI-compatible server, for tests that must not
depend on the machine's speed.

It sees every chat-completions request the ``openai`` backend has open, exactly (a server's
``/metrics`` is read about twice a second on a busy CPU engine and misses short peaks), and it
can hold requests: until a number of them are open at once (so a bound is reached however slowly
the next video decodes), or while the test restarts the server behind it (so a retry meets the
server back up however long the restart takes). When the server behind it does not answer, it
answers 502, as a gateway in front of a crashed server does.
"""

from __future__ import annotations

import asyncio
import threading

import aiohttp
from aiohttp import web

from dj_ops.testing.openai_server import MAX_BODY_BYTES

CHAT_PATH = "/v1/chat/completions"
HOLD_TIMEOUT_S = 900.0  # longest hold: a held request is released then (a test's safety net)
# Headers that belong to one connection, not to the request forwarded (RFC 9110, 7.6.1).
HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
KEPT_ANSWER_HEADERS = ("Content-Type", "Retry-After")


class CountingProxy:
    """The proxy, run by an event loop in a background thread (a context manager).

    :param upstream: the server's root, e.g. ``http://127.0.0.1:8000`` (paths are kept).
    :param hold_until: hold chat requests until this many are open at once, then let every
        request through (0: hold none).
    """

    def __init__(self, upstream: str, *, hold_until: int = 0, host: str = "127.0.0.1"):
        self.upstream, self.host, self.port = upstream.rstrip("/"), host, 0
        self.in_flight = self.max_in_flight = 0  # chat requests open (now, at most)
        self.requests = 0  # chat requests received
        self.upstream_errors = 0  # chat requests answered 502: the server did not answer
        self.forwarded = threading.Event()  # set when a chat request is first sent on
        self._hold_until = hold_until
        self._held = hold_until > 0  # whether chat requests wait now
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._changed: asyncio.Condition | None = None
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The API root to give the backend as ``api_base``."""
        return f"http://{self.host}:{self.port}/v1"

    def hold(self) -> None:
        """Hold chat requests that arrive from now on, until :meth:`release`."""
        self._call(self._set_held, True)

    def release(self) -> None:
        """Let held and later chat requests through."""
        self._call(self._set_held, False)

    def start(self) -> CountingProxy:
        self._thread.start()
        self._call(self._start)
        return self

    def stop(self) -> None:
        async def shutdown():
            await self._runner.cleanup()
            await self._session.close()

        self._call(shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _call(self, function, *args):
        async def run():
            return await function(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=60)

    async def _start(self) -> None:
        self._changed = asyncio.Condition()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _set_held(self, held: bool) -> None:
        async with self._changed:
            self._held = held
            self._changed.notify_all()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path != CHAT_PATH:
            return await self._forward(request)
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self._wait_while_held()
            self.forwarded.set()
            answer = await self._forward(request)
            self.upstream_errors += answer.status == 502
            return answer
        finally:
            self.in_flight -= 1

    async def _wait_while_held(self) -> None:
        async with self._changed:
            if self._hold_until and self.in_flight >= self._hold_until:
                self._hold_until, self._held = 0, False  # reached once: hold no more
                self._changed.notify_all()
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: not self._held),
                                       HOLD_TIMEOUT_S)
            except asyncio.TimeoutError:
                pass  # released by the safety net; the test's own assertions then fail

    async def _forward(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            async with self._session.request(request.method, self.upstream + request.path_qs,
                                             data=await request.read(),
                                             headers=headers) as answer:
                body = await answer.read()
                kept = {k: answer.headers[k] for k in KEPT_ANSWER_HEADERS if k in answer.headers}
                return web.Response(status=answer.status, body=body, headers=kept)
        except aiohttp.ClientError as error:
            return web.json_response(
                {"error": {"message": f"the server behind the proxy did not answer: {error}"}},
                status=502)
