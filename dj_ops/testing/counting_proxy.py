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

from dj_ops.testing.loopback_app import LoopbackApp

CHAT_PATH = "/v1/chat/completions"
HOLD_TIMEOUT_S = 900.0  # longest hold: a held request is released then (a test's safety net)
# Headers that belong to one connection, not to the request forwarded (RFC 9110, 7.6.1).
HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
KEPT_ANSWER_HEADERS = ("Content-Type", "Retry-After")


class CountingProxy(LoopbackApp):
    """The proxy, run by an event loop in a background thread (a context manager).

    :param upstream: the server's root, e.g. ``http://127.0.0.1:8000`` (paths are kept).
    :param hold_until: hold chat requests until this many are open at once, then let every
        request through (0: hold none).
    """

    def __init__(self, upstream: str, *, hold_until: int = 0, host: str = "127.0.0.1"):
        super().__init__(host)
        self.upstream = upstream.rstrip("/")
        self.in_flight = self.max_in_flight = 0  # chat requests open (now, at most)
        self.requests = 0  # chat requests received
        self.upstream_errors = 0  # chat requests answered 502: the server did not answer
        # set once a chat request has reached the server: its body was written on a connection
        # to it, so a server killed after that fails the request (a request only forwarded may
        # not have reached it yet, and its answer may end before the kill)
        self.sent = threading.Event()
        self._hold_until = hold_until
        self._held = hold_until > 0  # whether chat requests wait now
        self._changed: asyncio.Condition | None = None
        self._session: aiohttp.ClientSession | None = None

    def hold(self) -> None:
        """Hold chat requests that arrive from now on, until :meth:`release`."""
        self.call(self._set_held, True)

    def release(self) -> None:
        """Let held and later chat requests through."""
        self.call(self._set_held, False)

    async def _open(self, app: web.Application) -> None:
        self._changed = asyncio.Condition()
        trace = aiohttp.TraceConfig()
        trace.on_request_chunk_sent.append(self._chunk_sent)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None),
                                              trace_configs=[trace])
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _stopping(self) -> None:
        await self._session.close()

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
            answer = await self._forward(request)
            self.upstream_errors += answer.status == 502
            return answer
        finally:
            self.in_flight -= 1

    async def _chunk_sent(self, session, context, params) -> None:
        if params.url.path == CHAT_PATH:
            self.sent.set()

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
