#!/usr/bin/env python3
"""Writes the seed corpus of streaming_map_fuzzer into tests/fuzz/corpus/streaming_map/.

One seed per configuration family (see the input format in streaming_map_fuzzer.cpp), each
with a step sequence that reaches the family's rare paths: history interleaved with
mutations, lag and recovery through the removal log, kReset relists, LaggedError and
resume, stream_from inside and beyond the ring, expirations, the 32-bit timestamp wrap.
Deterministic: rerunning it rewrites the same files.
Usage: tests/fuzz/gen_streaming_map_seeds.py
"""
import os
import random

# Opcodes (the opcode byte % 16 in Fuzz::step()).
INSERT, REMOVE, GET, OPEN, PULL, CATCH_UP, DESTROY, RESUME, ADVANCE, BURST, GET_ALL = (
    0, 3, 4, 5, 7, 10, 11, 12, 13, 14, 15)
ARGS = {INSERT: 1, REMOVE: 1, GET: 1, OPEN: 3, PULL: 2, CATCH_UP: 1, DESTROY: 1, RESUME: 1, ADVANCE: 1,
        BURST: 1, GET_ALL: 0}
# OPEN kinds (second argument % 4).
STREAM, STREAM_N, STREAM_FROM, BATCHES = 0, 1, 2, 3
RING = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 8: 5, 16: 6}
BATCH = {1: 0, 2: 1, 3: 2, 5: 3, 8: 4, 1024: 5}
# Byte 2 flags.
KERROR, NO_REMOVALS, EXPIRATIONS, MARK, TTL, TS32 = 1, 2, 4, 8, 16, 32
INITIAL_0, INITIAL_WRAP, INITIAL_1000, INITIAL_WRAP_3 = 0, 64, 128, 192


def config(ring, batch, flags=0, keys=6, ttl=3, recovery_end=False):
    return bytes([RING[ring], BATCH[batch], flags, (keys - 1) | ((ttl - 1) << 4) | (0x80 if recovery_end else 0)])


def mixed(rng, n, weights):
    ops = list(weights)
    out = bytearray()
    for _ in range(n):
        op = rng.choices(ops, [weights[o] for o in ops])[0]
        out.append(op)
        for _ in range(ARGS[op]):
            out.append(rng.randrange(256))
    return bytes(out)


BASIC = {INSERT: 6, REMOVE: 2, GET: 1, OPEN: 2, PULL: 5, CATCH_UP: 1, DESTROY: 1, RESUME: 1, BURST: 1,
         GET_ALL: 1}
LAGGY = {INSERT: 4, REMOVE: 2, OPEN: 2, PULL: 4, CATCH_UP: 2, RESUME: 2, BURST: 3, DESTROY: 1}
TIMED = {INSERT: 5, REMOVE: 1, GET: 1, OPEN: 2, PULL: 4, CATCH_UP: 2, RESUME: 1, ADVANCE: 3, BURST: 1}


def seeds():
    rng = random.Random(20261122)
    yield "basic-ring-16", config(16, 1024) + mixed(rng, 150, BASIC)
    yield "history-batches-of-1", config(16, 1, keys=12) + bytes(
        [BURST, 0xB0, OPEN, 0, STREAM, 0, OPEN, 1, BATCHES, 3, PULL, 0, 2, INSERT, 3, REMOVE, 5, PULL, 1, 1,
         PULL, 0, 7, INSERT, 7, PULL, 1, 7, CATCH_UP, 1]) + mixed(rng, 100, BASIC)
    yield "lag-resync-ring-2", config(2, 2) + mixed(rng, 200, LAGGY)
    yield "lag-resync-ring-1", config(1, 3, keys=4) + mixed(rng, 200, LAGGY)
    yield "lag-reset-ring-4", config(4, 5, keys=8) + bytes(
        [BURST, 0x0F, OPEN, 0, STREAM, 0, PULL, 0, 3, BURST, 0x4F, BURST, 0x2F, PULL, 0, 7, CATCH_UP, 3,
         OPEN, 1, STREAM_FROM, 4, CATCH_UP, 0]) + mixed(rng, 150, LAGGY)
    yield "kerror-resume", config(2, 1024, KERROR) + mixed(rng, 200, LAGGY)
    yield "kerror-stream-from", config(4, 2, KERROR | MARK) + bytes(
        [BURST, 0x0F, BURST, 0x1F, OPEN, 2, STREAM_FROM, 3, OPEN, 3, STREAM_FROM, 4, PULL, 2, 4, PULL, 3, 4,
         BURST, 0x08, PULL, 2, 7, RESUME, 2, CATCH_UP, 0]) + mixed(rng, 150, LAGGY)
    yield "no-removals", config(2, 3, NO_REMOVALS, keys=4) + mixed(rng, 200, LAGGY)
    yield "snapshot-end-marker", config(8, 2, MARK) + mixed(rng, 150, BASIC)
    yield "stream-n", config(4, 1024) + bytes(
        [INSERT, 1, INSERT, 2, OPEN, 0, STREAM_N, 0, OPEN, 1, STREAM_N, 1, OPEN, 2, STREAM_N, 5, PULL, 0, 3,
         PULL, 1, 3, INSERT, 3, PULL, 2, 7, CATCH_UP, 0]) + mixed(rng, 100, BASIC)
    yield "ttl-expirations", config(4, 2, TTL | EXPIRATIONS, keys=6, ttl=2) + mixed(rng, 200, TIMED)
    yield "ttl-silent", config(2, 1024, TTL, keys=5, ttl=1) + mixed(rng, 200, TIMED)
    yield "wrap-32-bit", config(2, 1, TS32 | INITIAL_WRAP | TTL | EXPIRATIONS, keys=6) + mixed(rng, 250, LAGGY)
    yield "wrap-32-bit-kerror", config(8, 3, TS32 | INITIAL_WRAP_3 | KERROR) + mixed(rng, 200, LAGGY)
    yield "initial-1000", config(4, 8, INITIAL_1000 | MARK | NO_REMOVALS) + mixed(rng, 150, BASIC)
    # mark_recovery_end (byte 3, bit 7): every recovery ends with a kSnapshotEnd at its cutoff.
    yield "recovery-end-resync", config(2, 2, keys=5, recovery_end=True) + mixed(rng, 200, LAGGY)
    yield "recovery-end-reset-ring-1", config(1, 3, keys=8, recovery_end=True) + bytes(
        [BURST, 0x0F, OPEN, 0, STREAM, 0, PULL, 0, 3, BURST, 0x4F, BURST, 0x2F, PULL, 0, 7, CATCH_UP, 3,
         OPEN, 1, STREAM_FROM, 4, PULL, 1, 7, CATCH_UP, 0]) + mixed(rng, 150, LAGGY)
    yield "recovery-end-kerror-both-markers", config(4, 1024, KERROR | MARK, recovery_end=True) + mixed(
        rng, 200, LAGGY)
    yield "recovery-end-no-removals", config(2, 5, NO_REMOVALS, keys=4, recovery_end=True) + mixed(rng, 200, LAGGY)
    yield "recovery-end-wrap-ttl", config(2, 1, TS32 | INITIAL_WRAP | TTL | EXPIRATIONS, keys=6,
                                          recovery_end=True) + mixed(rng, 250, TIMED)
    for which, name in enumerate(["ring-capacity", "snapshot-batch", "ttl", "tti"]):
        yield "invalid-" + name, bytes([7 | which << 3, 0, 0, 0])


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "streaming_map")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
