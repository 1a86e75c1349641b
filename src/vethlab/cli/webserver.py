"""`vethlab web`: the live page of a lab, served by aiohttp.

Why aiohttp: a well-kept server that does server-sent events and a thread-pool
bridge out of the box, in one package (Starlette would need uvicorn beside it).
It is imported only by this command.

What the server does:
* `/lab/NAME` — the page (webpage.py), laid out once by Graphviz;
* `/lab/NAME/events` — server-sent events, fed by the same netlink listener as
  `vethlab watch` (one thread per lab, shared by every open page): the page is
  pushed link changes, it never polls the lab;
* `/lab/NAME/status?node=N` — the `status` of the nodes on screen (counters of the
  selected node or link, refreshed by the page once a second);
* `POST /lab/NAME/action` — link down/up/flap, node isolate/restore.  Only with the
  token printed at start-up, sent in the `X-Vethlab-Token` header: a custom header
  cannot be sent cross-origin without a CORS preflight this server never grants,
  so another web page in the user's browser cannot act on the lab either.

It listens on 127.0.0.1 unless `--bind` says otherwise, and then (only then)
accepts any Host header; on loopback, a Host other than the loopback names is
refused, which stops DNS-rebinding pages from reading the lab.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import threading
from collections.abc import Callable
from typing import Any

from ..errors import UsageError, VethlabError
from ..state import store

ACTIONS = ("link-down", "link-up", "link-flap", "node-isolate", "node-restore")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def picture_of(lab: str) -> Any:
    """The lab's picture: from its file when it is still there, else from its state."""
    from ..model import graph
    from ..ops.inspect import lab_state

    state = lab_state(lab)
    if state.file:
        try:
            from ..state.speccache import load_lab

            return graph.from_spec(load_lab(state.file), state.allocation)
        except VethlabError:
            pass
    return graph.from_state(state)


def status_of(lab: str, nodes: list[str] | None = None) -> dict[str, Any]:
    """`status` of the lab, or of some of its nodes only."""
    from ..ops.inspect import lab_status

    return lab_status(lab, nodes=nodes or None)


def run_action(lab: str, action: str, target: str) -> None:
    """Carry out one action from the page (the same verbs as the CLI's)."""
    from ..ops import faults

    def quiet(_line: str) -> None:
        pass

    if action in ("link-down", "link-up", "link-flap"):
        if target.count(":") != 1:
            raise UsageError(f"expected NODE:IFNAME, not {target!r}")
        node, ifname = target.split(":")
        if action == "link-flap":
            faults.flap(lab, node, ifname, down=1.0, up=0.0, count=1, emit=quiet)
        else:
            faults.set_link_state(lab, node, ifname, up=action == "link-up")
    elif action in ("node-isolate", "node-restore"):
        faults.isolate(lab, target, up=action == "node-restore", emit=quiet)
    else:
        raise UsageError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")


