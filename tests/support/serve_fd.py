"""Serve an ASGI app with uvicorn on an inherited, already-listening TCP socket.

``uvicorn --fd N`` wraps the descriptor as a Unix socket, so asyncio never sets TCP_NODELAY on
its connections and every small response waits ~40 ms for a delayed ACK. Handing uvicorn a
``socket.socket(fileno=N)`` keeps it TCP.

    python -m tests.support.serve_fd functions.gateway.app:app FD
"""

from __future__ import annotations

import socket
import sys

import uvicorn


def main() -> None:
    """Run APP on the listening socket FD until terminated."""
    app, fd = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
