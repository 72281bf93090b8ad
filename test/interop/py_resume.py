#!/usr/bin/env python3
"""Resumes a wiregate subscription across a reconnect, written from docs/protocol.md alone.

Python's `websockets` and `msgpack` (Debian's python3-websockets, python3-msgpack); no wiregate
code. Used by test/interop-resume.test.ts:

    py_resume.py URL TOPIC FIRST LAST

1. connects (subprotocol wiregate.v1), sends SUBSCRIBE [1, 1, TOPIC] and keeps the position of
   the RESULT [16, 1, {seq, epoch}] (TOPIC keeps history, so the RESULT carries one);
2. processes MESSAGEs until it has processed seq FIRST, then closes the connection;
3. waits for a line on stdin (the test publishes meanwhile: messages this client misses);
4. reconnects and resumes with SUBSCRIBE [1, 1, TOPIC, {"since": {"seq": seq, "epoch": epoch}}];
5. processes MESSAGEs until it has processed seq LAST, then exits 0.

Per docs/protocol.md section 10 ("What a client keeps"): `epoch` from the SUBSCRIBE RESULT; `seq`
from a RESULT without `recovered` or with `recovered: false` (resynchronise), kept as it is after
`recovered: true`, then from every processed MESSAGE without flags or with flags 2 (recovered); such
a MESSAGE at or below the stored seq is a duplicate and is ignored; flags 1 (retained) is a state,
applied without touching seq.

One JSON line per event on stdout:
  {"subscribed": {"seq": s, "epoch": e}}           the first RESULT
  {"msg": [seq, payload, flags]}                    every MESSAGE received (flags 0 when absent)
  {"duplicate": seq}                                a MESSAGE ignored by the rule above
  {"disconnected": seq}                             after closing, with the stored seq
  {"resumed": {"seq": s, "epoch": e, "recovered": r}}   the RESULT of the resuming SUBSCRIBE
  {"done": {"seq": s, "duplicates": n}}             after processing seq LAST
Anything unexpected (an ERROR, another message type) is printed as {"unexpected": ...} and ends
the client with exit code 1.
"""
import asyncio
import json
import sys

import msgpack
import websockets

SUBSCRIBE, RESULT, ERROR, MESSAGE = 1, 16, 17, 18
FLAG_RETAINED, FLAG_RECOVERED = 1, 2


def emit(event: dict) -> None:
    print(json.dumps(event), flush=True)


class Stream:
    """What the client keeps for one topic: the position, and what it processed."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.seq = None
        self.epoch = None
        self.duplicates = 0

    def on_result(self, result) -> None:
        # {seq, epoch} or {seq, epoch, recovered}
        self.epoch = result["epoch"]
        if result.get("recovered") is not True:
            self.seq = result["seq"]  # fresh subscription, or resynchronise from the current position
        # recovered: true keeps seq (= since.seq); the replay follows

    def on_message(self, m) -> None:
        seq, payload = m[2], m[3]
        flags = m[4] if len(m) > 4 else 0
        emit({"msg": [seq, payload, flags]})
        if flags == FLAG_RETAINED:
            return  # the topic's retained value: a state, seq stays as it is
        if self.seq is not None and seq <= self.seq:
            self.duplicates += 1
            emit({"duplicate": seq})
            return
        self.seq = seq  # processed (here: printed above)


def messages(frame: bytes):
    """A frame holds one or more msgpack values back to back."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(frame)
    yield from unpacker


def fail(m) -> None:
    emit({"unexpected": repr(m)})
    sys.exit(1)


async def run(ws, stream: Stream, until: int, on_result) -> None:
    """Reads until `stream` has processed seq `until`; `on_result` gets the SUBSCRIBE RESULT."""
    while stream.seq is None or stream.seq < until:
        for m in messages(await ws.recv()):
            if not isinstance(m, list) or not m:
                fail(m)
            if m[0] == RESULT and m[1] == 1 and len(m) == 3 and isinstance(m[2], dict):
                on_result(m[2])
            elif m[0] == MESSAGE and m[1] == stream.topic:
                stream.on_message(m)
            else:
                fail(m)


async def main(url: str, topic: str, first: int, last: int) -> None:
    stream = Stream(topic)

    async with websockets.connect(url, subprotocols=["wiregate.v1"]) as ws:
        await ws.send(msgpack.packb([SUBSCRIBE, 1, topic]))

        def subscribed(result) -> None:
            stream.on_result(result)
            emit({"subscribed": {"seq": result["seq"], "epoch": result["epoch"]}})

        await run(ws, stream, first, subscribed)
    emit({"disconnected": stream.seq})

    sys.stdin.readline()  # the test publishes what this client will have missed, then says go

    async with websockets.connect(url, subprotocols=["wiregate.v1"]) as ws:
        since = {"seq": stream.seq, "epoch": stream.epoch}
        await ws.send(msgpack.packb([SUBSCRIBE, 1, topic, {"since": since}]))

        def resumed(result) -> None:
            stream.on_result(result)
            emit({"resumed": result})

        await run(ws, stream, last, resumed)
    emit({"done": {"seq": stream.seq, "duplicates": stream.duplicates}})


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
