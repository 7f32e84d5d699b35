// Writers mutate while subscribers join at random moments; every subscriber that applies its
// events in order must end with exactly the map's state, seeing each sequence at most once.
#include "streamcache/streaming_map.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace streamcache {
namespace {

constexpr int kKeys = 256;
constexpr int kSentinel = -1;  // written last: a subscriber that sees it has seen everything
constexpr int kWriters = 2;
constexpr int kSubscribers = 3;
constexpr int kOpsPerWriter = 20'000;
constexpr auto kMaxRun = std::chrono::seconds(2);

struct Outcome {
  std::map<int, int> state;
  uint64_t cutoff = 0;
  size_t events = 0;
  size_t resyncs = 0;
  size_t resets = 0;
  size_t recovery_ends = 0;  // kSnapshotEnd after the history's (mark_recovery_end)
  std::vector<std::string> violations;
};

// With mark_recovery_end (`marks_recoveries`), every recovery ends with a kSnapshotEnd at
// its cutoff: no live event comes between a kResync or kReset and it, a relisting's marker
// repeats its kReset's seq, and a live kUpsert right after it is the cutoff's next seq.
template <class Map>
Outcome consume(Map& map, std::stop_token stop, unsigned seed, bool marks_recoveries) {
  std::mt19937 rng(seed);
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20'000));  // join at a random moment
  Outcome out;
  uint64_t prev = 0;
  bool relisting = false;   // after kReset: the relisted state's sequences restart
  bool history = true;      // before kSnapshotEnd
  bool recovering = false;  // marks_recoveries: a kResync or kReset came, its marker not yet
  uint64_t reset_seq = 0;   // the last kReset's seq
  bool after_marker = false;  // the previous event was a kSnapshotEnd
  for (const Event<int, int>& e : map.stream(stop)) {
    ++out.events;
    auto violation = [&](const char* what) {
      if (out.violations.size() < 5) out.violations.push_back(std::string(what) + " at seq " + std::to_string(e.seq));
    };
    if (std::exchange(after_marker, false) && marks_recoveries && e.kind == EventKind::kUpsert &&
        e.seq != out.cutoff + 1) {
      violation("the live event after a kSnapshotEnd is not the cutoff's next");
    }
    switch (e.kind) {
      case EventKind::kSnapshot:
        if (!history) violation("snapshot after the history");
        break;
      case EventKind::kSnapshotEnd:
        if (!history && !marks_recoveries) violation("kSnapshotEnd after the history");
        if (!history && e.seq < prev) violation("a recovery's kSnapshotEnd before what it recovered");
        if (!history && relisting && e.seq != reset_seq) violation("a relisting's kSnapshotEnd not at its kReset's seq");
        if (!history) ++out.recovery_ends;
        out.cutoff = e.seq;
        history = false;
        relisting = false;
        recovering = false;
        after_marker = true;
        prev = e.seq;
        continue;
      case EventKind::kUpsert:
      case EventKind::kRemove:
        if (history) violation("live event inside the history");
        if (e.seq <= out.cutoff) violation("live event at or below the cutoff");
        if (recovering && e.kind == EventKind::kUpsert) violation("live event before the recovery's kSnapshotEnd");
        relisting = false;
        break;
      case EventKind::kResync:
        ++out.resyncs;
        recovering = marks_recoveries;
        break;
      case EventKind::kReset:
        ++out.resets;
        relisting = true;
        recovering = marks_recoveries;
        reset_seq = e.seq;
        out.state.clear();
        prev = 0;
        continue;
    }
    if (!relisting || e.kind != EventKind::kResync) {
      if (e.seq <= prev) violation("sequence did not increase");
      prev = e.seq;
    }
    if (e.kind == EventKind::kRemove) {
      out.state.erase(e.key);
    } else {
      out.state[e.key] = *e.value;
    }
    if (e.key == kSentinel && !history) break;
  }
  out.state.erase(kSentinel);
  return out;
}

// A LagPolicy::kError consumer that resumes with stream_from(): after each LaggedError from
// the seq it reports, and (20 times) after `disconnect_every` events from the last seq it
// applied other than a kReset's (the rule on Event::seq). Each stream is made on this thread and
// iterated on a new one. A stream whose first event is the live seq after its start had its
// continuation in the ring at the call: lag after that must throw, never recover.
template <class Map>
Outcome consume_resuming(Map& map, std::stop_token stop, unsigned seed) {
  std::mt19937 rng(seed);
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20'000));
  Outcome out;
  uint64_t last = 0;
  bool started = false;
  bool seen_sentinel = false;
  const size_t disconnect_every = 50 + rng() % 200;
  // Bounded: a resume inside a relisting may relist again from the start (when the removal
  // log no longer reaches back), so disconnecting every n events for ever could livelock.
  int disconnects_left = 20;
  while (!seen_sentinel && !stop.stop_requested()) {
    auto events = started ? map.stream_from(last, stop) : map.stream(stop);
    const uint64_t start = last;
    const bool resumed = started;
    started = true;
    std::thread reader([&] {
      auto violation = [&](const std::string& what) {
        if (out.violations.size() < 5) out.violations.push_back(what);
      };
      uint64_t order = start;  // the last seq seen; 0 after a kReset, whose relisting restarts the order
      bool started_live = false;
      size_t n = 0;
      try {
        for (const Event<int, int>& e : events) {
          ++out.events;
          if (++n == 1) started_live = resumed && e.kind == EventKind::kUpsert && e.seq == start + 1;
          if (e.kind == EventKind::kReset || e.kind == EventKind::kResync) {
            if (started_live) violation("recovery in a kError stream resumed inside the ring, at seq " + std::to_string(e.seq));
            ++(e.kind == EventKind::kReset ? out.resets : out.resyncs);
          }
          if (e.kind == EventKind::kReset) {
            order = 0;
            out.state.clear();
            continue;  // its seq is no place to resume from
          }
          if (e.kind == EventKind::kSnapshotEnd) {
            order = last = e.seq;
            continue;
          }
          if (e.kind != EventKind::kSnapshot && e.seq <= order) {
            violation("sequence did not increase at seq " + std::to_string(e.seq) + " after " + std::to_string(order));
          }
          order = e.seq;
          if (e.kind == EventKind::kRemove) {
            out.state.erase(e.key);
          } else {
            out.state[e.key] = *e.value;
          }
          last = e.seq;
          if (e.key == kSentinel) {  // written last, so delivered last however it comes
            seen_sentinel = true;
            return;
          }
          if (n % disconnect_every == 0 && disconnects_left-- > 0) return;
        }
      } catch (const LaggedError& lagged) {
        const uint64_t reported = lagged.last_delivered_seq();
        if (started_live && reported != last) {
          violation("LaggedError reports " + std::to_string(reported) + ", the consumer applied " + std::to_string(last));
        }
        last = reported;
      }
    });
    reader.join();
  }
  out.state.erase(kSentinel);
  return out;
}

enum class Consumer { kStream, kStreamMarkingRecoveries, kResumingUnderError };

// Timestamp uint32_t: compact timestamps, starting 10'000 mutations below 2^32 so that the
// epoch changes while writers, history walks and lag recoveries run.
template <class Timestamp = uint64_t>
void run_exactness(size_t ring_capacity, bool expect_lag, Consumer consumer = Consumer::kStream) {
  StreamingMapOptions options;
  options.ring_capacity = ring_capacity;
  if (consumer == Consumer::kResumingUnderError) options.lag = LagPolicy::kError;
  options.mark_snapshot_end = true;
  options.mark_recovery_end = consumer == Consumer::kStreamMarkingRecoveries;
  options.snapshot_batch = 64;
  if constexpr (std::is_same_v<Timestamp, uint32_t>) options.initial_seq = (uint64_t{1} << 32) - 10'000;
  StreamingMap<int, int, Timestamp> map(options);
  for (int k = 0; k < kKeys; k += 2) map.insert(k, -k);  // some history for early joiners

  std::stop_source stop;
  std::vector<Outcome> outcomes(kSubscribers);
  std::vector<std::thread> subscribers;
  for (int s = 0; s < kSubscribers; ++s) {
    subscribers.emplace_back([&, s] {
      outcomes[s] = consumer == Consumer::kResumingUnderError
                        ? consume_resuming(map, stop.get_token(), 77 + s)
                        : consume(map, stop.get_token(), 77 + s, options.mark_recovery_end);
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + kMaxRun;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937 rng(1000 + w);
      for (int op = 0; op < kOpsPerWriter && std::chrono::steady_clock::now() < deadline; ++op) {
        const int key = static_cast<int>(rng() % kKeys);
        if (rng() % 4 == 0) {
          map.remove(key);
        } else {
          map.insert(key, op);
        }
        if (op % 512 == 0) std::this_thread::yield();
      }
    });
  }
  for (auto& w : writers) w.join();
  map.insert(kSentinel, 0);
  if constexpr (std::is_same_v<Timestamp, uint32_t>) {
    EXPECT_GT(map.last_seq(), uint64_t{1} << 32) << "the run did not reach the next epoch";
  }

  // Subscribers finish when they see the sentinel; a hung stream fails the test instead.
  std::thread watchdog([&] {
    for (int i = 0; i < 300 && !stop.stop_requested(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    stop.request_stop();
  });
  for (auto& s : subscribers) s.join();
  stop.request_stop();
  watchdog.join();

  std::map<int, int> expected;
  for (int k = 0; k < kKeys; ++k) {
    if (auto v = map.get(k)) expected[k] = *v;
  }
  size_t resyncs = 0;
  size_t recovery_ends = 0;
  for (int s = 0; s < kSubscribers; ++s) {
    const Outcome& o = outcomes[s];
    EXPECT_TRUE(o.violations.empty()) << "subscriber " << s << ": " << o.violations.front();
    EXPECT_EQ(o.state, expected) << "subscriber " << s << " after " << o.events << " events, " << o.resyncs
                                 << " resyncs, " << o.resets << " resets";
    resyncs += o.resyncs + o.resets;
    recovery_ends += o.recovery_ends;
  }
  if (options.mark_recovery_end && resyncs > 0) {
    EXPECT_GT(recovery_ends, 0u) << "recoveries without the kSnapshotEnd that mark_recovery_end asks for";
  }
  ::testing::Test::RecordProperty("resyncs", static_cast<int>(resyncs));
  if (!expect_lag) {
    EXPECT_EQ(resyncs, 0u) << "a ring that never overflowed showed kResync or kReset";
  }
}

TEST(StreamingMapStress, SubscribersReconstructTheMapExactly) { run_exactness(1 << 16, /*expect_lag=*/false); }

TEST(StreamingMapStress, LaggingSubscribersResyncToTheMapExactly) { run_exactness(16, /*expect_lag=*/true); }

TEST(StreamingMapStress, LaggingSubscribersMarkEachRecoverysEndAndResyncExactly) {
  run_exactness(16, /*expect_lag=*/true, Consumer::kStreamMarkingRecoveries);
}

TEST(StreamingMapStress, ErrorPolicyConsumersResumingWithStreamFromReconstructTheMapExactly) {
  run_exactness(16, /*expect_lag=*/true, Consumer::kResumingUnderError);
}

TEST(StreamingMapStress, CompactTimestampsAcrossAnEpochReconstructTheMapExactly) {
  run_exactness<uint32_t>(1 << 16, /*expect_lag=*/false);
}

TEST(StreamingMapStress, CompactTimestampsAcrossAnEpochResyncLaggingSubscribersExactly) {
  run_exactness<uint32_t>(16, /*expect_lag=*/true);
}

}  // namespace
}  // namespace streamcache
