// streaming_map_memory: what a StreamingMap costs per entry (32- vs 64-bit timestamps), and
// the extra peak memory of one subscriber's history pass against the map's own footprint.
//
//   streaming_map_memory [ENTRIES]        (default 1000000)
//
// Entries are uint64_t -> Value64 (64 bytes), keys (i + 1) * 0x9E3779B97F4A7C15, no size
// bound, no expiry, default options otherwise (ring_capacity 65536, snapshot_batch 1024).
// Every measurement runs in a forked child of its own so that it starts from the same heap.
//
// Three ways of counting memory, because each misleads in its own way:
//  - RSS: resident pages (/proc/self/statm), after malloc_trim(0) so pages glibc holds
//    but does not use are not counted. What the OS charges; page-granular.
//  - malloc: mallinfo2() uordblks + hblkhd, the bytes glibc has handed out (small chunks
//    in every arena + mmapped large blocks), chunk headers and rounding included.
//  - new: a byte counter in this tool's replacement operator new / delete (at
//    malloc_usable_size granularity), which also keeps an exact running peak; it sees
//    every C++ allocation, so it catches a transient peak that sampling could miss.
//
// 1. Bytes per entry: build an empty map (its fixed cost: the ring's slots and the shards),
//    then insert ENTRIES and run_pending_tasks(); per entry = (after - empty) / ENTRIES.
//    "beyond" subtracts what any map of shared values must hold: the 8-byte key, the 64-byte
//    value and its shared_ptr control block (16 bytes in the same make_shared allocation),
//    88 bytes. (glibc rounds that 80-byte allocation up to a 96-byte chunk, so 8 of the
//    "beyond" bytes are the allocator's and belong to no design.)
// 2. History pass: build the map (mark_snapshot_end), note its footprint (the growth from
//    before the map to after the build), then stream() (or stream_batches(64)) through the
//    whole history to kSnapshotEnd. Before the pass and at every 4096th event (and at the
//    end) read malloc and RSS; the pass's extra peak = max(sample) - before. The new-counter
//    peak is exact. Bar: extra peak < 1% of the map's footprint.
#include <malloc.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <span>
#include <stdexcept>
#include <string>

#include "common/memory_probe.hpp"
#include "streamcache/streaming_map.hpp"

// ---- Counting operator new / delete -------------------------------------------------------
// The plain and aligned forms of new and of (sized) delete are replaced; libstdc++'s array
// and nothrow forms forward to them. Sizes are malloc_usable_size() on both sides, so allocation and release agree.

