#!/usr/bin/env python3
"""Writes the seed corpus of broadcast_fuzzer into tests/fuzz/corpus/broadcast/.

One seed per ring shape (see the input format in broadcast_fuzzer.cpp), each with a step
sequence that reaches the shape's rare paths: lag with exact counts, subscribe_from behind
the window, kBlock backpressure, close and drain, a Broadcast destroyed under live
subscribers. Deterministic: rerunning it rewrites the same files.
Usage: tests/fuzz/gen_broadcast_seeds.py
"""
import os
import random

# Opcodes (the opcode byte % 16 in Fuzz::step()).
PUBLISH, SUBSCRIBE, SUBSCRIBE_FROM, TRY_RECV, RECV, RECV_BATCH = 0, 3, 4, 5, 8, 9
DROP, MOVE, RECV_FOR, CLOSE, DESTROY = 11, 12, 13, 14, 15
# Byte 0: capacity index (1, 2, 3, 4, 5, 8, 16), 7 = invalid options.
CAPACITY = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 8: 5, 16: 6}
# Byte 1 flags.
BLOCK, YIELD, SPIN, STRING = 1, 2, 4, 8

ARGS = {PUBLISH: 1, SUBSCRIBE: 1, SUBSCRIBE_FROM: 2, TRY_RECV: 2, RECV: 1, RECV_BATCH: 2, DROP: 1,
        MOVE: 2, RECV_FOR: 2, CLOSE: 0, DESTROY: 1}


def config(capacity, flags=0):
    return bytes([CAPACITY[capacity], flags])


def mixed(rng, n, weights):
    """n random steps; weights maps opcode -> relative frequency."""
    ops = list(weights)
    out = bytearray()
    for _ in range(n):
        op = rng.choices(ops, [weights[o] for o in ops])[0]
        out.append(op)
        for _ in range(ARGS[op]):
            out.append(rng.randrange(256) if op != DESTROY else rng.randrange(1, 256))
    return bytes(out)


LAG = {PUBLISH: 6, SUBSCRIBE: 1, SUBSCRIBE_FROM: 2, TRY_RECV: 5, RECV: 1, RECV_BATCH: 3, DROP: 1, MOVE: 1,
       RECV_FOR: 1}
ENDING = {**LAG, CLOSE: 1}


def seeds():
    rng = random.Random(20261122)
    yield "capacity-1-lag", config(1) + mixed(rng, 150, LAG)
    yield "capacity-2-lag", config(2) + mixed(rng, 150, LAG)
    yield "capacity-3-rounds-to-4", config(3, STRING) + mixed(rng, 200, LAG)
    yield "capacity-8-strings", config(8, STRING | YIELD) + mixed(rng, 200, ENDING)
    yield "capacity-16-spin", config(16, SPIN) + mixed(rng, 250, ENDING)
    yield "block-capacity-2", config(2, BLOCK) + mixed(rng, 200, LAG)
    yield "block-capacity-4-strings", config(4, BLOCK | STRING) + mixed(rng, 200, ENDING)
    # subscribe_from at every choice (0, 1, oldest - 1, oldest, newest, newest + 1, + 2,
    # anywhere) after the ring wrapped, each followed by receives.
    replay = bytearray([PUBLISH, 7, PUBLISH, 5])
    for choice in range(8):
        replay += bytes([SUBSCRIBE_FROM, choice % 6, choice + 8 * rng.randrange(32),
                         TRY_RECV, choice % 6, 3, RECV_BATCH, choice % 6, 5])
    yield "subscribe-from-overwrite", config(4) + bytes(replay)
    yield "subscribe-from-block", config(4, BLOCK) + bytes(replay)
    # Close with messages held: drain, then kClosed; subscribers made after close.
    drain = bytes([SUBSCRIBE, 0, SUBSCRIBE, 1, PUBLISH, 3, CLOSE, PUBLISH, 0, SUBSCRIBE, 2,
                   TRY_RECV, 0, 3, TRY_RECV, 0, 3, RECV_BATCH, 1, 7, RECV_BATCH, 1, 7, TRY_RECV, 2, 1,
                   RECV, 0, RECV_FOR, 1, 0])
    yield "close-drain", config(8) + drain
    yield "close-drain-block", config(2, BLOCK | STRING) + drain
    # The Broadcast destroyed while subscribers live (DESTROY's byte % 8 == 0).
    yield "destroy-under-subscribers", config(2, STRING) + bytes(
        [SUBSCRIBE, 0, SUBSCRIBE_FROM, 1, 0, PUBLISH, 5, DESTROY, 0, TRY_RECV, 0, 3, RECV_BATCH, 1, 4,
         PUBLISH, 1, SUBSCRIBE, 3, TRY_RECV, 1, 3])
    # Empty receives: kEmpty, recv_for(0) -> kTimeout, a stopped recv -> kCancelled.
    yield "empty-timeout-cancelled", config(4) + bytes(
        [SUBSCRIBE, 0, TRY_RECV, 0, 0, RECV_FOR, 0, 0, RECV_FOR, 0, 1, RECV_BATCH, 0, 0, PUBLISH, 0,
         RECV_FOR, 0, 1, RECV_FOR, 0, 0])
    for which, name in enumerate(["capacity-zero", "capacity-huge", "overflow", "wait"]):
        yield "invalid-" + name, bytes([7 | which << 3, 0])


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "broadcast")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
