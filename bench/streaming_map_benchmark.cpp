// StreamingMap: time to the first history event, history events per second, and live
// fan-out (1 writer -> 4 subscribers) against a mutex + condition_variable + deque baseline.
// Peak memory of a history pass and bytes per entry are measured by
// bench/tools/streaming_map_memory.cpp (allocator counters need a process of their own).
//
// Data: `uint64_t -> Value64` (64 bytes), keys (i + 1) * 0x9E3779B97F4A7C15 (a bijection that
// scatters them over the shards), no size bound, no expiry.
//
// BM_TimeToFirstEvent/entries: the map (10k, 100k, 1M entries, mark_snapshot_end) is built
//   once per size outside the timed region; an iteration times stream() + begin(), i.e.
//   fixing the cutoff, subscribing to the ring, and priming the k-way merge over the shards
//   (one snapshot_batch = 1024 entries read). Manual time = wall clock of exactly that
//   region; the generator's destruction (which releases the history cursors) is outside it.
//   Counter cpu_us: the same region in this thread's CPU time (robust to a loaded machine).
// BM_HistoryPass/entries/api: one iteration reads the whole history of the same maps, up to
//   the kSnapshotEnd marker, through stream() (api 0: one event per ++) or
//   stream_batches(64) (api 1); items = entries. Single-threaded, so the rate is per CPU
//   second (Google Benchmark's default); the Time column is the wall clock.
// BM_HistoryPassCompact: the same with compact timestamps (StreamingMap<K, V, uint32_t>),
//   numbered from initial_seq = 2^32 - entries / 2, so that the history crosses a 2^32
//   boundary: the walk meets each shard's epoch marker, as in a map that has run long.
// BM_Live<Impl>/batch/ring/subs: a fresh map per iteration; `subs` (4) subscriber threads
//   each open stream() on the empty map (cutoff 0: no history) and wait; then 1 writer
//   thread inserts kLiveEvents values over kLiveKeys keys (each key rewritten 4 times) as
//   fast as it can. Subscribers consume per event (batch 1: stream()) or per span (batch 64:
//   stream_batches(64)), reading each value's first word, until they have seen the last
//   sequence; then the stop_token ends them. Manual time = wall clock from the writer's
//   start to the last subscriber's catching up (thread start-up and subscription are
//   outside it); items = events delivered, summed over subscribers. 5 busy threads on this
//   2-core machine: the writer competes with its subscribers for the cores, so the figures
//   measure the whole pipeline under oversubscription, not a free-running writer.
//   subs = 0 is the writer alone (items = inserts): the cost of the write path itself.
//   `ring` is ring_capacity: 65536 (the default), 262144 (= kLiveEvents: nobody can lag)
//   and 1024 (lag forced: subscribers fall behind and recover from the map, which is what
//   the recovery counters are for). Counters, per iteration and summed over subscribers:
//     resync_events, resets, recoveries (runs of kResync events);
//     upserts_missed: fraction of the writer's events not delivered one by one (a
//       recovery delivered the keys' newest values instead);
//     writer_Mops: the writer's own inserts per wall second, to tell a slow writer from
//       slow subscribers (when it is ~ items/s / 4, the writer is the bottleneck).
//   Impl: StreamingMapLive (ours), StreamingMapLiveCompact (ours with compact timestamps:
//   the writer alone and batch 1 at the default ring only) and MutexFanout: std::mutex + std::unordered_map of
//   (seq, shared_ptr) for the state, and per subscriber a std::mutex +
//   std::condition_variable_any + unbounded std::deque of the same Event objects; the writer
//   pushes each event into every subscriber's deque under the map lock (so sequences stay
//   in order with several writers); subscribers pop 1 or up to 64 events per lock. It never
//   loses an event (its deques grow instead), so it has no `ring` (0).
#include <benchmark/benchmark.h>

#include <time.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "streamcache/streaming_map.hpp"

