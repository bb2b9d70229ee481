"""What a connection's deadline means when the server's sweeper finds it has passed.

A connection keeps one ``deadline`` and its kind instead of a cancel scope
per read or write (see ``AsyncConnection``); these are the kinds.
"""

HEAD = "head"  # the request head did not arrive in time: 408, close
IDLE = "idle"  # keep-alive idle timeout: close quietly
BODY = "body"  # the request body stalled: 408 if no response has started, close
SEND = "send"  # the client stopped reading our response: close
