#include "streamcache/detail/thread_stripe.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <cstdint>
#include <set>
#include <thread>
#include <vector>

namespace streamcache::detail {
namespace {

/// Runs `f(t)` on `n` new threads, none of which exits before all have run it: their
/// probes are then held at the same time.
template <class F>
void on_threads_alive_together(int n, F f) {
  std::barrier all_alive(n);
  std::vector<std::thread> threads;
  for (int t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      f(t);
      all_alive.arrive_and_wait();
    });
  }
  for (auto& t : threads) t.join();
}

uint32_t probe_of_new_thread() {
  uint32_t probe = 0;
  std::thread([&] { probe = thread_stripe_probe(); }).join();
  return probe;
}

TEST(ThreadStripe, AThreadKeepsItsProbe) {
  const uint32_t first = thread_stripe_probe();
  EXPECT_EQ(thread_stripe_probe(), first);
}

TEST(ThreadStripe, LiveThreadsHaveDistinctProbes) {
  constexpr int kThreads = 4;
  const uint32_t main_probe = thread_stripe_probe();
  std::vector<uint32_t> probes(kThreads);
  on_threads_alive_together(kThreads, [&](int t) { probes[t] = thread_stripe_probe(); });
  const std::set<uint32_t> distinct(probes.begin(), probes.end());
  EXPECT_EQ(distinct.size(), probes.size());
  EXPECT_EQ(distinct.count(main_probe), 0u) << "the main thread is alive too";
}

// The regression: with a round-robin counter, the n-th short-lived thread landed on the
// stripe of a long-lived one (the main thread here) once the counter wrapped.
TEST(ThreadStripe, ShortLivedThreadsReuseProbesInsteadOfWalkingOntoLiveOnes) {
  const uint32_t main_probe = thread_stripe_probe();
  const uint32_t first = probe_of_new_thread();
  for (int i = 0; i < 100; ++i) {
    const uint32_t probe = probe_of_new_thread();
    EXPECT_NE(probe, main_probe);
    EXPECT_EQ(probe, first) << "thread " << i << " did not get the freed probe back";
  }
}

TEST(StripeChoice, LiveThreadsOwnDistinctStripesAndTheRestShare) {
  constexpr uint32_t kOwned = 2;
  constexpr int kThreads = 6;
  std::vector<StripeChoice> choices(kThreads);
  std::vector<uint32_t> probes(kThreads);
  on_threads_alive_together(kThreads, [&](int t) {
    probes[t] = thread_stripe_probe();
    choices[t] = StripeChoice::of_this_thread(kOwned);
  });
  std::set<uint32_t> owned_indices;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(choices[t].owned, probes[t] < kOwned);
    if (choices[t].owned) {
      EXPECT_EQ(choices[t].index, probes[t]);
      EXPECT_TRUE(owned_indices.insert(choices[t].index).second) << "two live owners of one stripe";
    } else {
      EXPECT_GE(choices[t].index, kOwned);
      EXPECT_LT(choices[t].index, 2 * kOwned);
    }
  }
}

// A thread_local constructed before the thread takes its probe is destroyed after the
// probe is returned: by then another thread may own the stripe, so this thread must
// use the shared ones (and not take a new probe that nothing would return).
TEST(StripeChoice, AThreadThatReturnedItsProbeUsesTheSharedStripes) {
  struct Late {
    StripeChoice* seen;
    uint32_t* probe;
    ~Late() {
      *probe = thread_stripe_probe();
      *seen = StripeChoice::of_this_thread(1u << 20);
    }
  };
  StripeChoice seen{0, true};
  uint32_t probe = 0;
  std::thread([&] {
    thread_local Late late{&seen, &probe};  // constructed first, destroyed last
    (void)late;
    (void)thread_stripe_probe();
  }).join();
  EXPECT_EQ(probe, kProbeReturned);
  EXPECT_FALSE(seen.owned);
}

}  // namespace
}  // namespace streamcache::detail
