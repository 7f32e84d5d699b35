// Broadcast throughput: messages delivered per second, summed over subscribers.
//
// Load model: P producer threads publish a fixed total of kMessages uint64_t
// (split evenly) as fast as they can into a ring of capacity 4096; S subscriber
// threads, all subscribed before the first publish, receive until the channel is
// closed and drained, one message per call (`recv`) or up to 64 per call (`batch`).
// Threads are started per iteration; with kMessages = 2^21 their start-up is < 2%.
// items/s = messages delivered (summed over subscribers) per wall-clock second;
// per_cpu_s = the same per second of CPU time of the whole process (all threads,
// spinning and yielding included). On a machine shared with other work, wall-clock
// rates mostly measure the scheduler; the CPU-time rate says what a message costs.
//
// Implementations (RingBlock, RingOverwrite, SpscFanout, MutexDeque), their adapter and the
// run itself: common/broadcast_baselines.hpp, shared with tools/broadcast_interleaved.cpp.
// BM_BroadcastPublishBatch (2 -> 2 only): the same, with producers handing over 64
// messages per call: Broadcast::publish_batch (one claim per 64), spsc_queue::push(array,
// n), and one lock + notify per 64 for the mutex deque. The bars are on
// BM_Broadcast (one publish per message); these rows show what batching producers buy.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>

#include "common/broadcast_baselines.hpp"

namespace {

using namespace streamcache::bench::broadcast;

// Args: producers, subscribers, batch (0 = recv, 1 = recv_batch(64)).
// kPublishBatches: producers hand over 64 messages per call (Broadcast::publish_batch,
// spsc_queue::push(array), one lock per 64 for the mutex deque) instead of one.
template <class Impl, bool kPublishBatches>
void run_broadcast(benchmark::State& state) {
  const int producers = static_cast<int>(state.range(0));
  const int subscribers = static_cast<int>(state.range(1));
  const bool batch = state.range(2) != 0;
  uint64_t delivered_total = 0;
  uint64_t checksum = 0;
  double cpu_seconds = 0;
  for (auto _ : state) {
    const RunResult run = run_once<Impl>(producers, subscribers, batch, kPublishBatches);
    delivered_total += run.delivered;
    checksum += run.checksum;
    cpu_seconds += run.cpu_seconds;
  }
  benchmark::DoNotOptimize(checksum);
  const uint64_t offered = kMessages * static_cast<uint64_t>(subscribers) * state.iterations();
  state.SetItemsProcessed(static_cast<int64_t>(delivered_total));
  state.counters["lost"] = benchmark::Counter(
      static_cast<double>(offered - delivered_total) / static_cast<double>(offered),
      benchmark::Counter::kDefaults);
  state.counters["per_cpu_s"] = benchmark::Counter(
      cpu_seconds > 0 ? static_cast<double>(delivered_total) / cpu_seconds : 0.0,
      benchmark::Counter::kDefaults, benchmark::Counter::kIs1000);
}

template <class Impl>
void BM_Broadcast(benchmark::State& state) {
  run_broadcast<Impl, false>(state);
}

template <class Impl>
void BM_BroadcastPublishBatch(benchmark::State& state) {
  run_broadcast<Impl, true>(state);
}

void Cases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"P", "S", "batch"});
  for (int batch : {0, 1}) {
    b->Args({1, 1, batch});
    b->Args({1, 2, batch});
    b->Args({1, 4, batch});
    b->Args({2, 2, batch});
  }
  b->UseRealTime()->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK_TEMPLATE(BM_Broadcast, RingBlock)->Apply(Cases);
BENCHMARK_TEMPLATE(BM_Broadcast, RingOverwrite)->Apply(Cases);
BENCHMARK_TEMPLATE(BM_Broadcast, SpscFanout)->Apply(Cases);
BENCHMARK_TEMPLATE(BM_Broadcast, MutexDeque)->Apply(Cases);

// Several producers are where a batch per call pays: each claim is a contended atomic add.
void PublishBatchCases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"P", "S", "batch"});
  b->Args({2, 2, 0});
  b->Args({2, 2, 1});
  b->UseRealTime()->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK_TEMPLATE(BM_BroadcastPublishBatch, RingBlock)->Apply(PublishBatchCases);
BENCHMARK_TEMPLATE(BM_BroadcastPublishBatch, SpscFanout)->Apply(PublishBatchCases);
BENCHMARK_TEMPLATE(BM_BroadcastPublishBatch, MutexDeque)->Apply(PublishBatchCases);

// What two producers can claim on this machine at best, with no ring around it: each of
// 2 threads loops on a fetch_add of one shared counter (a claim), then (arg 1) stores the
// claimed sequence into a 4096-slot array at seq mod 4096, as a publish stores into the
// ring, or (arg 2) into an array of its own. Items/s = claims per second, both threads
// together; a 2 -> 2 ring delivers each claim twice. The gap between arg 1 and arg 2 is
// the price of the shared slots: the next claim's locked add waits for the previous
// store, whose line the other producer wrote last.
struct alignas(64) ClaimCounter {
  std::atomic<uint64_t> next{0};
};
struct CeilingSlot {
  std::atomic<uint64_t> stamp{0};
  uint64_t value = 0;
};
ClaimCounter g_claims;
CeilingSlot g_ring[kCapacity];
CeilingSlot g_own[2][kCapacity];

void BM_ProducerCeiling(benchmark::State& state) {
  const int store = static_cast<int>(state.range(0));  // 0 none, 1 shared ring, 2 own array
  CeilingSlot* own = g_own[state.thread_index() % 2];
  uint64_t i = 0;
  for (auto _ : state) {
    for (int k = 0; k < 64; ++k, ++i) {
      const uint64_t seq = g_claims.next.fetch_add(1) + 1;
      CeilingSlot& slot = store == 1 ? g_ring[seq & (kCapacity - 1)] : own[i & (kCapacity - 1)];
      if (store != 0) {
        slot.value = seq;
        slot.stamp.store(2 * seq, std::memory_order_release);  // release: as a ring slot's stamp (nobody reads it here)
      }
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 64);
}
BENCHMARK(BM_ProducerCeiling)->ArgName("store")->Arg(0)->Arg(1)->Arg(2)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
