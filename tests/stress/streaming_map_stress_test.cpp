// Writers mutate while subscribers join at random moments; every subscriber that applies its
// events in order must end with exactly the map's state, seeing each sequence at most once.
#include "streamcache/streaming_map.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <random>
#include <stop_token>
#include <type_traits>
#include <thread>
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
  std::vector<std::string> violations;
};

template <class Map>
Outcome consume(Map& map, std::stop_token stop, unsigned seed) {
  std::mt19937 rng(seed);
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20'000));  // join at a random moment
  Outcome out;
  uint64_t prev = 0;
  bool relisting = false;   // after kReset: the relisted state's sequences restart
  bool history = true;      // before kSnapshotEnd
  for (const Event<int, int>& e : map.stream(stop)) {
    ++out.events;
    auto violation = [&](const char* what) {
      if (out.violations.size() < 5) out.violations.push_back(std::string(what) + " at seq " + std::to_string(e.seq));
    };
    switch (e.kind) {
      case EventKind::kSnapshot:
        if (!history) violation("snapshot after the history");
        break;
      case EventKind::kSnapshotEnd:
        out.cutoff = e.seq;
        history = false;
        relisting = false;
        prev = e.seq;
        continue;
      case EventKind::kUpsert:
      case EventKind::kRemove:
        if (history) violation("live event inside the history");
        if (e.seq <= out.cutoff) violation("live event at or below the cutoff");
        relisting = false;
        break;
      case EventKind::kResync:
        ++out.resyncs;
        break;
      case EventKind::kReset:
        ++out.resets;
        relisting = true;
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

// Timestamp uint32_t: compact timestamps, starting 10'000 mutations below 2^32 so that the
// epoch changes while writers, history walks and lag recoveries run.
template <class Timestamp = uint64_t>
void run_exactness(size_t ring_capacity, bool expect_lag) {
  StreamingMapOptions options;
  options.ring_capacity = ring_capacity;
  options.mark_snapshot_end = true;
  options.snapshot_batch = 64;
  if constexpr (std::is_same_v<Timestamp, uint32_t>) options.initial_seq = (uint64_t{1} << 32) - 10'000;
  StreamingMap<int, int, Timestamp> map(options);
  for (int k = 0; k < kKeys; k += 2) map.insert(k, -k);  // some history for early joiners

  std::stop_source stop;
  std::vector<Outcome> outcomes(kSubscribers);
  std::vector<std::thread> subscribers;
  for (int s = 0; s < kSubscribers; ++s) {
    subscribers.emplace_back([&, s] { outcomes[s] = consume(map, stop.get_token(), 77 + s); });
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
  for (int s = 0; s < kSubscribers; ++s) {
    const Outcome& o = outcomes[s];
    EXPECT_TRUE(o.violations.empty()) << "subscriber " << s << ": " << o.violations.front();
    EXPECT_EQ(o.state, expected) << "subscriber " << s << " after " << o.events << " events, " << o.resyncs
                                 << " resyncs, " << o.resets << " resets";
    resyncs += o.resyncs + o.resets;
  }
  ::testing::Test::RecordProperty("resyncs", static_cast<int>(resyncs));
  if (!expect_lag) {
    EXPECT_EQ(resyncs, 0u) << "a ring that never overflowed showed kResync or kReset";
  }
}

TEST(StreamingMapStress, SubscribersReconstructTheMapExactly) { run_exactness(1 << 16, /*expect_lag=*/false); }

TEST(StreamingMapStress, LaggingSubscribersResyncToTheMapExactly) { run_exactness(16, /*expect_lag=*/true); }

TEST(StreamingMapStress, CompactTimestampsAcrossAnEpochReconstructTheMapExactly) {
  run_exactness<uint32_t>(1 << 16, /*expect_lag=*/false);
}

TEST(StreamingMapStress, CompactTimestampsAcrossAnEpochResyncLaggingSubscribersExactly) {
  run_exactness<uint32_t>(16, /*expect_lag=*/true);
}

}  // namespace
}  // namespace streamcache
