#include "streamcache/detail/read_buffer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <cstdint>
#include <latch>
#include <mutex>
#include <thread>
#include <vector>

namespace streamcache::detail {
namespace {

// Records of thread t are t << 32 | i, i = 1, 2, ...: non-zero and attributable.
uint64_t record_of(uint64_t thread, uint64_t i) { return (thread << 32) | i; }

// Owned stripes (the first threads) and shared ones (the others) alike: every record
// that record() accepted is drained exactly once, and a thread's records come out in
// the order it recorded them. A thread that drains every 16 records never finds its own
// stripe full, so on an owned stripe it loses none; on a shared one, records lost to
// other threads' CAS races or a stripe they filled are dropped by design.
TEST(ReadBuffer, EveryAcceptedRecordIsDrainedOnceInItsThreadsOrder) {
  constexpr uint32_t kOwned = 2;
  constexpr int kThreads = 6;
  constexpr uint64_t kRecords = 20000;
  ReadBuffer buffer(kOwned);
  std::mutex drain_mu;  // the maintenance lock's role
  std::vector<std::vector<uint64_t>> drained(kThreads);
  std::vector<std::vector<uint64_t>> accepted(kThreads);
  std::vector<char> owned(kThreads, 0);
  const auto drain = [&] {
    std::lock_guard<std::mutex> lock(drain_mu);
    buffer.drain([](uint64_t) {}, [&](uint64_t rec) { drained[rec >> 32].push_back(rec & 0xFFFFFFFFu); });
  };
  std::latch start(kThreads);  // all running at once, or the threads barely overlap
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      owned[t] = StripeChoice::of_this_thread(kOwned).owned;
      start.arrive_and_wait();
      for (uint64_t i = 1; i <= kRecords; ++i) {
        if (buffer.record(record_of(static_cast<uint64_t>(t), i))) accepted[t].push_back(i);
        if (i % 16 == 0) drain();
      }
    });
  }
  for (auto& t : threads) t.join();
  drain();
  EXPECT_GE(std::count(owned.begin(), owned.end(), 1), 1) << "no thread had an owned stripe";
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(drained[t], accepted[t]) << "thread " << t;
    if (owned[t]) {
      EXPECT_EQ(accepted[t].size(), kRecords) << "thread " << t << " lost records on its own stripe";
    } else {
      EXPECT_GT(accepted[t].size(), 0u) << "thread " << t;
    }
  }
}

TEST(ReadBuffer, AFullStripeRefusesUntilDrained) {
  ReadBuffer buffer(1);
  for (uint64_t i = 1; i <= ReadBuffer::kStripeSize; ++i) EXPECT_TRUE(buffer.record(i));
  EXPECT_FALSE(buffer.record(99));
  uint64_t seen = 0;
  buffer.drain([](uint64_t) {}, [&](uint64_t) { ++seen; });
  EXPECT_EQ(seen, ReadBuffer::kStripeSize);
  EXPECT_TRUE(buffer.record(100));
}

/// Threads that call `step()` in a loop until stopped; stop() returns how many steps
/// they made in all.
class LoopingThreads {
 public:
  template <class Step>
  LoopingThreads(int n, Step step) : steps_(static_cast<size_t>(n), 0) {
    for (int t = 0; t < n; ++t) {
      threads_.emplace_back([this, t, step] {
        uint64_t done = 0;
        while (!stop_.load(std::memory_order_relaxed)) {
          step();
          ++done;
        }
        steps_[static_cast<size_t>(t)] = done;
      });
    }
  }
  uint64_t stop() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    uint64_t total = 0;
    for (uint64_t n : steps_) total += n;
    return total;
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<uint64_t> steps_;
  std::vector<std::thread> threads_;
};

// Counters on owned stripes are written with a load and a store: exact only if no two
// live threads own one stripe. More threads than owned stripes, adding for 100 ms (so
// that they really overlap on every core), and every add is counted.
TEST(StripedCounters, ConcurrentAddsFromMoreThreadsThanStripesAreExact) {
  StripedCounters<2> counters(2);
  LoopingThreads adders(8, [&] {
    counters.add(0);
    counters.add(1, 2);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const uint64_t total = adders.stop();
  EXPECT_EQ(counters.sum(0), total);
  EXPECT_EQ(counters.sum(1), 2 * total);
}

// The handover path: short-lived threads keep exiting and new ones take their (owned)
// probes while long-lived threads keep adding. A new owner must start from its
// predecessor's last store (the probe registry's mutex orders them), or adds are lost.
TEST(StripedCounters, AddsStayExactWhileThreadsComeAndGoOnOwnedStripes) {
  constexpr uint64_t kAddsPerShortLived = 1000;
  StripedCounters<1> counters(16);  // more owned stripes than live threads: all owned
  LoopingThreads long_lived(2, [&] { counters.add(0); });
  uint64_t short_lived = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  while (std::chrono::steady_clock::now() < until) {
    std::thread a([&] { for (uint64_t i = 0; i < kAddsPerShortLived; ++i) counters.add(0); });
    std::thread b([&] { for (uint64_t i = 0; i < kAddsPerShortLived; ++i) counters.add(0); });
    a.join();
    b.join();
    short_lived += 2;
  }
  const uint64_t total = short_lived * kAddsPerShortLived + long_lived.stop();
  EXPECT_EQ(counters.sum(0), total);
  EXPECT_GT(short_lived, 10u);
}

}  // namespace
}  // namespace streamcache::detail
