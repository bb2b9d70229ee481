"""ASGI apps for tests/test_asgi.py, written against the spec alone (no framework), plus
small Starlette and FastAPI apps.

Apps that report what happened to them are made by factories returning the
app and a dict it fills: the server runs in another thread, so the test
polls that dict (``conftest.wait_for``).

No ``from __future__ import annotations`` here: FastAPI reads the
annotations of endpoints defined inside a function, which it could not
resolve from strings.
"""

import json

import anyio

from astra import ASGIHandler

CHUNK = 64 * 1024


async def _lifespan(scope, receive, send, state: dict | None = None, events: list | None = None) -> None:
    """A lifespan that completes startup (filling ``state``) and shutdown, recording both in ``events``."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"].update(state or {})
            if events is not None:
                events.append("startup")
            await send({"type": "lifespan.startup.complete"})
        else:
            if events is not None:
                events.append("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive) -> tuple[bytes, int]:
    """The whole request body and the number of http.request events it came in."""
    parts, events = [], 0
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        events += 1
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts), events


async def _send_json(send, data: object, status: int = 200) -> None:
    body = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def scope_echo(scope, receive, send) -> None:
    """The request's scope as JSON; ``/mutate`` also writes to its copy of the lifespan state."""
    if scope["type"] == "lifespan":
        return await _lifespan(scope, receive, send, state={"token": "from-lifespan"})
    if scope["path"].endswith("/mutate"):
        scope["state"]["token"] = "mutated"
    await _read_body(receive)
    await _send_json(send, {
        "type": scope["type"], "asgi": scope["asgi"], "http_version": scope["http_version"],
        "method": scope["method"], "scheme": scope["scheme"], "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"), "query_string": scope["query_string"].decode("latin-1"),
        "root_path": scope["root_path"], "client": list(scope["client"]), "server": list(scope["server"]),
        "headers": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in scope["headers"]],
        "state": scope["state"],
    })


async def body_and_stream(scope, receive, send) -> None:
    """Reads the body through receive(), answers in several body messages.

    ``/late-read``: starts the response, then reads the body (the reads then
    happen while the response streams).

    ``/head``: a HEAD-style answer, a declared length and an empty body (as
    Starlette's FileResponse sends for HEAD), the full body for GET.
    """
    if scope["type"] == "lifespan":
        return await _lifespan(scope, receive, send)
    if scope["path"] == "/late-read":  # the response starts before the body is read
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"length ", "more_body": True})
        body, _ = await _read_body(receive)
        await send({"type": "http.response.body", "body": b"%d" % len(body)})
        return
    body, events = await _read_body(receive)
    if scope["path"] == "/head":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1234")]})
        payload = b"" if scope["method"] == "HEAD" else b"h" * 1234
        await send({"type": "http.response.body", "body": payload, "more_body": False})
        return
    chunks = int(scope["query_string"].decode() or "0")
    await send({"type": "http.response.start", "status": 201, "headers": [(b"x-events", b"%d" % events)]})
    await send({"type": "http.response.body", "body": b"%d:" % len(body) + body[:16], "more_body": True})
    for i in range(chunks):
        await anyio.sleep(0)  # each message its own trip round the loop
        await send({"type": "http.response.body", "body": b";chunk-%d" % i, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def flood(total: int) -> tuple[object, dict]:
    """An app streaming ``total`` bytes as fast as send() lets it; it records how far it got and how it ended."""
    record = {"sent": 0, "outcome": None}

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return await _lifespan(scope, receive, send)
        chunk = b"x" * CHUNK
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while record["sent"] < total:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                record["sent"] += len(chunk)
            await send({"type": "http.response.body", "body": b""})
            record["outcome"] = "finished"
        except OSError as exc:
            record["outcome"] = type(exc).__name__
            raise  # as frameworks do: the server must not log a client's going as the app's failure

    return app, record


def watcher() -> tuple[object, dict]:
    """Streams a chunk every 20 ms while a second task waits in receive() for http.disconnect."""
    record = {"disconnect": False, "send_error": None, "chunks": 0, "done": False}

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return await _lifespan(scope, receive, send)
        await _read_body(receive)

        async def wait_for_disconnect():
            while (await receive())["type"] != "http.disconnect":
                pass
            record["disconnect"] = True

        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(wait_for_disconnect)
                try:
                    for _ in range(500):  # 10 s at most
                        await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
                        record["chunks"] += 1
                        await anyio.sleep(0.02)
                except OSError as exc:
                    record["send_error"] = type(exc).__name__
                    with anyio.fail_after(5):
                        while not record["disconnect"]:
                            await anyio.sleep(0.01)
        finally:
            record["done"] = True

    return app, record


async def misbehaving(scope, receive, send) -> None:
    """Each path fails in its own way."""
    if scope["type"] == "lifespan":
        return await _lifespan(scope, receive, send)
    path = scope["path"]
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
    if path == "/ok":
        await send(start)
        await send({"type": "http.response.body", "body": b"ok"})
    elif path == "/raise-before-start":
        raise RuntimeError("the app failed before its response")
    elif path == "/no-start":
        return
    elif path == "/raise-mid-body":
        await send(start)
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        await anyio.sleep(0.01)
        raise RuntimeError("the app failed mid-body")
    elif path == "/stop-mid-body":
        await send(start)
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    elif path == "/raise-after-response":
        await send(start)
        await send({"type": "http.response.body", "body": b"complete"})
        raise RuntimeError("the app failed after its response")
    elif path == "/header-injection":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1\r\nx-injected: 1")]})
        await send({"type": "http.response.body", "body": b"never"})
    elif path == "/status-not-int":
        await send({"type": "http.response.start", "status": "200", "headers": []})
    elif path == "/body-before-start":
        await send({"type": "http.response.body", "body": b"no head"})
    elif path == "/short-content-length":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
        await anyio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"only a few bytes"})
    elif path == "/read-all":
        body, _ = await _read_body_or_disconnect(receive)
        await send(start)
        await send({"type": "http.response.body", "body": b"%d" % len(body)})


