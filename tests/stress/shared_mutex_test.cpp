#include "streamcache/detail/mutex.hpp"

#include "streamcache/detail/asymmetric_barrier.hpp"

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

TEST(SharedMutex, BiasesOnlyAfterACheckPeriodWithoutWriters) {
  if (!heavy_barrier_available()) GTEST_SKIP() << "no membarrier here: the lock never biases";
  SharedMutex mu;
  EXPECT_FALSE(mu.bias_if_quiet().biased) << "the first check has no quiet period behind it";
  EXPECT_TRUE(mu.bias_if_quiet().biased);
  {
    ReaderLock reader(mu);
  }
  const SharedMutex::BiasCheck after_a_reader = mu.bias_if_quiet();
  EXPECT_TRUE(after_a_reader.biased);
  EXPECT_FALSE(after_a_reader.revoked) << "readers do not take the bias away";
  mu.lock();
  mu.unlock();
  const SharedMutex::BiasCheck after_a_writer = mu.bias_if_quiet();
  EXPECT_FALSE(after_a_writer.biased) << "a writer made the period noisy";
  EXPECT_TRUE(after_a_writer.revoked);
  const SharedMutex::BiasCheck quiet_again = mu.bias_if_quiet();
  EXPECT_TRUE(quiet_again.biased);
  EXPECT_FALSE(quiet_again.revoked) << "nothing was biased to revoke";
}

TEST(SharedMutex, AWriterSeesAReaderThatEnteredWithoutAFence) {
  if (!heavy_barrier_available()) GTEST_SKIP() << "no membarrier here: the lock never biases";
  SharedMutex mu;
  mu.bias_if_quiet();
  ASSERT_TRUE(mu.bias_if_quiet().biased);
  {
    ReaderLock reader(mu);  // the light path: this thread's stripe is owned
    EXPECT_FALSE(try_lock_from_another_thread(mu));
  }
  EXPECT_TRUE(try_lock_from_another_thread(mu));
}

// Writers come in bursts with quiet spells between them, and another thread biases the
// lock whenever a spell allows, so readers keep entering without a fence while writers
// keep revoking the bias. Same checks as above; 200 ms.
TEST(SharedMutex, RevokingTheBiasNeverLetsAReaderInBesideAWriter) {
  SharedMutex mu;
  uint64_t a = 0;
  uint64_t b = 0;
  std::atomic<bool> stop{false};
  std::atomic<bool> torn{false};
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
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
      for (int i = 0; i < 20; ++i) {
        WriterLock<SharedMutex> lock(mu);
        ++a;
        ++b;
        ++writes;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
  });
  int biased = 0;
  threads.emplace_back([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      if (mu.bias_if_quiet().biased) ++biased;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_FALSE(torn.load());
  EXPECT_EQ(a, writes);
  EXPECT_TRUE(try_lock_from_another_thread(mu)) << "a reader's count was left behind";
  if (heavy_barrier_available()) {
    EXPECT_GT(biased, 0) << "the test never exercised the biased path";
  }
}

}  // namespace
}  // namespace streamcache::detail