namespace {

using streamcache::Event;
using streamcache::EventKind;

struct Value64 {
  std::array<uint64_t, 8> words{};
};
static_assert(sizeof(Value64) == 64);

using Ev = Event<uint64_t, Value64>;
template <class Timestamp>
using MapWith = streamcache::StreamingMap<uint64_t, Value64, Timestamp>;
using Map = MapWith<uint64_t>;

constexpr uint64_t scatter(uint64_t i) { return (i + 1) * 0x9E3779B97F4A7C15ULL; }

Value64 value_for(uint64_t i) {
  Value64 v;
  v.words.fill(i);
  return v;
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

/// The first sequence a history map of `entries` numbers its mutations after: 0, or for
/// compact timestamps a start that puts a 2^32 boundary in the middle of the history.
template <class Timestamp>
uint64_t history_initial_seq(uint64_t entries) {
  return std::is_same_v<Timestamp, uint64_t> ? 0 : (uint64_t{1} << 32) - entries / 2;
}

/// The history maps, built once per size and kept for the whole run (built outside every
/// timed region; the first benchmark that needs a size pays for it in its setup).
template <class Timestamp = uint64_t>
MapWith<Timestamp>& history_map(uint64_t entries) {
  static std::map<uint64_t, std::unique_ptr<MapWith<Timestamp>>> maps;
  std::unique_ptr<MapWith<Timestamp>>& slot = maps[entries];
  if (!slot) {
    streamcache::StreamingMapOptions options;
    options.mark_snapshot_end = true;
    options.initial_seq = history_initial_seq<Timestamp>(entries);
    slot = std::make_unique<MapWith<Timestamp>>(options);
    for (uint64_t i = 0; i < entries; ++i) slot->insert(scatter(i), value_for(i));
    slot->run_pending_tasks();  // settle the policy's buffers so no maintenance runs later
  }
  return *slot;
}

// ---- History ------------------------------------------------------------------------

void BM_TimeToFirstEvent(benchmark::State& state) {
  const auto entries = static_cast<uint64_t>(state.range(0));
  Map& map = history_map(entries);
  double cpu_total = 0;
  for (auto _ : state) {
    const double cpu0 = thread_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    streamcache::Generator<Ev> gen = map.stream();
    auto it = gen.begin();
    const bool got = it != gen.end();
    if (got) benchmark::DoNotOptimize(it->seq);
    const auto t1 = std::chrono::steady_clock::now();
    cpu_total += thread_cpu_seconds() - cpu0;
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    if (!got || it->kind != EventKind::kSnapshot) {
      state.SkipWithError("the first event is not a kSnapshot");
      break;
    }
  }
  state.counters["cpu_us"] =
      benchmark::Counter(cpu_total * 1e6 / static_cast<double>(std::max<int64_t>(1, state.iterations())));
}

template <class Timestamp>
void history_pass(benchmark::State& state) {
  const auto entries = static_cast<uint64_t>(state.range(0));
  const bool batches = state.range(1) != 0;
  MapWith<Timestamp>& map = history_map<Timestamp>(entries);
  uint64_t checksum = 0;
  for (auto _ : state) {
    uint64_t seen = 0;
    bool ended = false;
    auto count = [&](const Ev& e) {
      if (e.kind == EventKind::kSnapshotEnd) {
        ended = true;
        return;
      }
      ++seen;
      checksum += e.key;
    };
    if (batches) {
      for (std::span<const Ev> span : map.stream_batches(64)) {
        for (const Ev& e : span) count(e);
        if (ended) break;
      }
    } else {
      for (const Ev& e : map.stream()) {
        count(e);
        if (ended) break;
      }
    }
    if (seen != entries) {
      state.SkipWithError("the history did not deliver every entry exactly once");
      break;
    }
  }
  benchmark::DoNotOptimize(checksum);
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(entries));
}

void BM_HistoryPass(benchmark::State& state) { history_pass<uint64_t>(state); }
void BM_HistoryPassCompact(benchmark::State& state) { history_pass<uint32_t>(state); }

void HistorySizes(benchmark::internal::Benchmark* b) {
  for (int64_t n : {10'000, 100'000, 1'000'000}) b->Arg(n);
}

void HistoryPassCases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"entries", "batches"});
  for (int64_t api : {0, 1}) {
    for (int64_t n : {10'000, 100'000, 1'000'000}) b->Args({n, api});
  }
}

