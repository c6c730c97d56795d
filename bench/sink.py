"""An SMTP server that accepts every message and keeps nothing: the fastest possible peer.

Run as its own process (``python -m bench.sink``) so that neither the daemon nor the raw
baseline shares a GIL with it. It prints its port on the first line of stdout, then serves
until stdin closes or it is terminated.
"""

from __future__ import annotations

import asyncio
import sys

from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"


class Discard:
    """aiosmtpd hooks: answer 250 to every message and drop it."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Accept the message without storing it."""
        return "250 OK discarded"


async def serve() -> None:
    """Listen on a free port of 127.0.0.1, print it, and serve until stdin is closed."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Discard(), hostname="sink.test", data_size_limit=0), host=HOST, port=0
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    # The parent closes our stdin (or dies): then stop.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(serve())
