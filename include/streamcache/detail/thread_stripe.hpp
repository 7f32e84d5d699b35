// Which stripe of a striped structure (read buffers, counters, reader locks) the
// calling thread uses.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <vector>

namespace streamcache::detail {

/// Hands out stripe probes: the smallest one no live thread holds. A thread takes one
/// when it first touches a striped structure and gives it back when it exits. So
/// threads that are alive at the same time have distinct probes (and, for a
/// power-of-two stripe count n, distinct stripes `probe & (n - 1)` as long as at most
/// n of them are alive), however many threads came and went before. A plain counter
/// did not have that property: short-lived threads walked it round, and a new thread
/// could land on a long-lived thread's stripe (the cache's 2-thread read benchmark ran
/// at half speed whenever the counter had moved by a multiple of the stripe count).
/// Taking and returning a probe locks a mutex: once per thread, never per operation.
/// A thread that uses a striped structure from a thread_local destructor after its probe
/// was returned keeps using the old number, so it may share a stripe with a new thread
/// then: a matter of speed only, since no striped structure relies on exclusivity.
class StripeProbes {
 public:
  static StripeProbes& instance() {
    // Never destroyed: threads may exit (and return their probes) during static destruction.
    static StripeProbes* const probes = new StripeProbes;
    return *probes;
  }

  uint32_t acquire() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) return next_++;
    const uint32_t probe = free_.top();
    free_.pop();
    return probe;
  }

  void release(uint32_t probe) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push(probe);
  }

 private:
  std::mutex mu_;
  uint32_t next_ = 0;
  std::priority_queue<uint32_t, std::vector<uint32_t>, std::greater<>> free_;  // smallest first
};

/// The calling thread's probe, taken on first use and returned at thread exit.
[[gnu::noinline]] inline uint32_t take_thread_stripe_probe() {
  struct Held {
    uint32_t probe = StripeProbes::instance().acquire();
    ~Held() { StripeProbes::instance().release(probe); }
  };
  thread_local const Held held;
  return held.probe;
}

/// The calling thread's stripe probe (see StripeProbes). The fast path reads a
/// constant-initialized thread_local: no initialization guard, no TLS wrapper call.
inline uint32_t thread_stripe_probe() {
  constexpr uint32_t kUnassigned = ~uint32_t{0};
  thread_local uint32_t probe = kUnassigned;
  if (probe == kUnassigned) [[unlikely]] probe = take_thread_stripe_probe();
  return probe;
}

}  // namespace streamcache::detail