BENCHMARK(BM_TimeToFirstEvent)->ArgName("entries")->Apply(HistorySizes)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_HistoryPass)->Apply(HistoryPassCases)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HistoryPassCompact)->Apply(HistoryPassCases)->Unit(benchmark::kMillisecond);

// ---- Live fan-out ---------------------------------------------------------------------

constexpr int kSubscribers = 4;
constexpr uint64_t kLiveEvents = uint64_t{1} << 18;
constexpr uint64_t kLiveKeys = uint64_t{1} << 16;
constexpr size_t kLiveBatch = 64;

/// What one subscriber saw; the last sequence is the writer's kLiveEvents-th mutation.
struct SubscriberTally {
  uint64_t delivered = 0;  // every keyed event (snapshot, upsert, remove, resync)
  uint64_t upserts = 0;
  uint64_t resync_events = 0;
  uint64_t resets = 0;
  uint64_t recoveries = 0;  // runs of kResync events (a recovery that re-sent something)
  uint64_t checksum = 0;
  bool caught_up = false;
  bool in_resync = false;

  /// Returns true on the event that brings this subscriber to the writer's last sequence.
  bool on_event(const Ev& e) {
    const bool resync = e.kind == EventKind::kResync;
    if (resync && !in_resync) ++recoveries;
    in_resync = resync;
    switch (e.kind) {
      case EventKind::kReset:
        ++resets;
        return false;
      case EventKind::kSnapshotEnd:
        return false;
      case EventKind::kUpsert:
        ++upserts;
        break;
      case EventKind::kResync:
        ++resync_events;
        break;
      case EventKind::kSnapshot:
      case EventKind::kRemove:
        break;
    }
    ++delivered;
    if (e.value) checksum += e.value->words[0];  // touch the shared value, as a consumer would
    // A recovery's kResync pass carries the newest write of every key, so the last sequence
    // arrives either live or as a kResync; after a kReset sequences restart, hence `==`.
    if (!caught_up && e.seq == kLiveEvents) {
      caught_up = true;
      return true;
    }
    return false;
  }
};

