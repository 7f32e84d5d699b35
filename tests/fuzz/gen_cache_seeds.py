#!/usr/bin/env python3
"""Writes the seed corpus of cache_fuzzer into tests/fuzz/corpus/cache/.

One seed per configuration family (see the input format in cache_fuzzer.cpp), each with
a step sequence that reaches the family's rare paths. Deterministic: rerunning it
rewrites the same files. Usage: tests/fuzz/gen_cache_seeds.py
"""
import os
import random

# Opcodes (the opcode byte % 20 in Fuzz::step()).
INSERT, GET_ALL, COMPUTE, GET, RESIZE, GET_WITH, TRY_GET_WITH, OPT_GET_WITH = 0, 3, 4, 5, 8, 9, 10, 11
REMOVE, INVALIDATE, INVALIDATE_IF, ALL_OR_FOR_EACH, ADVANCE, RUN, BURST = 12, 13, 14, 15, 16, 18, 19

# Flag bits of config byte 1.
WEIGHER, TTL, TTI, EXPIRY, THROWING_LISTENER = 1, 2, 4, 8, 16
# Time units (config byte 5, bits 0-2).
MS, BUCKET, US, SEC, MIN, NS, LEVEL1 = 0, 1, 2, 3, 4, 5, 6


def config(capacity=None, flags=0, ttl=0, tti=0, keys=8, unit=MS, shards=0):
    cap = 0 if capacity is None else capacity + 1  # 1 = capacity 0
    return bytes([cap, flags, ttl, tti, keys - 1, unit | (shards << 3)])


def mixed(rng, n, weights):
    """n random steps; weights maps opcode -> relative frequency."""
    ops = list(weights)
    out = bytearray()
    for _ in range(n):
        op = rng.choices(ops, [weights[o] for o in ops])[0]
        out.append(op)
        if op in (INSERT, GET, REMOVE, INVALIDATE):
            out.append(rng.randrange(16))
        elif op in (GET_WITH, TRY_GET_WITH, OPT_GET_WITH):
            out += bytes([rng.randrange(16), rng.randrange(4)])
        elif op == GET_ALL:
            n = 1 + rng.randrange(4)
            out.append(n - 1)
            out += bytes(rng.randrange(16) for _ in range(n))
            out += bytes([rng.randrange(4), rng.randrange(16)])  # the loader's mode, the extra key
        elif op == COMPUTE:
            out += bytes([rng.randrange(16), rng.randrange(5)])
        elif op == RESIZE:
            out.append(rng.randrange(16))  # the capacity byte, as in config()
        elif op in (INVALIDATE_IF, ALL_OR_FOR_EACH):
            out.append(rng.randrange(256))
        elif op == ADVANCE:
            out.append(rng.choice([1, 2, 3, 3, 4, 5, 6, 7, 8, 9]))
    return bytes(out)


BASIC = {INSERT: 6, GET: 6, REMOVE: 1, INVALIDATE: 1, RUN: 2}
TIMED = {INSERT: 5, GET: 5, GET_WITH: 1, REMOVE: 1, ADVANCE: 3, RUN: 2, ALL_OR_FOR_EACH: 1}
LOADERS = {GET_WITH: 4, TRY_GET_WITH: 3, OPT_GET_WITH: 3, GET: 2, INSERT: 1, ADVANCE: 1, RUN: 1}
EVERYTHING = {INSERT: 5, GET: 5, GET_WITH: 1, TRY_GET_WITH: 1, OPT_GET_WITH: 1, REMOVE: 1,
              INVALIDATE: 1, INVALIDATE_IF: 1, ALL_OR_FOR_EACH: 1, ADVANCE: 3, RUN: 2}


