#!/usr/bin/env python3
"""Runs streamcache's benchmarks and tools, then writes docs/benchmarks.md and docs/plots/*.svg.

Called by scripts/bench (which installs gnuplot and builds the targets first):

    scripts/bench_report.py --build-dir build/release [--quick] [benchmark args...]
    scripts/bench_report.py --build-dir build/release --report-only   # re-render from saved results

Run phase: every BUILD/bench/*_benchmark binary with Google Benchmark's JSON output, then the
tools (hit_ratio on each pattern of the project's trace generator, cache_interleaved,
broadcast_interleaved, the -O2 build of broadcast_benchmark's single-producer cases,
broadcast_lane_model, cache_memory, streaming_map_memory). Everything lands in BUILD/bench-results/ with a run.json that records
the machine, the load before and after, the commit and the exact commands.
Report phase: reads only BUILD/bench-results/ and renders the Markdown and the plots, so a
report can be regenerated without re-running anything. Unknown arguments go to every
benchmark binary (e.g. --benchmark_filter=Read).

Standard library only (json, argparse, subprocess): the project needs nothing from PyPI.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---- Constants copied from ../shared/anchors.md ---------------------------------------------
# The project must not need ../shared at build time, so the reference figures live here.
# Hit ratios of LRU / Caffeine 2.6.2 (W-TinyLFU) / Belady OPT on the traces of gen_trace.py,
# which bench/common/traces.hpp reproduces bit for bit (hit_ratio --trace-spec).
ANCHOR_TRACES = [
    # (pattern, trace spec, {size: (lru, caffeine, opt)}, sweep sizes for the plot)
    ("zipf", "zipf --s 0.99 --n 1048576 --length 1000000 --seed 1",
     {4096: (.490, .574, .635), 16384: (.601, .656, .721), 65536: (.710, .723, .771)},
     [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144]),
    ("scanzipf",
     "scanzipf --s 0.99 --n 100000 --length 1000000 --scan-every 50000 --scan-len 20000 --seed 2",
     {2500: (.411, .473, .523), 10000: (.487, .550, .599), 25000: (.509, .583, .636)},
     [1000, 2500, 5000, 10000, 15000, 25000, 40000, 60000]),
    ("loop", "loop --k 5000 --length 500000",
     {1000: (0.0, .180, .198), 2500: (0.0, .488, .495), 4500: (0.0, .852, .891)},
     [500, 1000, 2000, 2500, 3500, 4500, 5000, 6000]),
    ("shift", "shift --length 1000000",
     {500: (.259, .285, .475), 2000: (.435, .339, .631), 5000: (.578, .378, .742)},
     [250, 500, 1000, 2000, 3000, 5000, 8000, 12000]),
]
PATTERN_TITLES = {
    "zipf": "Zipf 0.99 over 2^20 keys",
    "scanzipf": "scan-polluted Zipf (20k-key scan every 50k accesses)",
    "loop": "loop over 5000 keys",
    "shift": "shifting hot set (Zipf 0.8, base +5000 every 20k)",
}

# ---- The bars ------------------------------------------------------------------------
BAR_CACHE_READ_VS_TBB = 1.0
BAR_CACHE_READ_VS_MUTEX = 3.0
BAR_CACHE_MIXED_VS_MUTEX = 2.0
BAR_MEMORY_TTL_BYTES = 64.0
BAR_BCAST_1_1_BATCH_VS_SPSC = 1.0
BAR_BCAST_1_4_VS_SPSC = 1.5
BAR_BCAST_VS_MUTEX = 10.0
# The -O2 build runs only the single-producer ring cases (the ones the inlining mattered for).
O2_FILTER = "BM_Broadcast<RingBlock>/P:1/"
BAR_HIT_RATIO_SLACK = 0.01

QUICK_MIN_TIME = "0.05"
# Per binary: a hung benchmark must not eat the whole session (the full run takes < 20 min).
BENCH_TIMEOUT_QUICK = 300
BENCH_TIMEOUT_FULL = 600
FULL_REPETITIONS = 3

NOTES_DIR = os.path.join(REPO, "docs", "notes")


# ============================================================================================
# Run phase
# ============================================================================================

def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def rel(path: str) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    path = os.path.abspath(path)
    return os.path.relpath(path, REPO) if path.startswith(REPO + os.sep) else path


def compiler_of(build_dir: str) -> str:
    cache = os.path.join(build_dir, "CMakeCache.txt")
    compiler, build_type = "", ""
    try:
        with open(cache, encoding="utf-8") as f:
            for line in f:
                if line.startswith("CMAKE_CXX_COMPILER:"):
                    compiler = line.split("=", 1)[1].strip()
                elif line.startswith("CMAKE_BUILD_TYPE:"):
                    build_type = line.split("=", 1)[1].strip()
    except OSError:
        return "unknown"
    version = sh([compiler, "--version"]).splitlines()[:1] if compiler else []
    return f"{version[0] if version else compiler} ({build_type or 'no build type'})"


class Runner:
    """Runs commands, saving their output and recording exactly what was run."""

    def __init__(self, results: str):
        self.results = results
        self.commands: list[dict] = []

    def run(self, key: str, cmd: list[str], stdout_file: str | None, timeout: float) -> dict:
        shown = " ".join(shlex.quote(c.replace(REPO + os.sep, "")) for c in cmd)
        print(f"=== {shown}", flush=True)
        start = time.monotonic()
        entry = {"key": key, "command": shown, "stdout": rel(stdout_file) if stdout_file else None}
        try:
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
            entry["returncode"] = proc.returncode
            out, err = proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as e:
            entry["returncode"] = "timeout"
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = f"timed out after {timeout:.0f} s"
        entry["seconds"] = round(time.monotonic() - start, 1)
        if stdout_file:
            with open(stdout_file, "w", encoding="utf-8") as f:
                f.write(out)
        if entry["returncode"] != 0:
            entry["stderr_tail"] = err.strip().splitlines()[-5:]
            print(f"    failed ({entry['returncode']}): {' | '.join(entry['stderr_tail'])}", flush=True)
        else:
            print(f"    {entry['seconds']} s", flush=True)
        self.commands.append(entry)
        return entry


def run_all(build_dir: str, results: str, quick: bool, extra: list[str], not_built: set[str]) -> None:
    os.makedirs(results, exist_ok=True)
    for old in glob.glob(os.path.join(results, "*")):
        if os.path.isfile(old):
            os.remove(old)
    meta = {
        "date_start": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": sh(["nproc"]) or str(os.cpu_count()),
        "cpu_model": cpu_model(),
        "load_start": load_average(),
        "commit": sh(["git", "rev-parse", "--short", "HEAD"]),
        "commit_subject": sh(["git", "log", "-1", "--format=%s"]),
        # Tracked files that differ from the commit: the run measured those edits too.
        "dirty": [line[3:] for line in subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True,
            check=False).stdout.splitlines() if len(line) > 3],
        "compiler": compiler_of(build_dir),
        "build_dir": rel(build_dir),
        "quick": quick,
        "extra_args": extra,
    }
    started = time.monotonic()
    runner = Runner(results)
    bench_dir = os.path.join(build_dir, "bench")

    if quick:
        bench_args = [f"--benchmark_min_time={QUICK_MIN_TIME}"]
    else:
        bench_args = [f"--benchmark_repetitions={FULL_REPETITIONS}", "--benchmark_report_aggregates_only=true"]
    meta["bench_args"] = bench_args
    sources = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(REPO, "bench", "*_benchmark.cpp")))
    meta["benchmarks_missing"] = []
    meta["not_built"] = sorted(not_built)
    for name in sources:
        binary = os.path.join(bench_dir, name)
        if name in not_built:
            meta["benchmarks_missing"].append(name)
            print(f"=== {name}: did not build (a stale binary would measure old code), skipped", flush=True)
            continue
        if not os.access(binary, os.X_OK):
            meta["benchmarks_missing"].append(name)
            print(f"=== {name}: no binary in {rel(bench_dir)} (did it build?), skipped", flush=True)
            continue
        out = os.path.join(results, f"{name}.json")
        runner.run(name, [binary, f"--benchmark_out={out}", "--benchmark_out_format=json", *bench_args, *extra],
                   os.path.join(results, f"{name}.txt"), timeout=BENCH_TIMEOUT_QUICK if quick else BENCH_TIMEOUT_FULL)

    hit_ratio = os.path.join(bench_dir, "hit_ratio")
    for pattern, spec, anchors, sweep in ANCHOR_TRACES:
        sizes = sorted(anchors) if quick else sorted(set(sweep) | set(anchors))
        if os.access(hit_ratio, os.X_OK) and "hit_ratio" not in not_built:
            runner.run(f"hit_ratio:{pattern}", [hit_ratio, "--trace-spec", spec, *map(str, sizes)],
                       os.path.join(results, f"hit_ratio_{pattern}.txt"), timeout=600)
    interleaved = os.path.join(bench_dir, "cache_interleaved")
    if os.access(interleaved, os.X_OK) and "cache_interleaved" not in not_built:
        # THREADS PROCESSES ROUNDS: about 30 s for the full run.
        args = ["2", "3", "5"] if quick else ["2", "7", "20"]
        runner.run("cache_interleaved", [interleaved, *args], os.path.join(results, "cache_interleaved.txt"),
                   timeout=600)
    interleaved = os.path.join(bench_dir, "broadcast_interleaved")
    if os.access(interleaved, os.X_OK) and "broadcast_interleaved" not in not_built:
        # ROUNDS [P:S[:BASELINE]...]: 2 -> 2 against the mutex baseline (the 10x bar), and the
        # single-producer spsc bars' cases, whose rates also move with the machine's state; about a minute.
        args = ["3", "2:2", "1:4:spsc"] if quick else ["15", "2:2", "1:1:spsc", "1:4:spsc"]
        runner.run("broadcast_interleaved", [interleaved, *args], os.path.join(results, "broadcast_interleaved.txt"),
                   timeout=900)
    o2 = os.path.join(bench_dir, "broadcast_benchmark_o2")
    if os.access(o2, os.X_OK) and "broadcast_benchmark_o2" not in not_built:
        # The single-producer ring cases again, from the -O2 build: about 15 s.
        out = os.path.join(results, "broadcast_o2.json")
        runner.run("broadcast_benchmark_o2", [o2, f"--benchmark_filter={O2_FILTER}", f"--benchmark_out={out}",
                                              "--benchmark_out_format=json", *bench_args],
                   os.path.join(results, "broadcast_o2.txt"), timeout=600)
    model = os.path.join(bench_dir, "broadcast_lane_model")
    if os.access(model, os.X_OK) and "broadcast_lane_model" not in not_built:
        # ROUNDS: three layouts of 2 -> 2 traffic; about 2 s a round.
        runner.run("broadcast_lane_model", [model, "2" if quick else "7"],
                   os.path.join(results, "broadcast_lane_model.txt"), timeout=600)
    for tool in ("cache_memory", "streaming_map_memory"):
        binary = os.path.join(bench_dir, tool)
        if os.access(binary, os.X_OK) and tool not in not_built:
            # Default size (1M entries) in both modes: bytes per entry depend on the count
            # (hash-table load factor), and the bars are stated for 1M.
            runner.run(tool, [binary], os.path.join(results, f"{tool}.txt"), timeout=600)

    meta["commands"] = runner.commands
    meta["load_end"] = load_average()
    meta["date_end"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta["seconds"] = round(time.monotonic() - started)
    with open(os.path.join(results, "run.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)


# ============================================================================================
# Reading results
# ============================================================================================

class Row:
    """One benchmark instance: its median (or single-run) figures."""

    def __init__(self, b: dict):
        self.raw = b
        self.name = b.get("run_name", b["name"])
        head, *parts = self.name.split("/")
        m = re.fullmatch(r"([^<]+)(?:<(.*)>)?", head)
        self.family = m.group(1) if m else head
        self.targs = [a.strip() for a in m.group(2).split(",")] if m and m.group(2) else []
        self.params: dict[str, str] = {}
        for i, p in enumerate(parts):
            if ":" in p:
                k, v = p.split(":", 1)
                self.params[k] = v
            elif re.fullmatch(r"-?\d+", p):
                self.params[f"arg{i}"] = p
        self.items = b.get("items_per_second")
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}.get(b.get("time_unit", "ns"), 1e-9)
        self.real_s = b.get("real_time", 0.0) * scale
        self.cpu_s = b.get("cpu_time", 0.0) * scale
        self.time_unit = b.get("time_unit", "ns")
        self.counters = {k: v for k, v in b.items() if k not in RESERVED_KEYS and isinstance(v, (int, float))}
        self.error = b.get("error_message") if b.get("error_occurred") else None

    def p(self, key: str) -> str | None:
        return self.params.get(key)


RESERVED_KEYS = {"name", "family_index", "per_family_instance_index", "run_name", "run_type", "repetitions",
                 "repetition_index", "threads", "aggregate_name", "aggregate_unit", "iterations", "real_time",
                 "cpu_time", "time_unit", "items_per_second", "bytes_per_second", "error_occurred",
                 "error_message", "label"}


class BenchFile:
    def __init__(self, path: str):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        self.context = data.get("context", {})
        benches = data.get("benchmarks", [])
        medians = [b for b in benches if b.get("aggregate_name") == "median"]
        self.aggregated = bool(medians)
        self.repetitions = max((b.get("repetitions", 1) for b in benches), default=1)
        chosen = medians if medians else [b for b in benches if b.get("run_type", "iteration") == "iteration"]
        self.rows = [Row(b) for b in chosen]
        # cv (coefficient of variation) of items/s, to show how noisy each median is.
        self.cv = {b["run_name"]: b.get("items_per_second") for b in benches if b.get("aggregate_name") == "cv"}

    def find(self, family: str, targs: list[str] | None = None, **params: str) -> Row | None:
        for r in self.rows:
            if r.family != family or (targs is not None and r.targs != targs):
                continue
            if all(r.p(k) == str(v) for k, v in params.items()):
                return r
        return None


def load_results(results: str):
    with open(os.path.join(results, "run.json"), encoding="utf-8") as f:
        meta = json.load(f)
    files = {}
    for path in sorted(glob.glob(os.path.join(results, "*_benchmark.json"))):
        name = os.path.basename(path)[:-5]
        try:
            files[name] = BenchFile(path)
        except (OSError, ValueError) as e:
            print(f"warning: cannot read {path}: {e}", file=sys.stderr)
    return meta, files


def read_text(results: str, name: str) -> str | None:
    try:
        with open(os.path.join(results, name), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def parse_hit_ratio(text: str) -> dict[int, dict[str, float]]:
    """`trace=zipf size=4096 accesses=... lru=0.4901 (0.04s) sim=... cache=...` -> {size: {col: ratio}}."""
    out: dict[int, dict[str, float]] = {}
    for line in text.splitlines():
        m = re.search(r"\bsize=(\d+)", line)
        if not m:
            continue
        cols = {k: float(v) for k, v in re.findall(r"\b(\w+)=([0-9.]+) \(", line)}
        if cols:
            out[int(m.group(1))] = cols
    return out


def parse_cache_memory(text: str) -> list[tuple[str, float, float]]:
    rows = []
    for line in text.splitlines():
        m = re.match(r"(.+?)\s+(-?[0-9.]+) MiB\s+(-?[0-9.]+)\s*$", line)
        if m:
            rows.append((m.group(1).strip(), float(m.group(2)), float(m.group(3))))
    return rows


# ============================================================================================
# Formatting helpers
# ============================================================================================

def fmt_rate(x: float | None, unit: float = 1e6) -> str:
    if x is None:
        return "n/a"
    v = x / unit
    return f"{v:.1f}" if v >= 100 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def ratio(a: Row | None, b: Row | None) -> float | None:
    if a is None or b is None or not a.items or not b.items:
        return None
    return a.items / b.items


def fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else (f"{r:.2f}x" if r < 10 else f"{r:.0f}x")


def verdict(value: float | None, ok: bool | None) -> str:
    if value is None or ok is None:
        return "not measured"
    return "**met**" if ok else "**not met**"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def cpu_ns_per_op(r: Row | None) -> str:
    """CPU time per operation of a 1-thread run: cpu time / items per iteration."""
    if r is None or not r.items or not r.real_s:
        return "n/a"
    ops_per_iteration = r.items * r.real_s
    return f"{r.cpu_s / ops_per_iteration * 1e9:.0f}" if ops_per_iteration else "n/a"


# ============================================================================================
# Sections
# ============================================================================================

CACHE_IMPLS = [("Streamcache", "streamcache"), ("StreamcacheTtl", "streamcache + TTL"),
               ("TbbMap", "tbb::concurrent_hash_map"), ("MutexLru", "mutex LRU")]
CACHE_WORKLOADS = [("Read100", "read 100%"), ("Read75Write25", "read 75 / write 25"), ("Write100", "write 100%"),
                   ("Increment100", "increment 100% (compute)")]


def section_link(title: str) -> str:
    """The in-page link GitHub-style Markdown gives a `### title` heading."""
    return "#" + re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


class Report:
    def __init__(self, meta: dict, files: dict[str, BenchFile], results: str, plots_dir: str):
        self.meta, self.files, self.results, self.plots_dir = meta, files, results, plots_dir
        self.bars: list[list[str]] = []  # bar, measured, verdict, section
        self.plots: list[str] = []       # generated SVG names
        self.plot_jobs: list[tuple[str, str]] = []  # (svg name, gnuplot script)

    def bar(self, what: str, measured: str, value: float | None, ok: bool | None, where: str) -> None:
        self.bars.append([what, measured, verdict(value, ok), where])

    def median_note(self, f: BenchFile) -> str:
        return (f"median of {f.repetitions} repetitions" if f.aggregated else "one repetition (no median)")

    # ---- Cache --------------------------------------------------------------------------------
    def cache_section(self) -> list[str]:
        f = self.files.get("cache_benchmark")
        out = ["## Cache throughput", "",
               "Source: `bench/cache_benchmark.cpp` (workload, load model and baselines in its header "
               "comment); analysis and history: [notes/cache_benchmarks.md](notes/cache_benchmarks.md)."]
        if f is None:
            self.bar(f"cache read 100%, 2 threads: >= {BAR_CACHE_READ_VS_TBB:.1f}x tbb::concurrent_hash_map",
                     "no run", None, None, "cache")
            self.bar(f"cache read 100%, 2 threads: >= {BAR_CACHE_READ_VS_MUTEX:.0f}x mutex LRU", "no run", None, None,
                     "cache")
            self.bar(f"cache read 75 / write 25: >= {BAR_CACHE_MIXED_VS_MUTEX:.0f}x mutex LRU", "no run", None, None,
                     "cache")
            return out + ["", "_Not run: no `cache_benchmark` results (binary missing or failed)._", ""]
        out += ["", f"Zipf 0.99 over 2^20 keys, 2^16-entry caches, M ops/s summed over threads "
                f"(real time), {self.median_note(f)}. Ratios are ours / baseline, from the same run.", ""]
        rows = []
        plot_data: dict[str, dict[str, dict[int, float]]] = {}
        for wl, wl_name in CACHE_WORKLOADS:
            for threads in ("1", "2"):
                r = {impl: f.find("BM_Cache", [wl, impl], threads=threads) for impl, _ in CACHE_IMPLS}
                if not any(r.values()):
                    continue
                for impl, _ in CACHE_IMPLS:
                    if r[impl] and r[impl].items:
                        plot_data.setdefault(wl, {}).setdefault(impl, {})[int(threads)] = r[impl].items / 1e6
                rows.append([wl_name, threads] + [fmt_rate(r[i].items if r[i] else None) for i, _ in CACHE_IMPLS] + [
                    fmt_ratio(ratio(r["Streamcache"], r["TbbMap"])), fmt_ratio(ratio(r["Streamcache"], r["MutexLru"])),
                    fmt_ratio(ratio(r["StreamcacheTtl"], r["TbbMap"])),
                    fmt_ratio(ratio(r["StreamcacheTtl"], r["MutexLru"]))])
        out += table(["workload", "threads"] + [n for _, n in CACHE_IMPLS] +
                     ["ours / tbb", "ours / mutex LRU", "TTL / tbb", "TTL / mutex LRU"], rows)

        # CPU time per operation at 1 thread: what a loaded, shared machine distorts least.
        cpu_rows = []
        for wl, wl_name in CACHE_WORKLOADS:
            r = {impl: f.find("BM_Cache", [wl, impl], threads="1") for impl, _ in CACHE_IMPLS}
            if any(r.values()):
                cpu_rows.append([wl_name] + [cpu_ns_per_op(r[i]) for i, _ in CACHE_IMPLS])
        if cpu_rows:
            out += ["", "CPU time per operation at 1 thread, ns (less sensitive to other processes "
                    "than the real-time rates when the machine is shared):", ""]
            out += table(["workload (1 thread)"] + [n for _, n in CACHE_IMPLS], cpu_rows)
        hits = [(wl_name, f.find("BM_Cache", [wl, "Streamcache"], threads="1")) for wl, wl_name in CACHE_WORKLOADS[:2]]
        hit_text = ", ".join(f"{n} {r.counters['hit_ratio']:.3f}" for n, r in hits if r and "hit_ratio" in r.counters)
        if hit_text:
            out += ["", f"Sanity counter `hit_ratio` of our Cache at 1 thread: {hit_text}."]

        rd = {i: f.find("BM_Cache", ["Read100", i], threads="2") for i in ("Streamcache", "TbbMap", "MutexLru")}
        v = ratio(rd["Streamcache"], rd["TbbMap"])
        self.bar(f"cache read 100%, 2 threads: >= {BAR_CACHE_READ_VS_TBB:.1f}x tbb::concurrent_hash_map",
                 fmt_ratio(v), v, None if v is None else v >= BAR_CACHE_READ_VS_TBB, "[cache](#cache-throughput)")
        v = ratio(rd["Streamcache"], rd["MutexLru"])
        self.bar(f"cache read 100%, 2 threads: >= {BAR_CACHE_READ_VS_MUTEX:.0f}x mutex LRU",
                 fmt_ratio(v), v, None if v is None else v >= BAR_CACHE_READ_VS_MUTEX, "[cache](#cache-throughput)")
        for threads in ("1", "2"):
            v = ratio(f.find("BM_Cache", ["Read75Write25", "Streamcache"], threads=threads),
                      f.find("BM_Cache", ["Read75Write25", "MutexLru"], threads=threads))
            self.bar(f"cache read 75 / write 25, {threads} thread{'s' if threads != '1' else ''}: "
                     f">= {BAR_CACHE_MIXED_VS_MUTEX:.0f}x mutex LRU", fmt_ratio(v), v,
                     None if v is None else v >= BAR_CACHE_MIXED_VS_MUTEX, "[cache](#cache-throughput)")

        if plot_data:
            self.plot_cache(plot_data)
            out += ["", "![Cache throughput vs threads](plots/cache_throughput.svg)"]
        return out + [""] + self.interleaved_section()

    def interleaved_section(self) -> list[str]:
        """cache_interleaved's output: the read-100% ratio to tbb over several processes."""
        text = read_text(self.results, "cache_interleaved.txt")
        m = re.search(r"median ([0-9.]+), quartiles ([0-9.]+)-([0-9.]+)", text or "")
        what = f"cache read 100%, 2 threads: >= {BAR_CACHE_READ_VS_TBB:.1f}x tbb, median over processes"
        if not m:
            self.bar(what, "no run", None, None, "interleaved")
            return []
        v = float(m.group(1))
        return self.interleaved_bar(
            what, f"{v:.2f}x (quartiles {float(m.group(2)):.2f}-{float(m.group(3)):.2f})", v,
            v >= BAR_CACHE_READ_VS_TBB, "Cache read against tbb, over processes",
            "Source: `bench/tools/cache_interleaved.cpp`. The read-100% ratio to tbb of one "
            "`cache_benchmark` process is one draw from a wide spread on this machine kind (the header "
            "comment of the tool says why); this tool alternates 100 ms slices of ours and tbb inside each "
            "of several fresh processes and reports every process. Rates in M ops/s.", text)

    def memory_section(self) -> list[str]:
        text = read_text(self.results, "cache_memory.txt")
        out = ["## Cache memory per entry", "",
               "Source: `bench/tools/cache_memory.cpp` (RSS growth per entry beyond the 16 bytes of key and "
               "value, each implementation in a fresh child process); analysis: "
               "[notes/cache_benchmarks.md](notes/cache_benchmarks.md#memory-bytes-per-entry-beyond-key-and-value)."]
        rows = parse_cache_memory(text or "")
        if not rows:
            self.bar(f"memory, size bound + TTL: <= {BAR_MEMORY_TTL_BYTES:.0f} bytes/entry", "no run", None, None,
                     "memory")
            return out + ["", "_Not run: no `cache_memory` output._", ""]
        header = (text or "").splitlines()[0] if text else ""
        out += ["", f"`{header.strip()}`", ""]
        out += table(["implementation", "RSS growth (MiB)", "bytes per entry beyond key and value"],
                     [[n, f"{mib:.1f}", f"{b:.1f}"] for n, mib, b in rows])
        ttl = next((b for n, _, b in rows if "TTL" in n and "TTI" not in n and n.startswith("streamcache")), None)
        self.bar(f"memory, size bound + TTL: <= {BAR_MEMORY_TTL_BYTES:.0f} bytes/entry",
                 "n/a" if ttl is None else f"{ttl:.1f} bytes", ttl,
                 None if ttl is None else ttl <= BAR_MEMORY_TTL_BYTES, "[memory](#cache-memory-per-entry)")
        return out + [""]

    def plot_cache(self, data: dict[str, dict[str, dict[int, float]]]) -> None:
        names = dict(CACHE_IMPLS)
        dat = os.path.join(self.results, "plot_cache.dat")
        with open(dat, "w", encoding="utf-8") as f:
            for wl, _ in CACHE_WORKLOADS:
                for impl, _ in CACHE_IMPLS:
                    f.write(f"# {wl} {impl}\n")
                    for t, v in sorted(data.get(wl, {}).get(impl, {}).items()):
                        f.write(f"{t} {v}\n")
                    f.write("\n\n")
        lines = [
            "set terminal svg size 1200,440 dynamic noenhanced font 'sans,11' background '#ffffff'",
            "set multiplot layout 1,3 title 'Cache throughput vs threads (M ops/s, real time, higher is better)'",
            "set xlabel 'threads'", "set ylabel 'M ops/s'", "set xrange [0.8:2.2]", "set xtics 1",
            "set yrange [0:*]", "set offsets 0, 0, graph 0.55, 0", "set key top right font ',9'", "set grid ytics",
        ]
        block = 0
        for wl, wl_name in CACHE_WORKLOADS:
            plots = []
            for impl, _ in CACHE_IMPLS:
                plots.append(f"'{dat}' index {block} using 1:2 with linespoints lw 2 title '{names[impl]}'")
                block += 1
            lines += [f"set title '{wl_name}'", "plot " + ", ".join(plots)]
        lines.append("unset multiplot")
        self.plot_jobs.append(("cache_throughput.svg", "\n".join(lines)))

    # ---- Broadcast ----------------------------------------------------------------------------
    def broadcast_section(self) -> list[str]:
        f = self.files.get("broadcast_benchmark")
        out = ["## Broadcast throughput", "",
               "Source: `bench/broadcast_benchmark.cpp` (load model and baselines in its header comment); "
               "design notes, diagnosis and history: [notes/broadcast.md](notes/broadcast.md)."]
        impls = [("RingBlock", "ring kBlock"), ("RingOverwrite", "ring kOverwrite (lost)"),
                 ("SpscFanout", "spsc fan-out"), ("MutexDeque", "mutex+cv+deque")]
        if f is None:
            for b in (f"1 -> 1, batches: >= {BAR_BCAST_1_1_BATCH_VS_SPSC:.1f}x spsc fan-out",
                      f"1 -> 4: >= {BAR_BCAST_1_4_VS_SPSC:.1f}x spsc fan-out",
                      f"every case: >= {BAR_BCAST_VS_MUTEX:.0f}x the mutex baseline"):
                self.bar(f"broadcast {b}", "no run", None, None, "broadcast")
            return out + ["", "_Not run: no `broadcast_benchmark` results._", ""]
        out += ["", "M messages/s delivered, summed over subscribers (uint64_t, capacity 4096, real time), "
                f"{self.median_note(f)}. Ratios use the lossless ring (kBlock), like the baselines; the "
                "kOverwrite column counts only delivered messages, `lost` is the fraction its subscribers missed.", ""]
        cases = []
        for r in f.rows:
            if r.family == "BM_Broadcast" and r.targs == ["RingBlock"]:
                cases.append((r.p("P"), r.p("S"), r.p("batch")))
        rows, worst = [], None
        plot_data: dict[tuple[str, str], dict[int, float]] = {}
        for p, s, batch in cases:
            r = {i: f.find("BM_Broadcast", [i], P=p, S=s, batch=batch) for i, _ in impls}
            cells = []
            for i, _ in impls:
                x = r[i]
                cell = fmt_rate(x.items if x else None)
                if i == "RingOverwrite" and x and "lost" in x.counters:
                    cell += f" ({x.counters['lost'] * 100:.0f}%)"
                cells.append(cell)
                if x and x.items and p == "1":
                    plot_data.setdefault((i, batch), {})[int(s)] = x.items / 1e6
            vs_mutex = ratio(r["RingBlock"], r["MutexDeque"])
            if vs_mutex is not None and (worst is None or vs_mutex < worst[0]):
                worst = (vs_mutex, f"{p}->{s} {'batch 64' if batch == '1' else 'recv'}")
            rows.append([f"{p} -> {s}", "batch 64" if batch == "1" else "recv"] + cells +
                        [fmt_ratio(ratio(r["RingBlock"], r["SpscFanout"])), fmt_ratio(vs_mutex)])
        out += table(["P -> S", "mode"] + [n for _, n in impls] + ["ring / spsc", "ring / mutex"], rows)

        # Messages per second of process CPU time (counter per_cpu_s): what a message costs,
        # which the scheduler distorts less than wall-clock rates on a shared machine.
        def per_cpu(x: Row | None) -> float | None:
            return x.counters.get("per_cpu_s") if x else None

        def cpu_ratio(a: float | None, b: float | None) -> str:
            return fmt_ratio(a / b) if a and b else "n/a"

        cpu_rows = []
        for p, s, batch in cases:
            r = {i: per_cpu(f.find("BM_Broadcast", [i], P=p, S=s, batch=batch)) for i, _ in impls}
            if r["RingBlock"] is None:
                continue
            cpu_rows.append([f"{p} -> {s}", "batch 64" if batch == "1" else "recv"] +
                            [fmt_rate(r[i]) for i in ("RingBlock", "SpscFanout", "MutexDeque")] +
                            [cpu_ratio(r["RingBlock"], r["SpscFanout"]), cpu_ratio(r["RingBlock"], r["MutexDeque"])])
        if cpu_rows:
            out += ["", "The same run per CPU-second of the whole process (counter `per_cpu_s`: messages "
                    "delivered / process CPU time, spinning included). Shown for diagnosis; the bars use "
                    "the wall-clock rates.", ""]
            out += table(["P -> S", "mode", "ring kBlock", "spsc fan-out", "mutex+cv+deque", "ring / spsc",
                          "ring / mutex"], cpu_rows)

        # Producers handing over 64 messages per call (BM_BroadcastPublishBatch); not a bar.
        pb_rows = []
        for batch in ("0", "1"):
            r = {i: f.find("BM_BroadcastPublishBatch", [i], P=2, S=2, batch=batch)
                 for i in ("RingBlock", "SpscFanout", "MutexDeque")}
            if r["RingBlock"] is None:
                continue
            single = f.find("BM_Broadcast", ["RingBlock"], P=2, S=2, batch=batch)
            pb_rows.append(["2 -> 2", "batch 64" if batch == "1" else "recv"] +
                           [fmt_rate(r[i].items if r[i] else None) for i in ("RingBlock", "SpscFanout", "MutexDeque")] +
                           [fmt_ratio(ratio(r["RingBlock"], r["SpscFanout"])),
                            fmt_ratio(ratio(r["RingBlock"], r["MutexDeque"])),
                            fmt_ratio(ratio(r["RingBlock"], single))])
        if pb_rows:
            out += ["", "Producers publishing 64 messages per call (`publish_batch`, one claim per 64; "
                    "`spsc_queue::push(array, n)`; one lock per 64 for the mutex deque), M messages/s "
                    "delivered. Not one of the issue's cases: what batching producers buy.", ""]
            out += table(["P -> S", "mode", "ring kBlock", "spsc fan-out", "mutex+cv+deque", "ring / spsc",
                          "ring / mutex", "ring / ring with publish()"], pb_rows)

        # Two producers' claim ceiling (BM_ProducerCeiling): the bound on any 2 -> 2 ring that
        # claims each message with one atomic add and stores it into shared slots.
        ceiling = {k: f.find("BM_ProducerCeiling", store=k) for k in ("0", "1", "2")}
        mutex_22 = f.find("BM_Broadcast", ["MutexDeque"], P=2, S=2, batch=0)
        if all(ceiling.values()) and ceiling["1"].items:
            bound = 2 * ceiling["1"].items
            vs = f", {fmt_ratio(bound / mutex_22.items)} the mutex baseline's 2 -> 2 recv above" \
                if mutex_22 and mutex_22.items else ""
            out += ["", "Two producers' claim ceiling (`BM_ProducerCeiling`, 2 threads, no ring): a shared "
                    f"fetch_add alone {fmt_rate(ceiling['0'].items)} M claims/s; followed by a store into a "
                    f"4096-slot array at seq mod 4096, as a publish does, {fmt_rate(ceiling['1'].items)}; "
                    f"followed by a store into an array of the thread's own, {fmt_rate(ceiling['2'].items)}. "
                    "So while its two producers run at once, one on each core, a 2 -> 2 ring that claims one "
                    f"message at a time delivers at most about twice the second figure: {fmt_rate(bound)} M "
                    f"msgs/s{vs}. (A run that puts both producers on one core moves no line between them and "
                    "can beat that; such runs are part of the spread measured below.)"]

        v = ratio(f.find("BM_Broadcast", ["RingBlock"], P=1, S=1, batch=1),
                  f.find("BM_Broadcast", ["SpscFanout"], P=1, S=1, batch=1))
        self.bar(f"broadcast 1 -> 1, batches: >= {BAR_BCAST_1_1_BATCH_VS_SPSC:.1f}x spsc fan-out", fmt_ratio(v), v,
                 None if v is None else v >= BAR_BCAST_1_1_BATCH_VS_SPSC, "[broadcast](#broadcast-throughput)")
        for batch, mode in (("0", "recv"), ("1", "batches")):
            v = ratio(f.find("BM_Broadcast", ["RingBlock"], P=1, S=4, batch=batch),
                      f.find("BM_Broadcast", ["SpscFanout"], P=1, S=4, batch=batch))
            self.bar(f"broadcast 1 -> 4, {mode}: >= {BAR_BCAST_1_4_VS_SPSC:.1f}x spsc fan-out", fmt_ratio(v), v,
                     None if v is None else v >= BAR_BCAST_1_4_VS_SPSC, "[broadcast](#broadcast-throughput)")
        self.bar(f"broadcast, every case: >= {BAR_BCAST_VS_MUTEX:.0f}x the mutex baseline",
                 "n/a" if worst is None else f"worst {fmt_ratio(worst[0])} ({worst[1]})",
                 None if worst is None else worst[0], None if worst is None else worst[0] >= BAR_BCAST_VS_MUTEX,
                 "[broadcast](#broadcast-throughput)")
        if plot_data:
            self.plot_broadcast(plot_data, impls)
            out += ["", "![Broadcast delivered messages vs subscribers](plots/broadcast_subscribers.svg)"]
        return out + [""] + self.broadcast_interleaved_section() + self.broadcast_o2_section() + \
            self.lane_model_section()

    def broadcast_interleaved_section(self) -> list[str]:
        """broadcast_interleaved's output: ring / baseline ratios over many alternating runs, for the
        2 -> 2 bar against the mutex baseline and the single-producer bars against the spsc fan-out."""
        text = read_text(self.results, "broadcast_interleaved.txt")
        medians = [(m.group(1), m.group(2), m.group(3), float(m.group(4)), m.group(5), m.group(6)) for m in re.finditer(
            r"^(\d+ -> \d+)\s+(recv|batch)\s+(mutex|spsc)\s+[0-9.]+\s+[0-9.]+\s+([0-9.]+)x\s+([0-9.]+)-\s*([0-9.]+)",
            text or "", re.MULTILINE)]
        title = "Broadcast over alternating runs"

        def median_bar(what: str, rows, bar: float) -> None:
            if not rows:
                self.bar(what, "no run", None, None, "interleaved")
                return
            case, mode, _, v, q1, q3 = min(rows, key=lambda m: m[3])
            self.bar(what, f"{'worst ' if len(rows) > 1 else ''}{v:.2f}x ({case} {mode}; quartiles "
                     f"{float(q1):.2f}-{float(q3):.2f})", v, v >= bar, f"[interleaved]({section_link(title)})")

        median_bar(f"broadcast 2 -> 2: >= {BAR_BCAST_VS_MUTEX:.0f}x the mutex baseline, median over alternating runs",
                   [m for m in medians if m[0] == "2 -> 2" and m[2] == "mutex"], BAR_BCAST_VS_MUTEX)
        median_bar(f"broadcast 1 -> 1, batches: >= {BAR_BCAST_1_1_BATCH_VS_SPSC:.1f}x spsc fan-out, median over "
                   "alternating runs", [m for m in medians if m[0] == "1 -> 1" and m[1] == "batch" and m[2] == "spsc"],
                   BAR_BCAST_1_1_BATCH_VS_SPSC)
        for mode, label in (("recv", "recv"), ("batch", "batches")):
            median_bar(f"broadcast 1 -> 4, {label}: >= {BAR_BCAST_1_4_VS_SPSC:.1f}x spsc fan-out, median over "
                       "alternating runs", [m for m in medians if m[0] == "1 -> 4" and m[1] == mode and m[2] == "spsc"],
                       BAR_BCAST_1_4_VS_SPSC)
        if not text:
            return []
        return [f"### {title}", "",
                "Source: `bench/tools/broadcast_interleaved.cpp`. With more threads than the two cores, one run "
                "mostly measures where the scheduler put the threads, which changes from run to run, and the "
                "machine's state, which changes within minutes (the tool's header comment gives the spread); this "
                "tool alternates single runs of the ring and "
                "a baseline, swapping their order every round, and reports the median and quartiles of the "
                "per-round ratio. Rates in M messages/s delivered.", "",
                "```", *text.rstrip().splitlines(), "```", ""]

    def broadcast_o2_section(self) -> list[str]:
        """The ring's single-producer cases built at -O2 against the main (-O3) run."""
        path = os.path.join(self.results, "broadcast_o2.json")
        main = self.files.get("broadcast_benchmark")
        out = ["### Broadcast built at -O2", "",
               "Source: the same `bench/broadcast_benchmark.cpp`, built a second time at `-O2` (target "
               "`broadcast_benchmark_o2`, bench/CMakeLists.txt), its single-producer ring cases run after the "
               "main benchmark. The hot paths are forced inline so that a `-O2` build (RelWithDebInfo, many "
               "projects' default) is not the 4-5x slower one it was before session 11; this table is the check. "
               "The two columns come from different processes minutes apart: read ratios near 1 as parity. "
               "M messages/s delivered.", ""]
        if not os.path.exists(path) or main is None:
            return out + ["_Not run._", ""]
        o2 = BenchFile(path)
        rows = []
        for r in o2.rows:
            if r.family != "BM_Broadcast":
                continue
            base = main.find("BM_Broadcast", r.targs, P=r.p("P"), S=r.p("S"), batch=r.p("batch"))
            mode = "batch 64" if r.p("batch") == "1" else "recv"
            rows.append([f"{r.p('P')} -> {r.p('S')}", mode, ", ".join(r.targs), fmt_rate(base.items if base else None),
                         fmt_rate(r.items), fmt_ratio(ratio(r, base))])
        return out + table(["P -> S", "mode", "impl", "-O3 (main run)", "-O2", "-O2 / -O3"], rows) + [""]

    def lane_model_section(self) -> list[str]:
        """broadcast_lane_model's output, as it printed it."""
        text = read_text(self.results, "broadcast_lane_model.txt")
        out = ["### Broadcast 2 -> 2: one shared ring against one lane per producer (a model)", "",
               "Source: `bench/tools/broadcast_lane_model.cpp` (minimal models of the layouts, not the library; "
               "its header comment says what each is). Behind the decision not to merge a lane-per-producer "
               "ring: [notes/broadcast.md](notes/broadcast.md), session 11.", ""]
        if not text:
            return out + ["_Not run._", ""]
        return out + ["```", *text.rstrip().splitlines(), "```", ""]

    def interleaved_bar(self, what: str, measured: str, v: float, ok: bool, title: str, source: str,
                        text: str | None) -> list[str]:
        """The bar row and the section of an interleaved tool: its explanation and raw output."""
        self.bar(what, measured, v, ok, f"[interleaved]({section_link(title)})")
        return [f"### {title}", "", source, "", "```", *(text or "").rstrip().splitlines(), "```", ""]

    def plot_broadcast(self, data: dict[tuple[str, str], dict[int, float]], impls) -> None:
        dat = os.path.join(self.results, "plot_broadcast.dat")
        block, plots = 0, {"0": [], "1": []}
        with open(dat, "w", encoding="utf-8") as f:
            for batch in ("0", "1"):
                for impl, name in impls:
                    f.write(f"# {impl} batch {batch}\n")
                    for s, v in sorted(data.get((impl, batch), {}).items()):
                        f.write(f"{s} {v}\n")
                    f.write("\n\n")
                    plots[batch].append(f"'{dat}' index {block} using 1:2 with linespoints lw 2 title '{name}'")
                    block += 1
        # Whole decades, plus one empty decade on top for the key (log scale: offsets do not apply).
        values = [v for series in data.values() for v in series.values() if v > 0] or [1.0]
        lo = 10.0 ** math.floor(math.log10(min(values)))
        hi = 10.0 ** (math.ceil(math.log10(max(values))) + 1)
        lines = [
            "set terminal svg size 1000,440 dynamic noenhanced font 'sans,11' background '#ffffff'",
            "set multiplot layout 1,2 title 'Broadcast, 1 producer: delivered M msg/s vs subscribers (log scale)'",
            "set xlabel 'subscribers'", "set ylabel 'M messages/s delivered'", "set logscale y",
            "set xrange [0.8:4.2]", "set xtics (1, 2, 4)", f"set yrange [{lo}:{hi}]", "set key top left font ',9'", "set grid ytics",
            "set title 'recv (one message per call)'", "plot " + ", ".join(plots["0"]),
            "set title 'recv_batch (up to 64 per call)'", "plot " + ", ".join(plots["1"]),
            "unset multiplot",
        ]
        self.plot_jobs.append(("broadcast_subscribers.svg", "\n".join(lines)))

    # ---- Hit ratio ----------------------------------------------------------------------------
    def hit_ratio_section(self) -> list[str]:
        out = ["## Hit ratio against LRU and Caffeine", "",
               "Source: `bench/tools/hit_ratio.cpp` replaying the project's trace generator "
               "(`bench/common/traces.hpp`, the same keys as the anchors' `gen_trace.py`): get; on a miss, "
               "insert. Columns: `lru` exact LRU, `sim` the policy in a single-threaded simulator, `cache` the "
               "real `streamcache::Cache` (reads reach the policy in batches). Caffeine 2.6.2 and OPT are the "
               "anchors' constants (copied into `scripts/bench_report.py`). Bar per row: cache >= "
               f"max(Caffeine, LRU) - {BAR_HIT_RATIO_SLACK}. Policy design and history: "
               "[notes/policy.md](notes/policy.md).", ""]
        rows, any_data, failures, unmeasured, total = [], False, [], [], 0
        for pattern, spec, anchors, _ in ANCHOR_TRACES:
            text = read_text(self.results, f"hit_ratio_{pattern}.txt")
            got = parse_hit_ratio(text or "")
            if got:
                any_data = True
                self.plot_hit_ratio(pattern, spec, got, anchors)
            for size, (a_lru, caffeine, opt) in sorted(anchors.items()):
                m = got.get(size)
                lru = m.get("lru") if m else None
                cache = m.get("cache") if m else None
                bar = max(caffeine, lru if lru is not None else a_lru) - BAR_HIT_RATIO_SLACK
                ok = None if cache is None else cache >= bar - 1e-9
                total += 1
                if ok is None:
                    unmeasured.append(f"{pattern} {size}")
                if ok is False:
                    failures.append(f"{pattern} {size}")
                rows.append([f"`{pattern}`", str(size), f"{a_lru:.3f}", fmt3(lru), f"{caffeine:.3f}", f"{opt:.3f}",
                             fmt3(m.get("sim") if m else None), fmt3(cache), f"{bar:.3f}",
                             "n/a" if cache is None else f"{cache - bar:+.3f}", verdict(cache, ok)])
        if not any_data:
            self.bar(f"hit ratio >= max(Caffeine, LRU) - {BAR_HIT_RATIO_SLACK} on each anchors row", "no run",
                     None, None, "hit ratio")
            return out + ["_Not run: no `hit_ratio` output._", ""]
        out += table(["trace", "size", "LRU (anchors)", "LRU (run)", "Caffeine", "OPT", "sim", "cache", "bar",
                      "margin", "verdict"], rows)
        out += ["", "Trace specs (`hit_ratio --trace-spec \"SPEC\" SIZE...`):", ""]
        out += [f"- `{p}`: `{s}`" for p, s, _, _ in ANCHOR_TRACES]
        out += [""] + [f"![hit ratio, {p}](plots/hit_ratio_{p}.svg)" for p, *_ in ANCHOR_TRACES
                       if f"hit_ratio_{p}.svg" in dict(self.plot_jobs)]
        met = total - len(failures) - len(unmeasured)
        measured = f"{met} / {total} rows met" + (f"; fail: {', '.join(failures)}" if failures else "") + (
            f"; not measured: {', '.join(unmeasured)}" if unmeasured else "")
        # Met only when every row was measured and passed; one failing row is enough for "not met".
        ok = False if failures else (None if unmeasured else True)
        self.bar(f"hit ratio >= max(Caffeine, LRU) - {BAR_HIT_RATIO_SLACK} on each anchors row", measured,
                 1.0, ok, "[hit ratio](#hit-ratio-against-lru-and-caffeine)")
        return out + [""]

    def plot_hit_ratio(self, pattern: str, spec: str, got: dict[int, dict[str, float]], anchors) -> None:
        dat = os.path.join(self.results, f"plot_hit_ratio_{pattern}.dat")
        cols = [c for c in ("lru", "sim", "cache") if any(c in v for v in got.values())]
        with open(dat, "w", encoding="utf-8") as f:
            f.write("# size " + " ".join(cols) + "\n")
            for size in sorted(got):
                f.write(f"{size} " + " ".join(str(got[size].get(c, "NaN")) for c in cols) + "\n")
            f.write("\n\n# size caffeine opt (anchors)\n")
            for size, (_, caffeine, opt) in sorted(anchors.items()):
                f.write(f"{size} {caffeine} {opt}\n")
        titles = {"lru": "LRU", "sim": "streamcache policy (simulator)", "cache": "streamcache Cache"}
        plots = [f"'{dat}' index 0 using 1:{i + 2} with linespoints lw 2 title '{titles[c]}'"
                 for i, c in enumerate(cols)]
        plots += [f"'{dat}' index 1 using 1:2 with points pt 7 ps 1.2 title 'Caffeine 2.6.2 (anchors)'",
                  f"'{dat}' index 1 using 1:3 with points pt 6 ps 1.2 title 'Belady OPT (anchors)'"]
        lines = [
            "set terminal svg size 720,460 dynamic noenhanced font 'sans,11' background '#ffffff'",
            f"set title 'Hit ratio vs cache size: {PATTERN_TITLES.get(pattern, pattern)}'",
            "set xlabel 'cache size (entries, log scale)'", "set ylabel 'hit ratio'", "set logscale x",
            "set yrange [0:1.35]", "set ytics 0, 0.1, 1", "set key top left font ',9'", "set grid",
            "plot " + ", ".join(plots),
        ]
        self.plot_jobs.append((f"hit_ratio_{pattern}.svg", "\n".join(lines)))

    # ---- StreamingMap -------------------------------------------------------------------------
    def streaming_map_section(self) -> list[str]:
        f = self.files.get("streaming_map_benchmark")
        out = ["## StreamingMap", "",
               "Source: `bench/streaming_map_benchmark.cpp` (its header comment defines every case and "
               "counter) and `bench/tools/streaming_map_memory.cpp`; design: [design.md](design.md#the-streamingmap)"
               + "".join(f"; analysis: [notes/{os.path.basename(n)}](notes/{os.path.basename(n)})"
                         for n in sorted(glob.glob(os.path.join(NOTES_DIR, "streaming_map*.md")))) + "."]
        if f is None:
            out += ["", "_No `streaming_map_benchmark` results (binary missing or failed)._"]
        else:
            out += ["", f"All cases, {self.median_note(f)}. `items/s` is events per second (see the source for "
                    "each case's definition); counters as the benchmark reports them.", ""]
            counter_keys = sorted({k for r in f.rows for k in r.counters})
            rows = []
            for r in f.rows:
                rows.append([f"`{r.name}`", fmt_time(r),
                             fmt_rate(r.items)] + [fmt_counter(r.counters.get(k)) for k in counter_keys])
            out += table(["case", "time", "M items/s"] + counter_keys, rows)
            # Ours against the in-binary baseline: same arguments, except `ring`, which the
            # baseline does not have (it never loses events).
            pairs = []
            for r in f.rows:
                if r.family == "BM_Live" and r.targs == ["StreamingMapLive"]:
                    params = {k: v for k, v in r.params.items() if k != "ring"}
                    base = next((b for b in f.rows if b.family == "BM_Live" and b.targs == ["MutexFanout"] and
                                 {k: v for k, v in b.params.items() if k != "ring"} == params), None)
                    if base is not None:
                        pairs.append([f"`{r.name}`", f"`{base.name}`", fmt_ratio(ratio(r, base))])
            if pairs:
                out += ["", "Live fan-out, ours / mutex baseline (events delivered per second):", ""]
                out += table(["ours", "baseline", "ratio"], pairs)
        text = read_text(self.results, "streaming_map_memory.txt")
        if text:
            m = re.search(r"^bar \(.*\):\s*(.*)$", text, re.M)
            met = None if m is None else m.group(1).strip() == "met"
            out += ["", "`streaming_map_memory` output:", "", "```", text.rstrip(), "```"]
            self.bar("StreamingMap history pass: extra peak memory < 1% of the map",
                     "see output" if m is None else m.group(1).strip(), 1.0 if m else None, met,
                     "[streaming map](#streamingmap)")
        else:
            self.bar("StreamingMap history pass: extra peak memory < 1% of the map", "no run", None, None,
                     "streaming map")
            out += ["", "_No `streaming_map_memory` output._"]
        return out + [""]

    # ---- Anything else -------------------------------------------------------------------------
    def generic_section(self, name: str, f: BenchFile) -> list[str]:
        out = [f"## {name}", "", f"Source: `bench/{name}.cpp`, {self.median_note(f)}; no bars are attached.", ""]
        rows = [[f"`{r.name}`", fmt_time(r), fmt_rate(r.items)]
                for r in f.rows]
        return out + table(["case", "time", "M items/s"], rows) + [""]

    # ---- The document ---------------------------------------------------------------------------
    def render(self) -> str:
        meta = self.meta
        sections = self.cache_section() + self.memory_section() + self.broadcast_section()
        sections += self.hit_ratio_section() + self.streaming_map_section()
        for name, f in self.files.items():
            if name not in ("cache_benchmark", "broadcast_benchmark", "streaming_map_benchmark"):
                sections += self.generic_section(name, f)
        self.render_plots()

        load_s = " / ".join(f"{x:.2f}" for x in meta.get("load_start", []))
        load_e = " / ".join(f"{x:.2f}" for x in meta.get("load_end", []))
        kind = "quick smoke run (`--quick`)" if meta.get("quick") else "full run"
        head = [
            "# Benchmarks",
            "",
            "<!-- Generated by scripts/bench (scripts/bench_report.py); do not edit by hand: re-run",
            "     `scripts/bench`, or `scripts/bench --report-only` to re-render saved results. -->",
            "",
            "Generated by `scripts/bench` from Google Benchmark's JSON output and the tools in `bench/tools/`; "
            "the plots in `docs/plots/` are regenerated by the same script. Every ratio compares "
            "implementations measured in the same run of the same binary. The diagnosis behind these "
            "numbers and their history live in the hand-written notes (how to use and tune the library: "
            "[guide.md](guide.md)):",
            "",
        ]
        for note in sorted(glob.glob(os.path.join(NOTES_DIR, "*.md"))):
            head.append(f"- [notes/{os.path.basename(note)}](notes/{os.path.basename(note)}): {note_title(note)}")
        head += [
            "",
            "## Run",
            "",
            f"- Kind: {kind}; {meta.get('seconds', '?')} s wall time.",
            f"- Date: {meta.get('date_start')} to {meta.get('date_end')}.",
            f"- Machine: `nproc` = {meta.get('nproc')}, {meta.get('cpu_model')}.",
            f"- Load average (1 / 5 / 15 min): {load_s} at the start, {load_e} at the end. "
            + load_comment(meta),
            f"- Commit: `{meta.get('commit')}` ({meta.get('commit_subject')})"
            + (f"; the working tree had local changes in {len(meta['dirty'])} tracked file(s): "
               + ", ".join(f"`{d}`" for d in meta["dirty"][:8]) if meta.get("dirty") else "") + ".",
            f"- Compiler: {meta.get('compiler')}; build directory `{meta.get('build_dir')}`.",
        ]
        if meta.get("benchmarks_missing"):
            head.append("- Benchmarks not run (no binary, or it did not build): "
                        + ", ".join(f"`{m}`" for m in meta["benchmarks_missing"]) + ".")
        if meta.get("not_built"):
            head.append("- Targets that did not build (skipped): " + ", ".join(f"`{m}`" for m in meta["not_built"]) + ".")
        loads = [f"`{n}` {f.context['load_avg'][0]:.2f}" for n, f in self.files.items()
                 if isinstance(f.context.get("load_avg"), list) and f.context["load_avg"]]
        if loads:
            head.append("- 1-minute load average as each benchmark binary started: " + ", ".join(loads) + ".")
        if any(f.context.get("library_build_type") == "debug" for f in self.files.values()):
            head.append("- Google Benchmark reports `library_build_type: debug`: Debian's libbenchmark (the "
                        "harness) is built that way; the code measured is the Release build above.")
        if meta.get("quick"):
            head.append("- **Smoke run**: one repetition, `--benchmark_min_time=0.05`, anchor sizes only: the "
                        "figures are indicative; the committed page comes from a full run.")
        failed = [c for c in meta.get("commands", []) if c.get("returncode") != 0]
        for c in failed:
            head.append(f"- **Failed** ({c.get('returncode')}): `{c['command']}`: "
                        + " / ".join(c.get("stderr_tail", [])))
        head += ["", "Commands, in order:", "", "```"]
        head += [f"{c['command']}    # {c['seconds']} s" for c in meta.get("commands", [])]
        head += ["```", "", "## Bars (from the issue), computed from this run", ""]
        head += table(["bar", "measured", "verdict", "section"], self.bars)
        head += ["", "Absolute rates on this machine move by 2x or more between runs when other processes share "
                 "the cores; compare the ratios, and read 2-thread rows on a loaded machine as rough.", ""]
        return "\n".join(head + sections).rstrip() + "\n"

    def render_plots(self) -> None:
        gnuplot = shutil.which("gnuplot")
        if not gnuplot:
            print("warning: gnuplot not found (scripts/setup --bench installs it); plots not regenerated",
                  file=sys.stderr)
            return
        os.makedirs(self.plots_dir, exist_ok=True)
        for svg, script in self.plot_jobs:
            target = os.path.join(self.plots_dir, svg)
            full = f"set output '{target}'\n{script}\n"
            with open(os.path.join(self.results, svg[:-4] + ".gp"), "w", encoding="utf-8") as f:
                f.write(full)
            proc = subprocess.run([gnuplot], input=full, text=True, capture_output=True, check=False)
            if proc.returncode != 0:
                print(f"warning: gnuplot failed for {svg}: {proc.stderr.strip()}", file=sys.stderr)
            else:
                self.plots.append(svg)


