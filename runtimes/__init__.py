"""Runtimes: the interchangeable parts that move bytes between sockets and protocol connections.

Each runtime is one module (``threaded``, ...) that never imports another;
``common`` holds what they share. ``astra`` picks one by name.
"""