def seeds():
    rng = random.Random(20261122)
    yield "bounded-entries", config(4, keys=10) + mixed(rng, 120, BASIC)
    yield "bounded-weights", config(6, WEIGHER, keys=12) + mixed(rng, 120, BASIC)
    yield "capacity-zero", config(0, keys=4) + mixed(rng, 40, BASIC)
    yield "capacity-one", config(1, WEIGHER, keys=3) + mixed(rng, 60, EVERYTHING)
    yield "unbounded", config(None, keys=16, shards=3) + mixed(rng, 100, EVERYTHING)
    yield "ttl", config(8, TTL, ttl=5, keys=8) + mixed(rng, 150, TIMED)
    yield "ttl-zero", config(None, TTL, ttl=0, keys=4) + mixed(rng, 40, TIMED)
    yield "tti", config(None, TTI, tti=3, keys=6, unit=BUCKET) + mixed(rng, 150, TIMED)
    yield "ttl-and-tti", config(5, TTL | TTI, ttl=9, tti=4, keys=8, unit=SEC) + mixed(rng, 150, TIMED)
    yield "expiry", config(None, EXPIRY, keys=8, unit=BUCKET) + mixed(rng, 200, TIMED)
    yield "expiry-ns", config(6, EXPIRY | TTL, ttl=7, keys=8, unit=NS) + mixed(rng, 200, TIMED)
    yield "expiry-minutes", config(None, EXPIRY | TTI, tti=12, keys=8, unit=MIN, shards=5) + mixed(rng, 150, TIMED)
    yield "loaders", config(3, TTL, ttl=4, keys=5) + mixed(rng, 150, LOADERS)
    yield "everything", config(9, WEIGHER | TTL | TTI | EXPIRY | THROWING_LISTENER, ttl=11, tti=6,
                               keys=12, unit=LEVEL1, shards=1) + mixed(rng, 300, EVERYTHING)
    yield "throwing-listener", config(3, THROWING_LISTENER, keys=8) + mixed(rng, 100, EVERYTHING)
    # Large clock jumps: every level of the timer wheel and its overflow list.
    jumps = bytearray()
    for j in [10, 11, 12, 13, 14, 15, 15, 3, 9]:
        jumps += bytes([INSERT, j % 8, INSERT, (j + 3) % 8, ADVANCE, j, RUN, GET, j % 8])
    yield "clock-jumps", config(None, EXPIRY | TTL, ttl=16, keys=8, unit=MIN) + bytes(jumps)
    # More than a read-buffer stripe (32) of hits between writes: maintenance runs in get().
    hot = bytearray()
    for k in range(6):
        hot += bytes([INSERT, k])
    for i in range(80):
        hot += bytes([GET, i % 6])
    hot += bytes([INSERT, 7, INSERT, 8, RUN])
    yield "read-buffer-full", config(4, keys=10) + bytes(hot)
    # Bursts long enough for the policy's window adaptation: sliding window (bit 7 clear),
    # then a loop over more keys than the cache holds (bit 7 set).
    yield "bursts", config(14, keys=16) + bytes([BURST, 0x7F, BURST, 0x7F, RUN, BURST, 0xFF, BURST, 0xFF, RUN])
    yield "bursts-weighted-ttl", config(12, WEIGHER | TTL, ttl=16, keys=8, unit=SEC) + bytes(
        [BURST, 0x3F, ADVANCE, 5, BURST, 0xBF, RUN, ADVANCE, 8, BURST, 0x47, RUN])
    # Enough sampled requests (2 guard periods of 1024) for the policy to grow its window.
    yield "bursts-window-grows", config(14, keys=16) + bytes([BURST, 0x7F] * 12 + [BURST, 0xFF] * 6 + [BURST, 0x7F] * 6)
    yield "invalid-shards", config(4, keys=4, shards=31) + bytes([INSERT, 1])
    # compute() among everything else, with a weigher, expiry and a throwing listener
    # (its own generator, so that the seeds above stay as they were).
    crng = random.Random(20261207)
    computes = {**EVERYTHING, COMPUTE: 6}
    yield "compute", config(6, WEIGHER | TTL | EXPIRY, ttl=9, keys=8, unit=SEC) + mixed(crng, 300, computes)
    yield "compute-throwing-listener", config(3, THROWING_LISTENER | TTI, tti=5, keys=6) + mixed(crng, 200, computes)
    # set_max_capacity() among everything else: shrinking, growing, zero and unbounded.
    rrng = random.Random(20261207 + 1)
    resizes = {**EVERYTHING, COMPUTE: 2, RESIZE: 3}
    yield "resize", config(8, TTL, ttl=9, keys=12, unit=SEC) + mixed(rrng, 300, resizes)
    yield "resize-weighted", config(12, WEIGHER | EXPIRY | THROWING_LISTENER, keys=10) + mixed(rrng, 300, resizes)
    yield "resize-bursts", config(14, keys=16) + bytes([BURST, 0x7F] * 6 + [RESIZE, 5, BURST, 0xFF, RESIZE, 15, BURST, 0x7F,
                                                         RESIZE, 0, BURST, 0x3F, RESIZE, 3, RUN])
    # get_all() among the other loaders, with a weigher, expiry and a throwing listener.
    grng = random.Random(20261207 + 2)
    bulk = {**LOADERS, GET_ALL: 5, REMOVE: 1, RESIZE: 1}
    yield "get-all", config(6, TTL, ttl=6, keys=10) + mixed(grng, 300, bulk)
    yield "get-all-weighted-expiry", config(9, WEIGHER | EXPIRY | THROWING_LISTENER, keys=8, unit=SEC) + mixed(grng, 300, bulk)
    yield "get-all-capacity-zero", config(0, keys=6) + mixed(grng, 60, bulk)


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "cache")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
