// Cache throughput against its baselines, on the anchors' workload (../shared/anchors.md):
//
//   Keys and prefill: common/cache_workload.hpp (Zipf 0.99 over 2^20 keys, a stream of
//   2^22 per thread; 2^16-entry caches prefilled with the hottest keys, then settled).
//   Operations: a get never inserts (a miss stays a miss); a put is an upsert. In the mixed
//   workload every fourth operation of a thread is a put (ops 3, 7, 11, ...), so all
//   implementations see exactly the same sequence. Increment100 is every operation an
//   atomic +1 of the key's counter (ours: upsert_with; tbb: an accessor held while it
//   adds; the mutex LRU: one critical section), the read-modify-write of per-key counters.
//
// Load model: closed loop, every thread issues its next operation as soon as the previous
// one returns, all threads on one shared instance. Items/s is operations per second summed
// over threads (real time). The hit_ratio counter is a sanity check: implementations that
// evict differently hit differently, and tbb::concurrent_hash_map never evicts.
//
// Every implementation runs through the same adapter (common/cache_baselines.hpp) and the
// same body, so ratios taken from one run of this binary compare like with like.
#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "common/cache_baselines.hpp"
#include "common/cache_workload.hpp"

namespace {

using streamcache::bench::Expiry;
using streamcache::bench::MutexLruAdapter;
using streamcache::bench::StreamcacheAdapter;
using streamcache::bench::TbbMapAdapter;

using namespace streamcache::bench::cache_workload;

constexpr int kMaxThreads = 2;
// Operations per benchmark iteration: the shared instance is re-read once per batch and
// the framework's per-iteration cost disappears from the figures.
constexpr size_t kBatch = 1024;
static_assert(kStreamLength % kBatch == 0);

/// The key stream of thread `t`: generated once per process (about a second for both
/// threads), outside any timed region.
const std::vector<uint64_t>& key_stream(int t) {
  static std::mutex mu;
  static std::array<std::unique_ptr<std::vector<uint64_t>>, kMaxThreads> streams;
  std::lock_guard<std::mutex> lock(mu);
  auto& stream = streams.at(static_cast<size_t>(t));
  if (!stream) stream = std::make_unique<std::vector<uint64_t>>(make_key_stream(t));
  return *stream;
}

// Workloads: how many operations out of every four are puts.
struct Read100 { static constexpr uint64_t kWritesPerFour = 0; static constexpr bool kIncrement = false; };
struct Read75Write25 { static constexpr uint64_t kWritesPerFour = 1; static constexpr bool kIncrement = false; };
struct Write100 { static constexpr uint64_t kWritesPerFour = 4; static constexpr bool kIncrement = false; };
struct Increment100 { static constexpr uint64_t kWritesPerFour = 4; static constexpr bool kIncrement = true; };

// Short names for the benchmark listing.
using Streamcache = StreamcacheAdapter<Expiry::kNone>;
using StreamcacheTtl = StreamcacheAdapter<Expiry::kTtl>;
using TbbMap = TbbMapAdapter;
using MutexLru = MutexLruAdapter;

/// The instance the threads of one benchmark run share. Thread 0 creates it before the
/// loop and destroys it after; the framework's start and stop barriers order that
/// against the other threads' loops.
template <class Impl>
std::atomic<Impl*> g_shared{nullptr};

template <class Workload, class Impl>
void BM_Cache(benchmark::State& state) {
  const std::vector<uint64_t>& keys = key_stream(state.thread_index());
  if (state.thread_index() == 0) {
    Impl* impl = make_prefilled<Impl>();
    // release: pairs with the acquire load in the loop (the start barrier orders it too).
    g_shared<Impl>.store(impl, std::memory_order_release);
  }

  size_t pos = 0;
  uint64_t hits = 0;
  uint64_t gets = 0;
  for (auto _ : state) {
    // acquire: pairs with the release store above.
    Impl& impl = *g_shared<Impl>.load(std::memory_order_acquire);
    for (size_t i = pos; i < pos + kBatch; ++i) {
      const uint64_t key = keys[i];
      if constexpr (Workload::kIncrement) {
        benchmark::DoNotOptimize(impl.increment(key));
      } else if ((i & 3) < Workload::kWritesPerFour) {
        impl.put(key, i);
      } else {
        auto value = impl.get(key);
        hits += value.has_value();
        ++gets;
        benchmark::DoNotOptimize(value);
      }
    }
    pos = (pos + kBatch) & (kStreamLength - 1);
  }

  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  if (gets > 0) {
    state.counters["hit_ratio"] = benchmark::Counter(static_cast<double>(hits) / static_cast<double>(gets),
                                                     benchmark::Counter::kAvgThreads);
  }
  if (state.thread_index() == 0) {
    // relaxed: the stop barrier already ordered every thread's last use before this.
    delete g_shared<Impl>.exchange(nullptr, std::memory_order_relaxed);
  }
}

#define STREAMCACHE_CACHE_BENCHMARK(workload, impl) \
  BENCHMARK_TEMPLATE2(BM_Cache, workload, impl)->Threads(1)->Threads(2)->UseRealTime()

#define STREAMCACHE_CACHE_WORKLOAD(workload)            \
  STREAMCACHE_CACHE_BENCHMARK(workload, Streamcache);    \
  STREAMCACHE_CACHE_BENCHMARK(workload, StreamcacheTtl); \
  STREAMCACHE_CACHE_BENCHMARK(workload, TbbMap);         \
  STREAMCACHE_CACHE_BENCHMARK(workload, MutexLru)

STREAMCACHE_CACHE_WORKLOAD(Read100);
STREAMCACHE_CACHE_WORKLOAD(Read75Write25);
STREAMCACHE_CACHE_WORKLOAD(Write100);
STREAMCACHE_CACHE_WORKLOAD(Increment100);

}  // namespace

BENCHMARK_MAIN();