class EventHub:
    """One `watch` thread per lab, fanned out to every open page's queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.ready: set[str] = set()  # labs whose listener has read the state it reports changes from
        self.stopping = threading.Event()

    def subscribe(self, lab: str) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
        self.queues.setdefault(lab, set()).add(queue)
        if lab in self.ready:
            queue.put_nowait({"event": "ready"})
        if lab not in self.threads or not self.threads[lab].is_alive():
            thread = threading.Thread(target=self._listen, args=(lab,), name=f"vethlab-web-{lab}", daemon=True)
            self.threads[lab] = thread
            thread.start()
        return queue

    def unsubscribe(self, lab: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.queues.get(lab, set()).discard(queue)

    def _listen(self, lab: str) -> None:
        from ..ops.watch import watch

        def emit(event: dict[str, Any]) -> None:
            self.loop.call_soon_threadsafe(self._publish, lab, event)

        def ready() -> None:
            self.loop.call_soon_threadsafe(self._ready, lab)

        try:
            watch(lab, emit, stop=self.stopping.is_set, ready=ready)
        except Exception as exc:  # the page shows "disconnected"; the server stays up
            self.loop.call_soon_threadsafe(self._publish, lab, {"event": "error", "error": str(exc)})

    def _ready(self, lab: str) -> None:
        """From now on every change is pushed: a page reads the lab's status (again)
        on this, so nothing that changed while the listener started is missed."""
        self.ready.add(lab)
        self._publish(lab, {"event": "ready"})

    def _publish(self, lab: str, event: dict[str, Any]) -> None:
        for queue in list(self.queues.get(lab, ())):
            if not queue.full():
                queue.put_nowait(event)


def make_app(token: str, only_lab: str | None, loopback: bool) -> Any:
    from aiohttp import web

    routes = web.RouteTableDef()

    def lab_of(request: web.Request) -> str:
        name = request.match_info["lab"]
        if name not in store.labs() or (only_lab and name != only_lab):
            raise web.HTTPNotFound(text=f"no lab {name}")
        return name

    async def blocking(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    @web.middleware
    async def host_check(request: web.Request, handler: Callable[[web.Request], Any]) -> Any:
        host = (request.host or "").rsplit(":", 1)[0] if not (request.host or "").startswith("[") else \
            (request.host or "").split("]")[0] + "]"
        if loopback and host not in LOOPBACK_NAMES:
            raise web.HTTPForbidden(text="this server answers on the loopback names only (see --bind)")
        return await handler(request)

    @routes.get("/")
    async def index(request: web.Request) -> web.StreamResponse:
        labs = [only_lab] if only_lab else store.labs()
        query = ("?" + request.query_string) if request.query_string else ""
        if len(labs) == 1:
            raise web.HTTPFound(f"/lab/{labs[0]}{query}")
        items = "".join(f'<li><a href="/lab/{name}{query}">{name}</a></li>' for name in labs)
        return web.Response(text=f"<!doctype html><title>vethlab labs</title><h1>labs</h1><ul>{items or 'none'}</ul>",
                            content_type="text/html")

    @routes.get("/lab/{lab}")
    async def page(request: web.Request) -> web.Response:
        from ..model.webpage import page as render

        lab = lab_of(request)
        pages = request.app["pages"]
        if lab not in pages:
            pages[lab] = await blocking(lambda: render(picture_of(lab), live=True))
        return web.Response(text=pages[lab], content_type="text/html")

    @routes.get("/lab/{lab}/status")
    async def status(request: web.Request) -> web.Response:
        lab = lab_of(request)
        try:
            report = await blocking(status_of, lab, request.query.getall("node", []))
        except VethlabError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(report)

    @routes.get("/lab/{lab}/events")
    async def events(request: web.Request) -> web.StreamResponse:
        lab = lab_of(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        hub: EventHub = request.app["hub"]
        queue = hub.subscribe(lab)
        task = asyncio.current_task()
        if task is not None:
            request.app["streams"].add(task)
        try:
            await response.write(b": connected\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            hub.unsubscribe(lab, queue)
            if task is not None:
                request.app["streams"].discard(task)
        return response

    @routes.post("/lab/{lab}/action")
    async def action(request: web.Request) -> web.Response:
        lab = lab_of(request)
        given = request.headers.get("X-Vethlab-Token", "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return web.json_response({"error": "a valid token is needed (printed when `vethlab web` started)"},
                                     status=403)
        try:
            body = await request.json()
            verb, target = str(body["action"]), str(body["target"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected JSON {\"action\": ..., \"target\": ...}"}, status=400)
        try:
            await blocking(run_action, lab, verb, target)
        except VethlabError as exc:
            return web.json_response({"error": str(exc)}, status=400 if exc.exit_code == 2 else 409)
        return web.json_response({"ok": True, "action": verb, "target": target})

    app = web.Application(middlewares=[host_check])
    app["pages"] = {}
    app["streams"] = set()  # open event streams: ended at shutdown, or it would wait for every browser
    app.add_routes(routes)

    async def start(app: web.Application) -> None:
        app["hub"] = EventHub(asyncio.get_running_loop())

    async def stop(app: web.Application) -> None:
        app["hub"].stopping.set()

    async def end_streams(app: web.Application) -> None:
        for task in list(app["streams"]):
            task.cancel()

    app.on_startup.append(start)
    app.on_shutdown.append(end_streams)
    app.on_cleanup.append(stop)
    return app


def serve(lab: str | None, port: int, bind: str | None, say: Callable[[str], None]) -> None:
    """Serve until interrupted; `say` gets the URL (with the token) once listening."""
    import socket

    from aiohttp import web

    if lab is not None and lab not in store.labs():
        raise UsageError(f"lab {lab} does not exist")
    token = secrets.token_urlsafe(18)
    host = bind or "127.0.0.1"
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)  # before the URL is printed: a client that reads it may connect at once
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    labs = [lab] if lab else store.labs()
    path = f"/lab/{labs[0]}" if len(labs) == 1 else "/"
    say(f"vethlab web: http://{shown}:{actual}{path}?token={token}")
    say(f"actions (link down/up/flap, isolate/restore) need the token: {token}")
    app = make_app(token, lab, loopback=bind is None)
    web.run_app(app, sock=sock, print=None, handle_signals=True, shutdown_timeout=2.0)
