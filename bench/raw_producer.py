"""The baseline's producer: plain XADD of timestamps, one entry per token, no batching.

Streams start spread evenly over one token interval, as sessions started together
do (their model steps start at scattered moments): in lockstep, all of them would
XADD at the same instant every interval and the baseline would measure that burst's
queueing, not Redis.

Usage: python -m bench.raw_producer <redis url> <streams> <tokens per second> <tokens>
"""

from __future__ import annotations

import asyncio
import sys
import time

from redis.asyncio import Redis


async def produce(redis: Redis, key: str, rate: float, count: int, offset: float) -> None:
    await asyncio.sleep(offset)
    started = time.monotonic()
    for i in range(count):
        await redis.xadd(key, {"chunk": f"{time.time_ns()}|"})
        delay = started + (i + 1) / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def main(url: str, streams: int, rate: float, count: int) -> None:
    redis = Redis.from_url(url)
    await asyncio.gather(
        *(
            produce(redis, f"raw:{i}", rate, count, offset=i / streams / rate)
            for i in range(streams)
        )
    )
    await redis.aclose()


if __name__ == "__main__":
    url, streams, rate, count = sys.argv[1:5]
    asyncio.run(main(url, int(streams), float(rate), int(count)))