namespace {

std::atomic<int64_t> g_new_bytes{0};
std::atomic<int64_t> g_new_peak{0};

void count_allocation(void* p) {
  // relaxed (all three): statistics only; each measurement reads them from the thread that
  // allocates (the map's work happens on the measuring thread), so no ordering is needed.
  const auto size = static_cast<int64_t>(malloc_usable_size(p));
  const int64_t now = g_new_bytes.fetch_add(size, std::memory_order_relaxed) + size;
  int64_t peak = g_new_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_new_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

// Out of line: inlined into a delete-expression, the free() would trip GCC's
// -Wmismatched-new-delete (it cannot know that this operator new is malloc()).
[[gnu::noinline]] void counted_free(void* p) {
  if (p == nullptr) return;
  // relaxed: a statistic, see count_allocation().
  g_new_bytes.fetch_sub(static_cast<int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
  std::free(p);
}

}  // namespace

void* operator new(std::size_t size) {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  count_allocation(p);
  return p;
}

void operator delete(void* p) noexcept {
  counted_free(p);
}

void operator delete(void* p, std::size_t) noexcept {
  counted_free(p);
}

void* operator new(std::size_t size, std::align_val_t align) {
  const auto alignment = static_cast<std::size_t>(align);
  // aligned_alloc needs a size that is a multiple of the alignment.
  void* p = std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
  if (p == nullptr) throw std::bad_alloc();
  count_allocation(p);
  return p;
}

void operator delete(void* p, std::align_val_t) noexcept {
  counted_free(p);
}

void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  counted_free(p);
}

namespace {

struct Value64 {
  std::array<uint64_t, 8> words{};
};
static_assert(sizeof(Value64) == 64);

// Key + value + shared_ptr control block (make_shared: one allocation of value and counts).
constexpr double kEssentialBytes = sizeof(uint64_t) + sizeof(Value64) + 16;
constexpr uint64_t kSampleEvery = 4096;
constexpr double kMiB = 1024.0 * 1024.0;

constexpr uint64_t scatter(uint64_t i) { return (i + 1) * 0x9E3779B97F4A7C15ULL; }

int64_t malloc_bytes() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<int64_t>(mi.uordblks + mi.hblkhd);
}

struct Reading {
  int64_t rss;
  int64_t malloc;
  int64_t news;
};

Reading read_memory(bool trim) {
  if (trim) malloc_trim(0);
  Reading r;
  r.malloc = malloc_bytes();
  r.news = g_new_bytes.load(std::memory_order_relaxed);  // relaxed: see count_allocation()
  r.rss = streamcache::bench::resident_bytes();
  return r;
}

template <class Timestamp>
using Map = streamcache::StreamingMap<uint64_t, Value64, Timestamp>;

template <class Timestamp>
void fill(Map<Timestamp>& map, uint64_t entries) {
  for (uint64_t i = 0; i < entries; ++i) {
    Value64 v;
    v.words.fill(i);
    map.insert(scatter(i), v);
  }
  map.run_pending_tasks();
}

// ---- 1. Bytes per entry -------------------------------------------------------------------

template <class Timestamp>
void measure_entry_cost(const char* label, uint64_t entries) {
  const Reading before = read_memory(true);
  Map<Timestamp> map;
  const Reading empty = read_memory(true);
  fill(map, entries);
  const Reading full = read_memory(true);
  if (!map.get(scatter(entries - 1))) throw std::runtime_error("the last entry is missing");
  const auto n = static_cast<double>(entries);
  const auto per = [&](int64_t a, int64_t b) { return static_cast<double>(b - a) / n; };
  std::printf("%-22s %9.1f MiB %9.1f MiB %9.1f %9.1f %9.1f %9.1f %9.1f\n", label,
              static_cast<double>(empty.rss - before.rss) / kMiB, static_cast<double>(full.rss - empty.rss) / kMiB,
              per(empty.rss, full.rss), per(empty.malloc, full.malloc), per(empty.news, full.news),
              per(empty.rss, full.rss) - kEssentialBytes, per(empty.news, full.news) - kEssentialBytes);
}

// ---- 2. Extra peak memory of one history pass --------------------------------------------

struct Peak {
  int64_t rss = 0;
  int64_t malloc = 0;
  void sample() {
    const Reading r = read_memory(false);
    rss = std::max(rss, r.rss);
    malloc = std::max(malloc, r.malloc);
  }
};

void measure_history_pass(const char* label, size_t span, uint64_t entries, bool& bar_met) {
  const Reading before = read_memory(true);
  streamcache::StreamingMapOptions options;
  options.mark_snapshot_end = true;
  Map<uint64_t> map(options);
  fill(map, entries);
  const Reading built = read_memory(true);

  const Reading start = read_memory(false);
  Peak peak{start.rss, start.malloc};
  g_new_peak.store(start.news, std::memory_order_relaxed);  // relaxed: see count_allocation()
  uint64_t seen = 0;
  bool ended = false;
  auto on_event = [&](const streamcache::Event<uint64_t, Value64>& e) {
    if (e.kind == streamcache::EventKind::kSnapshotEnd) {
      ended = true;
      return;
    }
    if (++seen % kSampleEvery == 1) peak.sample();  // the 1st, 4097th, ... event
  };
  {
    if (span == 0) {
      for (const auto& e : map.stream()) {
        on_event(e);
        if (ended) break;
      }
    } else {
      for (auto events : map.stream_batches(span)) {
        for (const auto& e : events) on_event(e);
        if (ended) break;
      }
    }
    peak.sample();  // at the end, generator still alive
  }
  const int64_t new_peak = g_new_peak.load(std::memory_order_relaxed);  // relaxed: see count_allocation()
  if (seen != entries) throw std::runtime_error("the history pass did not deliver every entry");

  const double footprint_rss = static_cast<double>(built.rss - before.rss);
  const double footprint_malloc = static_cast<double>(built.malloc - before.malloc);
  const double footprint_new = static_cast<double>(built.news - before.news);
  const double extra_rss = static_cast<double>(peak.rss - start.rss);
  const double extra_malloc = static_cast<double>(peak.malloc - start.malloc);
  const double extra_new = static_cast<double>(new_peak - start.news);
  std::printf("%-22s %9.1f MiB %9.1f MiB | %9.1f KiB %9.1f KiB %9.1f KiB | %7.4f%% %7.4f%% %7.4f%%\n", label,
              footprint_rss / kMiB, footprint_malloc / kMiB, extra_rss / 1024.0, extra_malloc / 1024.0,
              extra_new / 1024.0, 100.0 * extra_rss / footprint_rss, 100.0 * extra_malloc / footprint_malloc,
              100.0 * extra_new / footprint_new);
  bar_met = extra_malloc < 0.01 * footprint_malloc && extra_new < 0.01 * footprint_new &&
            extra_rss < 0.01 * footprint_rss;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const uint64_t entries =
        streamcache::bench::parse_entries(argc, argv, "streaming_map_memory", kSampleEvery, uint64_t{1} << 31);
    std::printf("%llu uint64_t -> 64-byte value entries (default options, no bound, no expiry)\n\n",
                static_cast<unsigned long long>(entries));

    std::printf("1. Bytes per entry; 'beyond' = per entry - %.0f (key + value + shared_ptr control block)\n",
                kEssentialBytes);
    std::printf("%-22s %13s %13s %9s %9s %9s %9s %9s\n", "timestamps", "empty map", "entries", "RSS/e",
                "malloc/e", "new/e", "RSS bey.", "new bey.");
    bool ok = true;
    ok &= streamcache::bench::run_in_child("uint32_t", [&] {
      measure_entry_cost<uint32_t>("uint32_t (compact)", entries);
      return true;
    });
    ok &= streamcache::bench::run_in_child("uint64_t", [&] {
      measure_entry_cost<uint64_t>("uint64_t (default)", entries);
      return true;
    });

    std::printf("\n2. Extra peak memory of one history pass (sampled every %llu events; 'new' is exact)\n",
                static_cast<unsigned long long>(kSampleEvery));
    std::printf("%-22s %13s %13s | %13s %13s %13s | %8s %8s %8s\n", "pass", "map RSS", "map malloc",
                "extra RSS", "extra malloc", "extra new", "RSS", "malloc", "new");
    bool bar = true;
    ok &= streamcache::bench::run_in_child("stream()", [&] {
      bool met = false;
      measure_history_pass("stream()", 0, entries, met);
      return met;
    });
    ok &= streamcache::bench::run_in_child("stream_batches(64)", [&] {
      bool met = false;
      measure_history_pass("stream_batches(64)", 64, entries, met);
      return met;
    });
    if (!ok) bar = false;
    std::printf("\nbar (extra peak < 1%% of the map's footprint, every counter): %s\n", bar ? "met" : "NOT met or failed");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "streaming_map_memory: %s\n", e.what());
    return 2;
  }
}
