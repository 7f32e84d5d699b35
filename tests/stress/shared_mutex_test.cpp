#include "streamcache/detail/mutex.hpp"

#include "streamcache/detail/asymmetric_barrier.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
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

// Two plain counters that writers keep equal: a reader that sees them differ was let in
// beside a writer, and a lost increment means two writers were inside at once.
struct GuardedPair {
  SharedMutex mu;
  uint64_t a = 0;
  uint64_t b = 0;
  uint64_t writes = 0;
  std::atomic<bool> torn{false};

  void read() {
    ReaderLock lock(mu);
    if (a != b) torn = true;
  }
  void write() {
    WriterLock<SharedMutex> lock(mu);
    ++a;
    ++b;
    ++writes;
  }
  /// After every thread joined.
  void expect_consistent() {
    EXPECT_FALSE(torn.load()) << "a reader saw a writer halfway";
    EXPECT_EQ(a, writes) << "two writers were inside at once";
    EXPECT_EQ(b, a);
    EXPECT_TRUE(try_lock_from_another_thread(mu)) << "a reader's count was left behind";
  }
};

/// Runs `body` on a thread until `stop`. A template, not std::function: the loop must stay
/// tight, or the races it looks for become too rare to show.
template <class Body>
std::thread loop_until(const std::atomic<bool>& stop, Body body) {
  return std::thread([&stop, body] {
    while (!stop.load(std::memory_order_relaxed)) body();  // relaxed: a stop hint; join() orders the rest
  });
}

// Bounded: a few thousand sections per thread.
TEST(SharedMutex, ReadersNeverSeeAWriterHalfwayAndWritersExcludeEachOther) {
  GuardedPair pair;
  constexpr int kWrites = 5000;
  std::vector<std::thread> threads;
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&] {
      for (int i = 0; i < kWrites; ++i) pair.write();
    });
  }
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&] {
      for (int i = 0; i < 4 * kWrites; ++i) pair.read();
    });
  }
  for (auto& t : threads) t.join();
  pair.expect_consistent();
  EXPECT_EQ(pair.writes, uint64_t{2 * kWrites});
}

// More threads than the lock has owned stripes: most readers land on the shared stripes
// (atomic increments), the first few on owned ones (plain decrements). A decrement lost on
// either path would leave a stripe non-zero (the final try_lock fails); a stripe owned by
// two threads at once would let a reader in beside a writer. 100 ms, so that the threads
// really overlap on every core.
TEST(SharedMutex, ReadersBeyondTheOwnedStripesStillExcludeWriters) {
  GuardedPair pair;
  const int readers = 4 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency())) + 4;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int r = 0; r < readers; ++r) threads.push_back(loop_until(stop, [&] { pair.read(); }));
  threads.push_back(loop_until(stop, [&] { pair.write(); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  stop = true;
  for (auto& t : threads) t.join();
  pair.expect_consistent();
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
  GuardedPair pair;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) threads.push_back(loop_until(stop, [&] { pair.read(); }));
  threads.push_back(loop_until(stop, [&] {
    for (int i = 0; i < 20; ++i) pair.write();
    std::this_thread::sleep_for(std::chrono::microseconds(300));
  }));
  int biased = 0;
  threads.push_back(loop_until(stop, [&] {
    if (pair.mu.bias_if_quiet().biased) ++biased;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  for (auto& t : threads) t.join();
  pair.expect_consistent();
  if (heavy_barrier_available()) {
    EXPECT_GT(biased, 0) << "the test never exercised the biased path";
  }
}

}  // namespace
}  // namespace streamcache::detail
