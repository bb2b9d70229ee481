"""The ``db`` workload: TechEmpower's "fortunes" on a real PostgreSQL and Jinja2.

Per request: fetch every row of the ``fortune`` table, add one row, sort by
message, render an HTML table with a Jinja2 template (autoescaped: one
fortune is a ``<script>`` tag). The blocking form uses psycopg's blocking
API with a connection pool; the ``async def`` form uses its asyncio API,
so it runs on the asyncio runtime only (trio, having no PostgreSQL driver of
its own, serves the blocking form on its worker pool).

Configured by the environment the harness sets: ``ASTRA_DB_DSN`` (required)
and ``ASTRA_DB_POOL`` (connections per server process, default 30: the
default worker pool of a 2-CPU machine, so no worker waits for a connection).
"""

from __future__ import annotations

import os
import threading

import jinja2

from astra import Response

DSN = os.environ.get("ASTRA_DB_DSN", "")
POOL_SIZE = int(os.environ.get("ASTRA_DB_POOL", "30"))
EXTRA = (0, "Additional fortune added at request time.")
QUERY = "SELECT id, message FROM fortune"

TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
    "<tr><th>id</th><th>message</th></tr>"
    "{% for id, message in fortunes %}<tr><td>{{ id }}</td><td>{{ message }}</td></tr>{% endfor %}"
    "</table></body></html>"
)

_lock = threading.Lock()
_pool = None
_apool = None


def _render(rows: list[tuple[int, str]]) -> Response:
    rows.append(EXTRA)
    rows.sort(key=lambda row: row[1])
    return Response(TEMPLATE.render(fortunes=rows), content_type="text/html; charset=utf-8")


def fortunes(request):
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:
                from psycopg_pool import ConnectionPool

                _pool = ConnectionPool(DSN, min_size=1, max_size=POOL_SIZE, open=True)
    with _pool.connection() as conn:
        rows = conn.execute(QUERY).fetchall()
    return _render(rows)


async def fortunes_async(request):
    global _apool
    if _apool is None:
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(DSN, min_size=1, max_size=POOL_SIZE, open=False)
        await pool.open()
        if _apool is None:
            _apool = pool
        else:
            await pool.close()
    async with _apool.connection() as conn:
        cursor = await conn.execute(QUERY)
        rows = await cursor.fetchall()
    return _render(rows)