/// The subscribers still behind the writer's last sequence. A mutex and a condition
/// variable rather than an atomic wait: the timing thread needs a deadline, so that a
/// subscriber that never catches up fails the case instead of hanging the run. Four
/// notifications per iteration: no cost that matters.
class CatchUp {
 public:
  explicit CatchUp(int subscribers) : pending_(subscribers) {}
  void mark() {
    {
      std::lock_guard lock(mu_);
      --pending_;
    }
    done_.notify_one();
  }
  bool wait_until(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mu_);
    return done_.wait_until(lock, deadline, [&] { return pending_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable done_;
  int pending_;
};

constexpr auto kCatchUpTimeout = std::chrono::seconds(120);

template <class Timestamp>
class StreamingMapLiveWith {
 public:
  explicit StreamingMapLiveWith(size_t ring_capacity) : map_(options(ring_capacity)) {}

  void insert(uint64_t i) { map_.insert(scatter(i % kLiveKeys), value_for(i)); }

  void subscribe_and_consume(size_t batch, std::stop_token stop, std::latch& ready, CatchUp& caught_up,
                             SubscriberTally& tally) {
    if (batch == 1) {
      streamcache::Generator<Ev> gen = map_.stream(std::move(stop));  // cutoff fixed here
      ready.count_down();
      for (const Ev& e : gen) {
        if (tally.on_event(e)) caught_up.mark();
      }
    } else {
      streamcache::Generator<std::span<const Ev>> gen = map_.stream_batches(batch, std::move(stop));
      ready.count_down();
      for (std::span<const Ev> span : gen) {
        for (const Ev& e : span) {
          if (tally.on_event(e)) caught_up.mark();
        }
      }
    }
  }

 private:
  static streamcache::StreamingMapOptions options(size_t ring_capacity) {
    streamcache::StreamingMapOptions o;
    o.ring_capacity = ring_capacity;
    return o;
  }

  MapWith<Timestamp> map_;
};
using StreamingMapLive = StreamingMapLiveWith<uint64_t>;
using StreamingMapLiveCompact = StreamingMapLiveWith<uint32_t>;

// The textbook fan-out, correct but not clever: one lock for the state and the sequence,
// one lock + condition variable + unbounded queue per subscriber.
class MutexFanout {
  struct Queue {
    std::mutex mu;
    std::condition_variable_any ready;  // _any: waits on a std::stop_token
    std::deque<Ev> events;
  };

 public:
  explicit MutexFanout(size_t /*ring_capacity: never lags*/) {}

  void insert(uint64_t i) {
    const uint64_t key = scatter(i % kLiveKeys);
    auto value = std::make_shared<const Value64>(value_for(i));
    std::lock_guard lock(mu_);
    const uint64_t seq = ++seq_;
    state_[key] = {seq, value};
    for (const std::shared_ptr<Queue>& q : subscribers_) {
      {
        std::lock_guard qlock(q->mu);
        q->events.push_back(Ev{seq, EventKind::kUpsert, key, value});
      }
      q->ready.notify_one();
    }
  }

  void subscribe_and_consume(size_t batch, std::stop_token stop, std::latch& ready, CatchUp& caught_up,
                             SubscriberTally& tally) {
    auto q = std::make_shared<Queue>();
    {
      // History: the state at subscription, in sequence order, then everything later.
      std::lock_guard lock(mu_);
      std::vector<Ev> history;
      history.reserve(state_.size());
      for (const auto& [key, entry] : state_) history.push_back(Ev{entry.first, EventKind::kSnapshot, key, entry.second});
      std::sort(history.begin(), history.end(), [](const Ev& a, const Ev& b) { return a.seq < b.seq; });
      q->events.assign(history.begin(), history.end());
      subscribers_.push_back(q);
    }
    ready.count_down();
    std::vector<Ev> local;
    local.reserve(batch);
    for (;;) {
      {
        std::unique_lock lock(q->mu);
        if (!q->ready.wait(lock, stop, [&] { return !q->events.empty(); })) return;  // stopped
        while (local.size() < batch && !q->events.empty()) {
          local.push_back(std::move(q->events.front()));
          q->events.pop_front();
        }
      }
      for (const Ev& e : local) {
        if (tally.on_event(e)) caught_up.mark();
      }
      local.clear();
    }
  }

 private:
  std::mutex mu_;
  uint64_t seq_ = 0;
  std::unordered_map<uint64_t, std::pair<uint64_t, std::shared_ptr<const Value64>>> state_;
  std::vector<std::shared_ptr<Queue>> subscribers_;
};

template <class Impl>
void BM_Live(benchmark::State& state) {
  const auto batch = static_cast<size_t>(state.range(0));
  const auto ring = static_cast<size_t>(state.range(1));
  const auto subscriber_count = static_cast<int>(state.range(2));
  SubscriberTally total;
  double writer_seconds = 0;
  for (auto _ : state) {
    Impl impl(ring);
    std::stop_source stop;
    std::latch ready(subscriber_count);
    CatchUp caught_up(subscriber_count);
    std::vector<SubscriberTally> tallies(static_cast<size_t>(subscriber_count));
    std::vector<std::thread> subscribers;
    for (int s = 0; s < subscriber_count; ++s) {
      subscribers.emplace_back([&, s] {
        // Counted on this thread's stack and stored once: neighbouring tallies in the
        // vector share cache lines, and each subscriber updates its own per event.
        SubscriberTally tally;
        impl.subscribe_and_consume(batch, stop.get_token(), ready, caught_up, tally);
        tallies[static_cast<size_t>(s)] = tally;
      });
    }
    ready.wait();
    const auto t0 = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point writer_end;
    std::thread writer([&] {
      for (uint64_t i = 0; i < kLiveEvents; ++i) impl.insert(i);
      writer_end = std::chrono::steady_clock::now();
    });
    const bool all_caught_up = caught_up.wait_until(t0 + kCatchUpTimeout);
    const auto t1 = std::chrono::steady_clock::now();
    writer.join();
    stop.request_stop();  // the subscribers are parked in their waits: this ends their streams
    for (std::thread& t : subscribers) t.join();
    if (!all_caught_up) {
      state.SkipWithError("a subscriber did not reach the writer's last sequence in time");
      break;
    }
    // Alone, the writer's own time; with subscribers, until the last one has caught up.
    state.SetIterationTime(std::chrono::duration<double>((subscriber_count == 0 ? writer_end : t1) - t0).count());
    writer_seconds += std::chrono::duration<double>(writer_end - t0).count();
    for (const SubscriberTally& t : tallies) {
      total.delivered += t.delivered;
      total.upserts += t.upserts;
      total.resync_events += t.resync_events;
      total.resets += t.resets;
      total.recoveries += t.recoveries;
      total.checksum += t.checksum;
    }
  }
  benchmark::DoNotOptimize(total.checksum);
  const auto iterations = static_cast<double>(std::max<int64_t>(1, state.iterations()));
  if (subscriber_count == 0) {  // the writer alone: items = inserts
    state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kLiveEvents));
    return;
  }
  const double offered = static_cast<double>(kLiveEvents) * subscriber_count * iterations;
  state.SetItemsProcessed(static_cast<int64_t>(total.delivered));
  state.counters["resync_events"] = benchmark::Counter(static_cast<double>(total.resync_events) / iterations);
  state.counters["resets"] = benchmark::Counter(static_cast<double>(total.resets) / iterations);
  state.counters["recoveries"] = benchmark::Counter(static_cast<double>(total.recoveries) / iterations);
  state.counters["writer_Mops"] = benchmark::Counter(static_cast<double>(kLiveEvents) * iterations / writer_seconds / 1e6);
  state.counters["upserts_missed"] = benchmark::Counter((offered - static_cast<double>(total.upserts)) / offered);
}

