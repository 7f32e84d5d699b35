// cache_memory: bytes per entry beyond key and value, measured as resident-set growth.
//
//   cache_memory [ENTRIES]        (default 1000000)
//
// For each implementation: read RSS (/proc/self/statm), build it with room for 2^20
// entries (so nothing is evicted), insert ENTRIES distinct uint64_t -> uint64_t pairs,
// settle (our run_pending_tasks()), read RSS again, and print
//   (RSS after - RSS before) / entries - 16
// i.e. what an entry costs on top of its 8-byte key and 8-byte value: nodes, hash
// tables, policy and timer hooks, sketch, and allocator overhead, all included, as the
// anchors measured Moka (and as Caffeine's published figures count per-entry overhead).
//
// Robustness: glibc keeps freed memory in its arenas, and one implementation's leftovers
// would make the next one look cheaper. So every measurement runs in a child process of
// its own (fork), which starts from the same clean heap, and malloc_trim(0) runs before
// each RSS reading so that pages glibc holds but does not use are not counted. The
// figures are RSS, so they include hash-table slack at whatever load factor 1M entries
// happen to leave (absl and TBB grow by doubling).
#include <malloc.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>

#include "common/cache_baselines.hpp"
#include "common/memory_probe.hpp"

namespace {

using streamcache::bench::Expiry;

constexpr uint64_t kCapacity = uint64_t{1} << 20;
constexpr double kKeyAndValueBytes = 2 * sizeof(uint64_t);

int64_t trimmed_resident_bytes() {
  malloc_trim(0);
  return streamcache::bench::resident_bytes();
}

template <class Impl>
void measure(const char* label, uint64_t entries) {
  const int64_t before = trimmed_resident_bytes();
  Impl impl(kCapacity);
  for (uint64_t i = 0; i < entries; ++i) {
    // Keys scattered over 64 bits (splitmix-like odd multiplier, a bijection) so that no
    // implementation benefits from dense, ordered integer keys.
    impl.put((i + 1) * 0x9E3779B97F4A7C15ULL, i);
  }
  impl.settle();
  const int64_t after = trimmed_resident_bytes();
  const uint64_t held = impl.size();
  if (held != entries) {
    std::fprintf(stderr, "%s: holds %llu entries, expected %llu (evicted?)\n", label,
                 static_cast<unsigned long long>(held), static_cast<unsigned long long>(entries));
    std::exit(1);
  }
  const double delta = static_cast<double>(after) - static_cast<double>(before);
  std::printf("%-34s %10.1f MiB %12.1f\n", label, delta / (1024.0 * 1024.0),
              delta / static_cast<double>(entries) - kKeyAndValueBytes);
  std::fflush(stdout);
}

/// Runs `measure<Impl>` in a fresh child process; false if the child failed.
template <class Impl>
bool measure_in_child(const char* label, uint64_t entries) {
  return streamcache::bench::run_in_child(label, [&] {
    measure<Impl>(label, entries);
    return true;
  });
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const uint64_t entries = streamcache::bench::parse_entries(argc, argv, "cache_memory", 1, kCapacity);
    std::printf("%llu uint64_t -> uint64_t entries, capacity %llu; bytes per entry beyond key and value\n",
                static_cast<unsigned long long>(entries), static_cast<unsigned long long>(kCapacity));
    std::printf("%-34s %14s %12s\n", "implementation", "RSS delta", "bytes/entry");
    bool ok = true;
    ok &= measure_in_child<streamcache::bench::StreamcacheAdapter<Expiry::kTtl>>("streamcache, size bound + TTL", entries);
    ok &= measure_in_child<streamcache::bench::StreamcacheAdapter<Expiry::kNone>>("streamcache, size bound", entries);
    ok &= measure_in_child<streamcache::bench::StreamcacheAdapter<Expiry::kTtlTti>>("streamcache, size bound + TTL + TTI", entries);
    ok &= measure_in_child<streamcache::bench::MutexLruAdapter>("mutex + unordered_map + list LRU", entries);
    ok &= measure_in_child<streamcache::bench::TbbMapAdapter>("tbb::concurrent_hash_map (no bound)", entries);
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cache_memory: %s\n", e.what());
    return 2;
  }
}
