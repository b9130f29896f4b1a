"""The playground's web server: starlette routes over a :class:`Session`, served by uvicorn.

Every request and websocket must carry the session's random token (``?token=`` or the
``X-Gankit-Token`` header) and one Host header naming this server (no DNS rebinding: its address, the
loopback names, and on all interfaces any IP address and this machine's name, plus ``--allow-host``
names); a request with an Origin header from another site is refused (no cross-site drive-by),
websockets included.
"""
from __future__ import annotations

import asyncio
import dataclasses
import errno
import ipaddress
import json
import re
import secrets
import signal
import socket
import sys
import threading
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence
from urllib.parse import parse_qs, urlsplit

from gankit.checkpoint import CheckpointError, signals_held
from gankit.config import ConfigError
from gankit.data import DataError
from gankit.playground.session import PlaygroundError, Session, Stopping
from gankit.playground.settings import short

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
REFUSED = (ConfigError, DataError, PlaygroundError, CheckpointError, ValueError, TypeError, KeyError)
Scope = dict[str, Any]
MAX_PORT = 65535
# the largest request body: the page's largest, 5,000 drawn points of 3 decimals, is at most about 100 kB
MAX_BODY = 128 * 1024
MAX_JSON_DEPTH = 32  # the page nests 3 levels; deeper structures are refused before anything walks them
MESSAGE_CHARS = 600  # an error message is cut here, whatever value it quotes
SHUTDOWN_SECONDS = 2  # what an open connection (a page's websocket) may hold up a stop


@dataclasses.dataclass(frozen=True)
class Hosts:
    """The Host header values that name this server: ``exact`` ones (``name:port``, lower case), and with
    ``any_ip`` any IP address with this ``port`` (an IP-literal Host cannot come from DNS rebinding)."""

    exact: frozenset[str]
    port: int | None = None
    any_ip: bool = False

    def allows(self, value: str) -> bool:
        value = value.lower()
        if value in self.exact:
            return True
        if not self.any_ip:
            return False
        name, port = split_host(value)
        return name is not None and port == self.port and is_ip(name)

    def refusal(self, value: str) -> str:
        """Why ``value`` is refused, for the 403 message."""
        name, port = split_host(value.lower())
        shown = short(value)
        if name is None:
            return f"Host {shown!r} is not a host name"
        if self.port is not None and port != self.port and (is_ip(name) or any(
                split_host(h)[0] == name for h in self.exact)):
            return f"Host {shown!r} names port {port}, but this server listens on {self.port}"
        return (f"Host {shown!r} is not a name of this server (DNS rebinding guard; to use this name, start "
                f"gankit playground with --allow-host {short(name, 60)})")


def split_host(value: str) -> tuple[str | None, int | None]:
    """``name[:port]`` (IPv6 in brackets) -> (name, port); the port defaults to 80, as browsers omit it."""
    try:
        parts = urlsplit(f"http://{value}")
        if parts.username is not None or parts.path or parts.query or parts.fragment:
            return None, None
        return parts.hostname, parts.port or 80
    except ValueError:
        return None, None


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Guard:
    """ASGI middleware: token, Host and Origin checks before any route runs."""

    def __init__(self, app: Callable, token: str, hosts: Hosts) -> None:
        self.app, self.token, self.hosts = app, token, hosts

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        problem = self.problem(scope)
        if problem is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":  # closing before accepting answers the handshake with 403
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": problem[:120]})
            return
        await PlainTextResponse(f"gankit: forbidden: {problem}\n", status_code=403)(scope, receive, send)

    def problem(self, scope: Scope) -> str | None:
        headers: dict[str, list[str]] = {}
        for k, v in scope.get("headers", []):
            headers.setdefault(k.decode("latin-1").lower(), []).append(v.decode("latin-1"))
        for name in ("host", "origin"):
            # two values: a proxy or client confusion that a check of either one could be fooled by
            if len(headers.get(name, [])) > 1:
                return f"more than one {name.title()} header"
        host = (headers.get("host") or [""])[0]
        if not self.hosts.allows(host):
            return self.hosts.refusal(host)
        origin = (headers.get("origin") or [None])[0]
        if origin is not None and not (origin.startswith("http://") and self.hosts.allows(origin[len("http://"):])):
            return f"Origin {short(origin)!r} is not this server"
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = (headers.get("x-gankit-token") or [""])[0] or (query.get("token") or [""])[0]
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return "missing or wrong token (use the URL gankit playground printed)"
        return None