def fmt_time(r: Row) -> str:
    t = r.raw.get("real_time", 0.0)
    return f"{t:.0f} {r.time_unit}" if t >= 100 else f"{t:.1f} {r.time_unit}" if t >= 10 else f"{t:.2f} {r.time_unit}"


def fmt3(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def fmt_counter(x: float | None) -> str:
    if x is None:
        return ""
    if x == 0:
        return "0"
    if math.isnan(x):
        return "nan"
    return f"{x:.3g}"


def note_title(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    except OSError:
        pass
    return os.path.basename(path)


def load_comment(meta: dict) -> str:
    cores = int(meta.get("nproc") or 1)
    loads = meta.get("load_start", [])[:1] + meta.get("load_end", [])[:1]
    if loads and max(loads) > 0.5 * cores:
        return (f"With {cores} cores, a load above {cores} means other processes competed with the "
                "benchmark threads: real-time rates are depressed and noisy (CPU-time columns less so).")
    return "The machine was close to idle."


def main() -> int:
    # allow_abbrev=False: unknown options go to the benchmarks and must never match ours by prefix.
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--build-dir", default=os.path.join(REPO, "build", "release"))
    parser.add_argument("--results", help="default: BUILD_DIR/bench-results")
    parser.add_argument("--quick", action="store_true",
                        help=f"--benchmark_min_time={QUICK_MIN_TIME}, one repetition, anchor sizes only")
    parser.add_argument("--report-only", action="store_true", help="re-render from saved results")
    parser.add_argument("--not-built", default="", help="comma-separated targets that failed to build (skipped)")
    parser.add_argument("--doc", default=os.path.join(REPO, "docs", "benchmarks.md"))
    parser.add_argument("--plots", default=os.path.join(REPO, "docs", "plots"))
    args, extra = parser.parse_known_args()
    build_dir = os.path.abspath(args.build_dir)
    results = os.path.abspath(args.results or os.path.join(build_dir, "bench-results"))
    if not args.report_only:
        run_all(build_dir, results, args.quick, extra, {t for t in args.not_built.split(",") if t})
    elif not os.path.exists(os.path.join(results, "run.json")):
        print(f"bench_report: no {rel(results)}/run.json; run without --report-only first", file=sys.stderr)
        return 2
    meta, files = load_results(results)
    report = Report(meta, files, results, os.path.abspath(args.plots))
    text = report.render()
    with open(args.doc, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {rel(args.doc)} and {len(report.plots)} plot(s) in {rel(args.plots)}")
    for b in report.bars:
        print(f"  {b[2].replace('**', ''):12} {b[0]}: {b[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
