#!/usr/bin/env python3
"""A wiregate subscriber written with Python's `websockets` and `msgpack` (Debian's packages).

Used by test/interop.test.ts: connects with websockets' default permessage-deflate offer,
subscribes to a pattern, prints one JSON line per event on stdout:
  {"ready": true, "extensions": "..."}     once the SUBSCRIBE was acknowledged
  {"msg": [18, topic, seq, payload]}       per delivery (payload must be JSON-representable)
then, after `count` deliveries, sends REQUEST [4, 2, "echo", payload] (payload: argv[4], JSON;
compressed by websockets like any client message) and prints {"echo": reply} before exiting.
"""
import asyncio
import json
import sys

import msgpack
import websockets


async def main(url: str, pattern: str, count: int, echo_payload) -> None:
    async with websockets.connect(url, subprotocols=["wiregate.v1"], max_size=2**24) as ws:
        extensions = ws.response_headers.get("Sec-WebSocket-Extensions", "")
        await ws.send(msgpack.packb([1, 1, pattern]))
        got = 0
        while got < count:
            frame = await ws.recv()
            unpacker = msgpack.Unpacker(raw=False)
            unpacker.feed(frame)
            for m in unpacker:  # a frame may hold several messages (wiregate.v1 allows it)
                if m[0] == 16 and m[1] == 1:
                    print(json.dumps({"ready": True, "extensions": extensions}), flush=True)
                elif m[0] == 18:
                    print(json.dumps({"msg": m}), flush=True)
                    got += 1
                else:
                    print(json.dumps({"unexpected": repr(m)}), flush=True)
        await ws.send(msgpack.packb([4, 2, "echo", echo_payload]))
        while True:
            m = msgpack.unpackb(await ws.recv(), raw=False)
            if m[1] == 2:
                print(json.dumps({"echo": m}), flush=True)
                return


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])))
