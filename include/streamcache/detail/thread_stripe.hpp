// Which stripe of a striped structure (read buffers, counters, reader locks) the
// calling thread uses.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
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
/// Because live probes are distinct, a structure can give the first n probes a stripe
/// each that only its holder writes (see StripeChoice): a counter there needs no locked
/// instruction. A thread that exits returns its probe and from then on (thread_local
/// destructors that run later) uses the shared stripes, never the one it gave back.
/// One registry per process is what makes probes distinct: a program whose shared objects
/// each carry a private copy of these header-only definitions (built with
/// -fvisibility=hidden, or loaded RTLD_LOCAL) must not pass a cache between them.
class StripeProbes {
 public:
  static StripeProbes& instance() {
    // Never destroyed: threads may exit (and return their probes) during static destruction.
    static StripeProbes* const probes = new StripeProbes;
    return *probes;
  }

  uint32_t acquire() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) {
      // Room for every probe ever handed out, so that release(), which runs in a thread's
      // exit path (noexcept), never allocates.
      free_.reserve(next_ + 1);
      return next_++;
    }
    std::pop_heap(free_.begin(), free_.end(), std::greater<>{});
    const uint32_t probe = free_.back();
    free_.pop_back();
    return probe;
  }

  void release(uint32_t probe) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(probe);
    std::push_heap(free_.begin(), free_.end(), std::greater<>{});
  }

 private:
  std::mutex mu_;
  uint32_t next_ = 0;
  std::vector<uint32_t> free_;  // a min-heap: the smallest free probe first
};

// The calling thread's probe: constant-initialized, so the fast path reads it without an
// initialization guard or a TLS wrapper call, and trivially destructible, so it stays
// readable from every thread_local destructor.
inline constexpr uint32_t kProbeUnassigned = ~uint32_t{0};
inline constexpr uint32_t kProbeReturned = ~uint32_t{0} - 1;  // above every owned stripe count
inline constinit thread_local uint32_t t_stripe_probe = kProbeUnassigned;

/// Takes the calling thread's probe and arranges to return it at thread exit.
[[gnu::noinline]] inline uint32_t take_thread_stripe_probe() {
  struct Held {
    uint32_t probe = StripeProbes::instance().acquire();
    ~Held() {
      // Before the probe can reach another thread: this thread's later uses (from
      // thread_local destructors that run after this one) go to the shared stripes.
      t_stripe_probe = kProbeReturned;
      StripeProbes::instance().release(probe);
    }
  };
  thread_local const Held held;
  return held.probe;
}

/// The calling thread's stripe probe (see StripeProbes).
inline uint32_t thread_stripe_probe() {
  uint32_t probe = t_stripe_probe;
  if (probe == kProbeUnassigned) [[unlikely]] probe = t_stripe_probe = take_thread_stripe_probe();
  return probe;
}

/// Which stripe of a structure with `owned` owned stripes followed by `owned` shared ones
/// (`owned` a power of two) the calling thread uses. The thread holding probe p < owned is
/// the only writer of stripe p while it lives, so it may update its counters with a load
/// and a store; probe handovers go through StripeProbes' mutex, which orders the previous
/// holder's last store before the next holder's first load. Every other thread uses shared
/// stripe `owned + (p & (owned - 1))` with atomic read-modify-writes.
struct StripeChoice {
  uint32_t index;
  bool owned;

  static StripeChoice of_this_thread(uint32_t owned) {
    const uint32_t probe = thread_stripe_probe();
    if (probe < owned) return {probe, true};
    return {owned + (probe & (owned - 1)), false};
  }

  /// counter += n, as a plain load + store on an owned stripe, else fetch_add. `order` is
  /// the ordering the caller needs for the write (relaxed or release).
  template <class I>
  void add(std::atomic<I>& counter, I n, std::memory_order order) const noexcept {
    if (owned) {
      // relaxed: only this thread writes an owned stripe, so the load reads its own store.
      counter.store(static_cast<I>(counter.load(std::memory_order_relaxed) + n), order);
    } else {
      counter.fetch_add(n, order);
    }
  }
};

}  // namespace streamcache::detail
