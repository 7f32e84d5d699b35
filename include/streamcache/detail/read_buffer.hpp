// Striped, lossy buffers that record cache reads for the eviction policy.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "streamcache/detail/cache_line.hpp"
#include "streamcache/detail/thread_stripe.hpp"

namespace streamcache::detail {

/// Read records are applied to the policy in batches by whichever thread holds the
/// maintenance lock, as Caffeine and Moka do: a read costs one uncontended CAS on a
/// per-thread stripe instead of a lock. The buffers are lossy on purpose: when a stripe
/// is full the record is dropped (the policy's recency order is a heuristic; losing a
/// few reads under heavy load is the price of never blocking a reader).
///
/// Boost.Lockfree has bounded queues, but not a lossy one that fails fast instead of
/// retrying the CAS, and none striped per thread; the ring below is 30 lines.
///
/// Protocol of one stripe (many producers, one consumer holding the maintenance lock):
///  1. A producer reads tail (relaxed) and head (acquire); if the ring is full it
///     drops the record. Otherwise it CASes tail forward, claiming slot `tail`, and
///     stores its record there (release). A failed CAS drops the record too; record()
///     says so, and the caller decides whether to drain and retry.
///  2. The consumer reads tail (acquire), and from head onwards exchanges each slot
///     with 0 (acquire); a 0 means the producer that claimed it has not stored yet, so
///     the consumer stops there. It then publishes the new head (release).
/// Records are non-zero by construction.
class ReadBuffer {
 public:
  static constexpr uint32_t kStripeSize = 32;  // records per stripe, a power of two

  explicit ReadBuffer(uint32_t stripes) : mask_(std::bit_ceil(std::max<uint32_t>(stripes, 1)) - 1),
                                         stripes_(new Stripe[mask_ + 1]) {}

  uint32_t stripe_count() const { return mask_ + 1; }
  uint32_t stripe_index() const { return thread_stripe_probe() & mask_; }

  /// Records `record` (non-zero) in the calling thread's stripe. Returns false when it
  /// did not (the stripe is full, or another thread sharing the stripe won the slot).
  bool record(uint64_t record) {
    Stripe& s = stripes_[stripe_index()];
    uint32_t tail = s.tail.load(std::memory_order_relaxed);  // relaxed: validated by the CAS below
    // acquire: pairs with the release store of head in drain(): the slot we reuse was emptied.
    const uint32_t head = s.head.load(std::memory_order_acquire);
    if (tail - head >= kStripeSize) return false;
    // relaxed: the slot store below carries the release. A lost race reports failure
    // too: the caller then drains and retries once, as for a full stripe.
    if (!s.tail.compare_exchange_strong(tail, tail + 1, std::memory_order_relaxed)) return false;
    // release: pairs with the acquire exchange in drain().
    s.slots[tail & (kStripeSize - 1)].store(record, std::memory_order_release);
    return true;
  }

  /// Applies `f(record)` to every record stored so far. Only one thread at a time (the
  /// maintenance lock holder) may drain.
  template <class F>
  void drain(F&& f) {
    for (uint32_t i = 0; i <= mask_; ++i) {
      Stripe& s = stripes_[i];
      uint32_t head = s.head.load(std::memory_order_relaxed);  // relaxed: only the drainer writes head
      // acquire: pairs with the producers' CAS on tail (we only need the claim count here;
      // each slot's own acquire exchange orders its contents).
      const uint32_t tail = s.tail.load(std::memory_order_acquire);
      if (head == tail) continue;
      while (head != tail) {
        // acquire: pairs with the release store in record().
        const uint64_t rec = s.slots[head & (kStripeSize - 1)].exchange(0, std::memory_order_acquire);
        if (rec == 0) break;  // claimed but not stored yet: pick it up next time
        f(rec);
        ++head;
      }
      // release: pairs with the acquire load of head in record().
      s.head.store(head, std::memory_order_release);
    }
  }

 private:
  struct alignas(kCacheLine) Stripe {
    std::atomic<uint32_t> head{0};
    alignas(kCacheLine) std::atomic<uint32_t> tail{0};
    std::atomic<uint64_t> slots[kStripeSize] = {};
  };
  static_assert(alignof(Stripe) == kCacheLine);

  const uint32_t mask_;
  std::unique_ptr<Stripe[]> stripes_;
};

/// Counters striped like the read buffer, so that counting a hit is not a contended
/// atomic increment shared by every reader.
template <size_t N>
class StripedCounters {
 public:
  explicit StripedCounters(uint32_t stripes)
      : mask_(std::bit_ceil(std::max<uint32_t>(stripes, 1)) - 1), stripes_(new Stripe[mask_ + 1]) {}

  void add(size_t counter, uint64_t n = 1) {
    // relaxed: statistics carry no ordering; stats() sums whatever is visible.
    stripes_[thread_stripe_probe() & mask_].c[counter].fetch_add(n, std::memory_order_relaxed);
  }

  uint64_t sum(size_t counter) const {
    uint64_t total = 0;
    for (uint32_t i = 0; i <= mask_; ++i) {
      total += stripes_[i].c[counter].load(std::memory_order_relaxed);  // relaxed: see add()
    }
    return total;
  }

 private:
  struct alignas(kCacheLine) Stripe {
    std::atomic<uint64_t> c[N] = {};
  };
  const uint32_t mask_;
  std::unique_ptr<Stripe[]> stripes_;
};

}  // namespace streamcache::detail
