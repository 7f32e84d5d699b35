#include "streamcache/detail/mutex.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <chrono>
#include <thread>
#include <vector>

namespace streamcache::detail {
namespace {

// From another thread (a lambda, which the thread-safety analysis does not follow).
bool try_lock_from_another_thread(SharedMutex& mu) {
  bool got = false;
  std::thread([&] {
    if (mu.try_lock()) {
      got = true;
      mu.unlock();
    }
  }).join();
  return got;
}

TEST(SharedMutex, TryLockFailsWhileAReaderIsInsideWithoutWaiting) {
  SharedMutex mu;
  {
    ReaderLock reader(mu);
    EXPECT_FALSE(try_lock_from_another_thread(mu));
  }
  EXPECT_TRUE(try_lock_from_another_thread(mu));
  ReaderLock reader_after_the_failed_try(mu);  // the failed try left no flag raised
}

TEST(SharedMutex, TryLockFailsWhileAWriterHoldsIt) {
  SharedMutex mu;
  mu.lock();
  EXPECT_FALSE(try_lock_from_another_thread(mu));
  mu.unlock();
  EXPECT_TRUE(try_lock_from_another_thread(mu));
}

// Writers keep two plain counters equal; readers must never see them differ, and no
// increment may be lost. Bounded: a few thousand sections per thread.
TEST(SharedMutex, ReadersNeverSeeAWriterHalfwayAndWritersExcludeEachOther) {
  SharedMutex mu;
  uint64_t a = 0;
  uint64_t b = 0;
  constexpr int kWriters = 2;
  constexpr int kReaders = 2;
  constexpr int kWrites = 5000;
  std::atomic<bool> torn{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&] {
      for (int i = 0; i < kWrites; ++i) {
        WriterLock<SharedMutex> lock(mu);
        ++a;
        ++b;
      }
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&] {
      for (int i = 0; i < 4 * kWrites; ++i) {
        ReaderLock lock(mu);
        if (a != b) torn = true;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(torn.load());
  EXPECT_EQ(a, uint64_t{kWriters * kWrites});
  EXPECT_EQ(b, a);
}

// More threads than the lock has owned stripes: most readers land on the shared stripes
// (atomic increments), the first few on owned ones (plain decrements). A decrement lost on
// either path would leave a stripe non-zero (the final try_lock fails); a stripe owned by
// two threads at once would let a reader in beside a writer. 100 ms, so that the threads
// really overlap on every core.
TEST(SharedMutex, ReadersBeyondTheOwnedStripesStillExcludeWriters) {
  SharedMutex mu;
  uint64_t a = 0;
  uint64_t b = 0;
  const int readers = 4 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency())) + 4;
  std::atomic<bool> stop{false};
  std::atomic<bool> torn{false};
  std::vector<std::thread> threads;
  for (int r = 0; r < readers; ++r) {
    threads.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        ReaderLock lock(mu);
        if (a != b) torn = true;
      }
    });
  }
  uint64_t writes = 0;
  threads.emplace_back([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      WriterLock<SharedMutex> lock(mu);
      ++a;
      ++b;
      ++writes;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_FALSE(torn.load());
  EXPECT_EQ(a, writes);
  EXPECT_TRUE(try_lock_from_another_thread(mu)) << "a reader's count was left behind";
}

}  // namespace
}  // namespace streamcache::detail