void LiveCases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"batch", "ring", "subs"});
  b->Args({1, 65536, 0});  // the writer alone
  for (int64_t batch : {int64_t{1}, static_cast<int64_t>(kLiveBatch)}) {
    for (int64_t ring : {int64_t{1024}, int64_t{65536}, static_cast<int64_t>(kLiveEvents)}) {
      b->Args({batch, ring, kSubscribers});
    }
  }
  b->UseManualTime()->Unit(benchmark::kMillisecond);
}

void CompactLiveCases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"batch", "ring", "subs"});
  b->Args({1, 65536, 0});  // the writer alone
  b->Args({1, 65536, kSubscribers});
  b->UseManualTime()->Unit(benchmark::kMillisecond);
}

void BaselineCases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"batch", "ring", "subs"});
  b->Args({1, 0, 0});  // the writer alone
  for (int64_t batch : {int64_t{1}, static_cast<int64_t>(kLiveBatch)}) b->Args({batch, 0, kSubscribers});
  b->UseManualTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK_TEMPLATE(BM_Live, StreamingMapLive)->Apply(LiveCases);
BENCHMARK_TEMPLATE(BM_Live, StreamingMapLiveCompact)->Apply(CompactLiveCases);
BENCHMARK_TEMPLATE(BM_Live, MutexFanout)->Apply(BaselineCases);

}  // namespace

BENCHMARK_MAIN();
