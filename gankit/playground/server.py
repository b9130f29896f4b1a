"""The playground's web server: starlette routes over a :class:`Session`, served by uvicorn.

Every request and websocket must carry the session's random token (``?token=`` or the
``X-Gankit-Token`` header) and a Host header naming this server (no DNS rebinding); a request with an
Origin header from another site is refused (no cross-site drive-by), websockets included.
"""
from __future__ import annotations

import asyncio
import secrets
import socket
import sys
import threading
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

from gankit.config import ConfigError
from gankit.data import DataError
from gankit.playground.session import PlaygroundError, Session

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError(f"gankit playground needs starlette, uvicorn and websockets ({exc.name} is missing): "
                      "pip install 'gankit[playground]'") from None

STATIC = resources.files("gankit.playground") / "static"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
REFUSED = (ConfigError, DataError, PlaygroundError, ValueError, TypeError, KeyError)
Scope = dict[str, Any]
MAX_PORT = 65535


class Guard:
    """ASGI middleware: token, Host and Origin checks before any route runs."""

    def __init__(self, app: Callable, token: str, hosts: set[str]) -> None:
        self.app, self.token, self.hosts = app, token, hosts
        self.origins = {f"http://{h}" for h in hosts}

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        problem = self.problem(scope)
        if problem is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":  # closing before accepting answers the handshake with 403
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": problem})
            return
        await PlainTextResponse(f"gankit: forbidden: {problem}\n", status_code=403)(scope, receive, send)

    def problem(self, scope: Scope) -> str | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if headers.get("host", "") not in self.hosts:
            return f"Host {headers.get('host', '')!r} is not this server"
        origin = headers.get("origin")
        if origin is not None and origin not in self.origins:
            return f"Origin {origin!r} is not this server"
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = headers.get("x-gankit-token") or (query.get("token") or [""])[0]
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return "missing or wrong token (use the URL gankit playground printed)"
        return None


def error(exc: BaseException, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(exc).split()) or type(exc).__name__}, status_code=status)


def create_app(session: Session, token: str, hosts: set[str]) -> Guard:
    """The ASGI app of ``session``; ``hosts`` are the Host header values that name this server."""

    async def run(name: str, *args: Any) -> Any:
        return await asyncio.wrap_future(session.call(name, *args))

    async def body(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            raise PlaygroundError("the request body must be a JSON object") from None
        if not isinstance(data, dict):
            raise PlaygroundError("the request body must be a JSON object")
        return data

    def command(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except REFUSED as exc:  # a bad value: a message for the page, the game unchanged
                return error(exc)
            except Exception as exc:  # anything else: still a message, never a dead server
                return error(exc, 500)
        return wrapped

    async def index(request: Request) -> Response:
        html = (STATIC / "index.html").read_text().replace("__TOKEN__", token)
        return Response(html, media_type="text/html", headers={"Cache-Control": "no-store"})

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return PlainTextResponse("not found", status_code=404)
        return Response((STATIC / name).read_text(), media_type=ASSETS[name])

    @command
    async def state(request: Request) -> Response:
        return JSONResponse(session.state())

    @command
    async def settings(request: Request) -> Response:
        return JSONResponse(await run("change", (await body(request)).get("changes")))

    @command
    async def control(request: Request) -> Response:
        data = await body(request)
        return JSONResponse(await run("control", data.get("action"), data.get("count", 1)))

    @command
    async def mode(request: Request) -> Response:
        data = await body(request)
        return JSONResponse(await run("mode", data.get("mode"), data.get("config")))

    @command
    async def export(request: Request) -> Response:
        return Response(await run("export"), media_type="application/x-yaml",
                        headers={"Content-Disposition": 'attachment; filename="playground.yaml"'})

    @command
    async def checkpoint(request: Request) -> Response:
        return Response(await run("checkpoint"), media_type="application/octet-stream",
                        headers={"Content-Disposition": 'attachment; filename="playground.safetensors"'})

    async def frames(ws: WebSocket) -> None:
        """Each new frame once, sent when the render thread finishes it (no polling: the training thread
        shares the interpreter); returns when the page goes away or the server shuts down."""
        await ws.accept()
        loop, fresh = asyncio.get_running_loop(), asyncio.Event()

        def wake() -> None:  # called by the render thread
            try:
                loop.call_soon_threadsafe(fresh.set)
            except RuntimeError:  # the loop has closed
                pass

        async def send() -> None:
            sent = -1
            while True:
                fresh.clear()
                frame, frame_id = session.frame, session.frame_id
                if frame_id != sent and frame is not None:
                    sent = frame_id
                    await ws.send_bytes(frame)
                if session.frame_id == frame_id:
                    await fresh.wait()

        async def listen() -> None:  # the page sends nothing; a disconnect ends the stream
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass

        session.subscribe(wake)
        tasks = [asyncio.ensure_future(send()), asyncio.ensure_future(listen())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            session.unsubscribe(wake)
            for task in tasks:
                task.cancel()
            # not gather: a cancellation of this handler arriving here (the test client's cancel scope)
            # would surface as the children's message-less CancelledError, which anyio does not
            # recognise as its own and re-raises to the caller; wait() re-raises the handler's own
            await asyncio.wait(tasks)

    routes = [Route("/", index), Route("/static/{name}", asset), Route("/api/state", state),
              Route("/api/settings", settings, methods=["POST"]), Route("/api/control", control, methods=["POST"]),
              Route("/api/mode", mode, methods=["POST"]), Route("/api/export", export),
              Route("/api/checkpoint", checkpoint), WebSocketRoute("/ws", frames)]
    return Guard(Starlette(routes=routes), token, hosts)


def local_hosts(host: str, port: int) -> set[str]:
    names = {host, "127.0.0.1", "localhost"} if host in ("127.0.0.1", "localhost") else {host}
    return {f"{h}:{port}" for h in names}


class Playground:
    """A running playground: the session, its server and the URL with the token. ``serve`` blocks;
    ``start_in_thread`` (tests, the benchmark) returns once the server listens."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, configs_dir: Path | None = None,
                 fps: float = 15.0) -> None:
        if not 0 <= port <= MAX_PORT:  # bind() would raise OverflowError
            raise PlaygroundError(f"--port must be from 0 to {MAX_PORT} (0: any free port), got {port}")
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise PlaygroundError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                                  "(choose another --port)") from None
        self.port = self.sock.getsockname()[1]
        self.token = secrets.token_urlsafe(18)
        self.session = Session(configs_dir, fps=fps)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/?token={self.token}"
        self.app = create_app(self.session, self.token, local_hosts(shown, self.port))
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", ws="websockets-sansio",
                                                    lifespan="off"))
        self._thread: threading.Thread | None = None

    def serve(self) -> None:
        self.session.start()
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.session.close()

    def start_in_thread(self) -> "Playground":
        self._thread = threading.Thread(target=self.serve, name="gankit-playground-server", daemon=True)
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the playground server did not start")
            threading.Event().wait(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.session.close()


def serve(host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False,
          configs_dir: Path | None = None) -> None:
    playground = Playground(host, port, configs_dir)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"gankit: warning: listening on {host}, not 127.0.0.1: anyone who can reach it and has the URL "
              "can drive this machine's CPU", file=sys.stderr)
    print(f"gankit: playground at {playground.url}", flush=True)
    print("gankit: press Ctrl+C to stop", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(playground.url)
    playground.serve()
