"""WSGI (PEP 3333): serve an existing WSGI application (Flask, Django, ...) on any astra runtime.

``WSGIAdapter(app)`` is an ordinary blocking astra handler: on the thread
runtimes it runs on the request's thread, on asyncio and trio on the worker
pool, and it speaks HTTP/1.1 and HTTP/2 alike because astra's ``Request`` and
``Response`` already do. The pieces, one concern each:

- :mod:`.environ`: the ``environ`` dict, built from a :class:`~astra.Request`;
- :mod:`.streams`: ``wsgi.input``, ``wsgi.errors`` and ``wsgi.file_wrapper``;
- :mod:`.fields`: checking what the application passes to ``start_response``;
- :mod:`.exchange`: ``start_response``, ``write`` and turning the application's
  iterable into an astra :class:`~astra.Response`;
- :mod:`.adapter`: the handler that ties them together.
"""

from .adapter import WSGIAdapter
from .fields import WSGIError
from .streams import FileWrapper

__all__ = ["FileWrapper", "WSGIAdapter", "WSGIError"]