async def _read_body_or_disconnect(receive) -> tuple[bytes, bool]:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(parts), True
        parts.append(message["body"])
        if not message.get("more_body"):
            return b"".join(parts), False


def body_reader() -> tuple[object, dict]:
    """Reads the body; records whether it ended with http.disconnect; answers 200 (or tries to)."""
    record = {"disconnected": None, "received": 0}

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return await _lifespan(scope, receive, send)
        body, disconnected = await _read_body_or_disconnect(receive)
        record["received"] = len(body)
        record["disconnected"] = disconnected
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read %d" % len(body)})

    return app, record


def lifespan_recorder() -> tuple[object, list]:
    """Records startup, each request (``/slow`` takes 0.3 s) and shutdown, in order."""
    events: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return await _lifespan(scope, receive, send, state={"greeting": "hello"}, events=events)
        events.append(f"request {scope['path']}")
        if scope["path"] == "/slow":
            await anyio.sleep(0.3)
            events.append("slow done")
        body = scope["state"]["greeting"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app, events


async def startup_fails(scope, receive, send) -> None:
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "no database"})


async def lifespan_unsupported(scope, receive, send) -> None:
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope {scope['type']!r}")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"no lifespan here"})


#: For the CLI test: ``python -m astra tests.asgi_apps:failing_startup`` must exit non-zero.
failing_startup = ASGIHandler(startup_fails)


def starlette_app():
    """Routes, JSON, a streamed response, a body POST, lifespan state; anything else is Starlette's 404."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    @asynccontextmanager
    async def lifespan(app):
        yield {"greeting": "hello from lifespan"}

    async def home(request):
        return PlainTextResponse(request.state.greeting)

    async def as_json(request):
        return JSONResponse({"path": request.url.path, "query": dict(request.query_params),
                             "agent": request.headers.get("user-agent", "")})

    async def stream(request):
        async def numbers():
            for i in range(5):
                await anyio.sleep(0)
                yield f"{i}\n"
        return StreamingResponse(numbers(), media_type="text/plain")

    async def echo(request):
        body = await request.body()
        return JSONResponse({"length": len(body), "json": json.loads(body)})

    return Starlette(routes=[Route("/", home), Route("/json", as_json), Route("/stream", stream),
                             Route("/echo", echo, methods=["POST"])], lifespan=lifespan)


def fastapi_app():
    """A path parameter and a pydantic body."""
    from fastapi import FastAPI
    from pydantic import BaseModel

    class Item(BaseModel):
        name: str
        price: float

    app = FastAPI()

    @app.post("/items/{item_id}")
    async def create(item_id: int, item: Item) -> dict:
        return {"id": item_id, "name": item.name, "total": item.price * 2}

    @app.get("/items/{item_id}")
    def read(item_id: int) -> dict:  # a plain def: FastAPI runs it on a thread of anyio's
        return {"id": item_id}

    return app
