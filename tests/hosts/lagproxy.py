"""A TCP proxy that makes one link slow and lossy, in user space (this kernel has no netem).

    lagproxy.py --listen 127.0.0.1:4222 --to 10.213.77.14:4222 [--min-ms 50 --max-ms 200 --loss 0.05]

It forwards every connection to `--to` and passes bytes through untouched until it gets
SIGUSR1; from then until SIGUSR2, each chunk read in either direction is held for a delay drawn
between `--min-ms` and `--max-ms`, and with probability `--loss` for `--stall-ms` more: a lost
segment on TCP is not a gap in the stream but a wait for its retransmission, so loss is a
stall. Bytes keep their order (a chunk is never released before the one read before it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
import time
from dataclasses import dataclass


@dataclass
class Lag:
    """The fault's settings, whether it is on, and what it did."""

    min_s: float
    max_s: float
    loss: float
    stall_s: float
    on: bool = False
    chunks: int = 0
    stalls: int = 0

    def delay(self) -> float:
        """The hold for one chunk: 0 while off."""
        if not self.on:
            return 0.0
        self.chunks += 1
        held = random.uniform(self.min_s, self.max_s)
        if random.random() < self.loss:
            self.stalls += 1
            held += self.stall_s
        return held


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lag: Lag) -> None:
    """Copies one direction, holding each chunk as `lag` says."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def release() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                writer.close()
                return
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()

    releasing = asyncio.create_task(release())
    last_due = 0.0
    try:
        while chunk := await reader.read(65536):
            last_due = max(last_due, time.monotonic() + lag.delay())
            await queue.put((last_due, chunk))
    except OSError:
        pass
    await queue.put((last_due, b""))
    with contextlib.suppress(OSError):
        await releasing


async def serve(listen: tuple[str, int], to: tuple[str, int], lag: Lag) -> None:
    """Proxies every connection to `listen` to `to`; SIGUSR1 turns the lag on, SIGUSR2 off."""

    async def connection(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*to)
        except OSError as e:
            print(f"lagproxy: cannot reach {to}: {e}", file=sys.stderr, flush=True)
            client_writer.close()
            return
        await asyncio.gather(pump(client_reader, server_writer, lag), pump(server_reader, client_writer, lag))

    loop = asyncio.get_running_loop()

    def switch(on: bool) -> None:
        lag.on = on
        print(f"lagproxy: lag {'on' if on else 'off'} ({lag.chunks} chunks held, {lag.stalls} stalled)", flush=True)

    loop.add_signal_handler(signal.SIGUSR1, switch, True)
    loop.add_signal_handler(signal.SIGUSR2, switch, False)
    server = await asyncio.start_server(connection, *listen)
    print(f"lagproxy: {listen[0]}:{listen[1]} -> {to[0]}:{to[1]}", flush=True)
    async with server:
        await server.serve_forever()


def address(text: str) -> tuple[str, int]:
    """`host:port` as a pair."""
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=address, required=True)
    parser.add_argument("--to", type=address, required=True)
    parser.add_argument("--min-ms", type=float, default=50)
    parser.add_argument("--max-ms", type=float, default=200)
    parser.add_argument("--loss", type=float, default=0.05, help="share of chunks stalled (default 0.05)")
    parser.add_argument("--stall-ms", type=float, default=300, help="a stall's extra hold (default 300)")
    args = parser.parse_args()
    lag = Lag(args.min_ms / 1000, args.max_ms / 1000, args.loss, args.stall_ms / 1000)
    asyncio.run(serve(args.listen, args.to, lag))


if __name__ == "__main__":
    main()
