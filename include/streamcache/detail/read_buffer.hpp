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
/// maintenance lock, as Caffeine and Moka do: a read costs two plain stores on a stripe
/// its thread owns (StripeChoice), or one uncontended CAS on a shared stripe, instead of
/// a lock. The buffers are lossy on purpose: when a stripe
/// is full the record is dropped (the policy's recency order is a heuristic; losing a
/// few reads under heavy load is the price of never blocking a reader).
///
/// Boost.Lockfree has bounded queues, but not a lossy one that fails fast instead of
/// retrying the CAS, and none striped per thread; the ring below is 30 lines.
///
/// Protocol of one stripe (its producers, one consumer holding the maintenance lock):
///  1. A producer reads tail (relaxed) and head (acquire); if the ring is full it
///     drops the record.
///  2. Owned stripe (one producer): it stores the record in slot `tail`, then tail + 1
///     (release). The consumer reads tail (acquire) and every slot before it is written.
///  3. Shared stripe: it claims slot `tail` with a CAS on tail (a failed CAS drops the
///     record too; record() says so, and the caller decides whether to drain and retry),
///     then stores the record there (release). The consumer reads tail, and from head
///     onwards exchanges each slot with 0 (acquire); a 0 means the producer that claimed
///     it has not stored yet, so the consumer stops there.
///  4. The consumer copies the records out, publishes the new head (release), and only
///     then applies them, so producers can refill the stripe meanwhile.
/// Records are non-zero by construction.
class ReadBuffer {
 public:
  // Records per stripe, a power of two. A reader whose stripe fills tries the maintenance
  // lock and drains, so this sets how many reads share one pass's fixed costs (the
  // try-lock's line, which every draining reader writes, the statistics sum, the fences):
  // read 100% at 2 threads measured +16-23% against 32, and 256 no better than 128
  // (docs/notes/cache_benchmarks.md, session 14). Memory: 1 KiB per stripe, 4 stripes per
  // CPU, at most 128 (CacheCore).
  static constexpr uint32_t kStripeSize = 128;

  /// `stripes` owned stripes (rounded up to a power of two), and as many shared ones.
  explicit ReadBuffer(uint32_t stripes)
      : owned_(std::bit_ceil(std::max<uint32_t>(stripes, 1))), stripes_(new Stripe[2 * owned_]) {}

  /// Records `record` (non-zero) in the calling thread's stripe. Returns false when it
  /// did not (the stripe is full, or another thread sharing the stripe won the slot).
  bool record(uint64_t record) {
    const StripeChoice choice = StripeChoice::of_this_thread(owned_);
    Stripe& s = stripes_[choice.index];
    uint32_t tail = s.tail.load(std::memory_order_relaxed);  // relaxed: ours if owned, else validated by the CAS below
    // acquire: pairs with the release store of head in drain(): the slot we reuse was emptied.
    const uint32_t head = s.head.load(std::memory_order_acquire);
    if (tail - head >= kStripeSize) return false;
    std::atomic<uint64_t>& slot = s.slots[tail & (kStripeSize - 1)];
    if (choice.owned) {
      slot.store(record, std::memory_order_relaxed);  // relaxed: published by the tail store below
      s.tail.store(tail + 1, std::memory_order_release);  // release: pairs with the acquire tail load in drain()
      return true;
    }
    // relaxed: the slot store below carries the release. A lost race reports failure
    // too: the caller then drains and retries once, as for a full stripe.
    if (!s.tail.compare_exchange_strong(tail, tail + 1, std::memory_order_relaxed)) return false;
    slot.store(record, std::memory_order_release);  // release: pairs with the acquire exchange in drain()
    return true;
  }

  /// Applies `f(record)` to every record stored so far, a stripe at a time, after calling
  /// `prefetch(record)` for each record of that stripe (so their misses overlap). Only one
  /// thread at a time (the maintenance lock holder) may drain.
  template <class Prefetch, class F>
  void drain(Prefetch&& prefetch, F&& f) {
    uint64_t batch[kStripeSize];
    for (uint32_t i = 0; i < 2 * owned_; ++i) {
      Stripe& s = stripes_[i];
      uint32_t head = s.head.load(std::memory_order_relaxed);  // relaxed: only the drainer writes head
      // acquire: pairs with the release tail store of an owned stripe's producer (on a
      // shared stripe each slot's own acquire exchange orders its contents).
      const uint32_t tail = s.tail.load(std::memory_order_acquire);
      if (head == tail) continue;
      size_t n = 0;
      if (i < owned_) {
        // Plain loads: the line stays shared with the producer instead of bouncing
        // through an exchange per record.
        for (; head != tail; ++head) batch[n++] = s.slots[head & (kStripeSize - 1)].load(std::memory_order_relaxed);  // relaxed: ordered by the tail load
      } else {
        for (; head != tail; ++head) {
          // acquire: pairs with the release store in record().
          const uint64_t rec = s.slots[head & (kStripeSize - 1)].exchange(0, std::memory_order_acquire);
          if (rec == 0) break;  // claimed but not stored yet: pick it up next time
          batch[n++] = rec;
        }
      }
      // release: pairs with the acquire load of head in record().
      s.head.store(head, std::memory_order_release);
      for (size_t j = 0; j < n; ++j) prefetch(batch[j]);
      for (size_t j = 0; j < n; ++j) f(batch[j]);
    }
  }

 private:
  struct alignas(kCacheLine) Stripe {
    std::atomic<uint32_t> head{0};
    alignas(kCacheLine) std::atomic<uint32_t> tail{0};
    std::atomic<uint64_t> slots[kStripeSize] = {};
  };
  static_assert(alignof(Stripe) == kCacheLine);

  const uint32_t owned_;  // stripes [0, owned_) are owned (StripeChoice), the rest shared
  std::unique_ptr<Stripe[]> stripes_;
};

/// Counters striped like the read buffer, so that counting a hit is neither a contended
/// atomic increment shared by every reader nor, on an owned stripe, a locked instruction.
template <size_t N>
class StripedCounters {
 public:
  explicit StripedCounters(uint32_t stripes)
      : owned_(std::bit_ceil(std::max<uint32_t>(stripes, 1))), stripes_(new Stripe[2 * owned_]) {}

  void add(size_t counter, uint64_t n = 1) {
    const StripeChoice choice = StripeChoice::of_this_thread(owned_);
    // relaxed: statistics carry no ordering; stats() sums whatever is visible.
    choice.add(stripes_[choice.index].c[counter], n, std::memory_order_relaxed);
  }

  uint64_t sum(size_t counter) const {
    uint64_t total = 0;
    for (uint32_t i = 0; i < 2 * owned_; ++i) {
      total += stripes_[i].c[counter].load(std::memory_order_relaxed);  // relaxed: see add()
    }
    return total;
  }

 private:
  struct alignas(kCacheLine) Stripe {
    std::atomic<uint64_t> c[N] = {};
  };
  const uint32_t owned_;
  std::unique_ptr<Stripe[]> stripes_;
};

}  // namespace streamcache::detail