class BodyTooLarge(PlaygroundError):
    """A request body over MAX_BODY: answered 413 before the rest of it is read."""


def error(exc: BaseException, status: int = 400) -> JSONResponse:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > MESSAGE_CHARS:
        text = text[:MESSAGE_CHARS] + "..."
    return JSONResponse({"error": text}, status_code=status)


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests lists and dicts (iterative: the check must not recurse itself)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, (list, dict)):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                todo.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


async def read_body(request: Request) -> bytes:
    """The request's body, read chunk by chunk up to MAX_BODY (chunked bodies declare no length)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise BodyTooLarge(f"the request body has {int(declared):,} bytes; the most is {MAX_BODY:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge(f"the request body is larger than {MAX_BODY:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(session: Session, token: str, hosts: set[str] | Hosts) -> Guard:
    """The ASGI app of ``session``; ``hosts``: the Host header values that name this server."""

    async def run(name: str, *args: Any) -> Any:
        return await asyncio.wrap_future(session.call(name, *args))

    async def body(request: Request) -> dict[str, Any]:
        raw = await read_body(request)
        try:
            data = json.loads(raw)
        except RecursionError:
            data = None  # nested past json's own limit: refused just below
            depth = MAX_JSON_DEPTH + 1
        except ValueError:  # not JSON, or not UTF-8
            raise PlaygroundError("the request body must be a JSON object") from None
        else:
            depth = json_depth(data)
        if depth > MAX_JSON_DEPTH:
            raise PlaygroundError(f"the request body nests more than {MAX_JSON_DEPTH} levels deep")
        if not isinstance(data, dict):
            raise PlaygroundError("the request body must be a JSON object")
        return data

    def command(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except BodyTooLarge as exc:
                return error(exc, 413)
            except Stopping as exc:
                return error(exc, 503)
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
    if not isinstance(hosts, Hosts):
        hosts = Hosts(frozenset(h.lower() for h in hosts))
    return Guard(Starlette(routes=routes), token, hosts)


LOOPBACK = ("127.0.0.1", "localhost", "::1")
ALL_INTERFACES = ("0.0.0.0", "::", "")
HOST_NAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?")


def allowed_name(name: str) -> str:
    """An --allow-host value, checked: a host name or an IP address alone (no port, no scheme)."""
    bare = name.strip().lower()
    if is_ip(bare) or (len(bare) <= 253 and HOST_NAME.fullmatch(bare)):
        return bare
    raise PlaygroundError(f"--allow-host: {short(name, 80)!r} is not a host name (give the name alone, "
                          "without http:// or a port)")


def local_hosts(host: str, port: int, allow: Sequence[str] = ()) -> Hosts:
    """What a server bound to ``host``:``port`` answers to: its address (loopback: every loopback name;
    all interfaces: any IP address, localhost and this machine's name) and the ``allow`` names."""
    names = {host.lower(), *(allowed_name(a) for a in allow)}
    if host in LOOPBACK or host in ALL_INTERFACES:
        names |= set(LOOPBACK)
    if host in ALL_INTERFACES:
        names.add(socket.gethostname().lower())
    names.discard("")
    exact = {f"[{n}]" if ":" in n else n for n in names}
    exact = {f"{n}:{port}" for n in exact} | ({*exact} if port == 80 else set())
    return Hosts(frozenset(exact), port, any_ip=host in ALL_INTERFACES)


def bind_problem(exc: OSError, host: str, port: int) -> str:
    """Why ``host``:``port`` cannot be listened on, naming the option to change."""
    where = f"cannot listen on {host}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"{where}: unknown host name {host!r} (choose another --host)"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: the port is already in use (choose another --port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {host} is not an address of this machine (choose another --host)"
    if exc.errno == errno.EACCES and 0 < port < 1024:
        return f"{where}: ports below 1024 need administrator rights (choose another --port)"
    return f"{where}: {exc.strerror or exc}"


class Server(uvicorn.Server):
    """uvicorn's server, stopping the game first on Ctrl+C / SIGTERM: a command waiting for a step is
    answered at once (503) and the step abandoned, so the graceful shutdown has nothing to wait for.
    The signal is handled, not re-raised once the server is down: the process ends cleanly."""

    def __init__(self, config: uvicorn.Config, session: Session) -> None:
        super().__init__(config)
        self.session = session

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.session.stop()
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl+C: stop waiting for open connections
        else:
            self.should_exit = True


class Playground:
    """A running playground: the session, its server and the URL with the token. ``serve`` blocks;
    ``start_in_thread`` (tests, the benchmark) returns once the server listens."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, configs_dir: Path | None = None,
                 fps: float = 15.0, allow_hosts: Sequence[str] = ()) -> None:
        if not 0 <= port <= MAX_PORT:  # bind() would raise OverflowError
            raise PlaygroundError(f"--port must be from 0 to {MAX_PORT} (0: any free port), got {port}")
        for name in allow_hosts:
            allowed_name(name)  # before binding: a typo is one message, not a server that refuses its name
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise PlaygroundError(bind_problem(exc, host, port)) from None
        self.sock.listen(128)  # a browser opening the printed URL before uvicorn runs waits, not refused
        self.port = self.sock.getsockname()[1]
        self.token = secrets.token_urlsafe(18)
        self.session = Session(configs_dir, fps=fps)
        # all interfaces: this machine reaches it at the loopback address (0.0.0.0 is not a destination)
        reach = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
        shown = f"[{reach}]" if ":" in reach else reach
        self.url = f"http://{shown}:{self.port}/?token={self.token}"
        self.app = create_app(self.session, self.token, local_hosts(host, self.port, allow_hosts))
        self.server = Server(uvicorn.Config(self.app, log_level="warning", ws="websockets-sansio", lifespan="off",
                                            timeout_graceful_shutdown=SHUTDOWN_SECONDS), self.session)
        self._thread: threading.Thread | None = None

    def serve(self) -> None:
        self.session.start()
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.session.stop()
            with signals_held():  # another Ctrl+C waits until the worker has let go of torch (no SIGABRT)
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
        self.session.stop()
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.session.close()


def serve(host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False,
          configs_dir: Path | None = None, allow_hosts: Sequence[str] = (), fragment: str = "") -> None:
    """``fragment``: page settings the page applies on load (``key=json&...``, a lesson's ready game)."""
    playground = Playground(host, port, configs_dir, allow_hosts=allow_hosts)
    if fragment:
        playground.url += f"#{fragment}"
    if host not in LOOPBACK:
        print(f"gankit: warning: listening on {host or 'all interfaces'}, not 127.0.0.1: anyone who can reach "
              "it and has the URL can drive this machine's CPU", file=sys.stderr)
    if host in ALL_INTERFACES:
        print(f"gankit: other machines reach it at http://<this machine's IP address>:{playground.port}/?token="
              f"{playground.token} (by name: {socket.gethostname()}, or names given with --allow-host)",
              file=sys.stderr)
    print(f"gankit: playground at {playground.url}", flush=True)
    print("gankit: press Ctrl+C to stop", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(playground.url)
    playground.serve()
    print("gankit: playground stopped", file=sys.stderr)
