// broadcast_lane_model: what two producers cost in a ring with one total order, and what
// a ring with one lane per producer would cost instead. A model, not the library.
//
//   broadcast_lane_model [ROUNDS [MESSAGES_PER_PRODUCER]]     (defaults 7, 4000000)
//
// Why: the 2 -> 2 bar of issue 3 (10x the mutex baseline) is held back by the producers,
// not the subscribers (docs/notes/broadcast.md, sessions 7-8: BM_ProducerCeiling). Each
// message is one claim on a shared counter followed by a store into the slot the claim
// names, and consecutive sequences alternate between the producers, so every store lands
// on a line the other producer's core wrote last, and the next claim's locked add waits
// for it. This tool runs the same 2 -> 2 traffic (lossless: producers wait for the slower
// subscriber, as kBlock does) through three layouts, each a minimal model:
//   shared        one ring indexed by sequence (what detail::BroadcastRing does)
//   lanes         one ring per producer; each slot records its sequence, and a subscriber
//                 merges the lanes by taking the lane whose head holds the sequence it
//                 wants next (the claim counter still gives the total order)
//   locked lanes  the same, with a per-lane spin lock taken for every message, as
//                 producers sharing lanes would need
// ROUNDS rounds, the order rotated every round; it prints the median and quartiles of
// each layout's rate, M messages/s delivered (summed over both subscribers), and each
// round checks that both subscribers saw every sequence exactly once.
//
// What it showed (docs/notes/broadcast.md, session 11): the gain depends on the machine's
// state. In a slow sitting, lanes 67-81 against shared 26 (locked lanes 59); in a fast one
// minutes later, lanes 101 against shared 76 (locked lanes 65, below shared). A real
// BroadcastRing with locked lanes (branch `lanes`, not merged) measured no gain over the
// shared ring, and lost 40-45% on one producer.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "common/summary.hpp"
#include "streamcache/detail/backoff.hpp"
#include "streamcache/detail/cache_line.hpp"

namespace {

using streamcache::detail::kCacheLine;

constexpr uint64_t kCapacity = 4096;  // broadcast_benchmark's ring
constexpr uint64_t kMask = kCapacity - 1;
constexpr int kProducers = 2;
constexpr int kSubscribers = 2;
constexpr uint64_t kCursorStride = 64;  // how often a subscriber publishes its cursor

struct alignas(kCacheLine) Counter {
  std::atomic<uint64_t> value{0};
};

/// A subscriber's cursor as producers see it (the next sequence it reads).
struct Cursors {
  Counter next[kSubscribers];
  Cursors() {
    for (Counter& c : next) c.value.store(1);
  }
  uint64_t slowest() const {
    uint64_t m = UINT64_MAX;
    for (const Counter& c : next) m = std::min(m, c.value.load(std::memory_order_acquire));  // acquire: pairs with the release store in advance()
    return m;
  }
  void advance(int subscriber, uint64_t next_seq, bool last) {
    if (last || next_seq % kCursorStride == 0) {
      next[subscriber].value.store(last ? UINT64_MAX : next_seq, std::memory_order_release);  // release: our reads precede the overwrite
    }
  }
};

/// Waits as the library's kYield mode does: a few pauses, then yields (4 threads, 2 cores).
template <class Ready>
void wait_until(Ready&& ready) {
  streamcache::detail::Backoff backoff;
  while (!ready()) backoff.pause();
}

struct Result {
  double seconds;
  bool exact;
};

/// Starts the producers and subscribers together; exact when the sequences both
/// subscribers add up are 1..total each.
Result run(const std::function<void(int)>& produce, const std::function<uint64_t(int)>& subscribe, uint64_t total) {
  std::atomic<bool> go{false};
  std::atomic<uint64_t> sum{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) threads.emplace_back([&, p] { wait_until([&] { return go.load(); }); produce(p); });
  for (int s = 0; s < kSubscribers; ++s) {
    threads.emplace_back([&, s] {
      wait_until([&] { return go.load(); });
      sum += subscribe(s);
    });
  }
  const auto start = std::chrono::steady_clock::now();
  go.store(true);
  for (std::thread& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {seconds, sum.load() == kSubscribers * (total * (total + 1) / 2)};
}

/// One ring indexed by sequence. Stamp 2s: the slot holds s (the ring's encoding).
Result run_shared(uint64_t per_producer) {
  struct Slot {
    std::atomic<uint64_t> stamp{0};
    std::atomic<uint64_t> value{0};
  };
  const uint64_t total = per_producer * kProducers;
  auto slots = std::make_unique<Slot[]>(kCapacity);
  Counter claimed;
  Cursors cursors;
  const auto produce = [&](int) {
    uint64_t gate = kCapacity;  // the highest sequence that fits, as last computed
    for (uint64_t i = 0; i < per_producer; ++i) {
      const uint64_t seq = claimed.value.fetch_add(1) + 1;
      if (seq > gate) wait_until([&] { return seq <= (gate = cursors.slowest() - 1 + kCapacity); });
      Slot& slot = slots[seq & kMask];
      const uint64_t predecessor = seq > kCapacity ? 2 * (seq - kCapacity) : 0;
      wait_until([&] { return slot.stamp.load(std::memory_order_acquire) == predecessor; });  // acquire: pairs with the release below
      slot.value.store(seq, std::memory_order_relaxed);  // relaxed: published by the stamp
      slot.stamp.store(2 * seq, std::memory_order_release);  // release: pairs with the subscriber's acquire
    }
  };
  const auto subscribe = [&](int s) {
    uint64_t sum = 0;
    for (uint64_t next = 1; next <= total; ++next) {
      const Slot& slot = slots[next & kMask];
      wait_until([&] { return slot.stamp.load(std::memory_order_acquire) == 2 * next; });  // acquire: pairs with the producer's release
      sum += slot.value.load(std::memory_order_relaxed);  // relaxed: ordered by the stamp
      cursors.advance(s, next + 1, next == total);
    }
    return sum;
  };
  return run(produce, subscribe, total);
}

/// One ring per producer. A slot holds the sequence it carries; stamp pos + 1 says that
/// lane position `pos` is written.
Result run_lanes(uint64_t per_producer, bool lock_per_message) {
  struct Slot {
    std::atomic<uint64_t> stamp{0};
    std::atomic<uint64_t> seq{0};
  };
  struct alignas(kCacheLine) Lane {
    std::atomic<bool> locked{false};
    uint64_t written = 0;  // positions written so far (by the lane's producer)
    std::unique_ptr<Slot[]> slots = std::make_unique<Slot[]>(kCapacity);
  };
  const uint64_t total = per_producer * kProducers;
  Lane lanes[kProducers];
  Counter claimed;
  Cursors cursors;
  const auto produce = [&](int p) {
    Lane& lane = lanes[p];
    uint64_t gate = 0;  // the slowest cursor, as last read
    for (uint64_t i = 0; i < per_producer; ++i) {
      if (lock_per_message) wait_until([&] { return !lane.locked.exchange(true, std::memory_order_acquire); });  // acquire: pairs with the unlock
      const uint64_t seq = claimed.value.fetch_add(1) + 1;
      const uint64_t pos = lane.written++;
      Slot& slot = lane.slots[pos & kMask];
      // The sequence this position held one lap ago: every subscriber must be past it.
      const uint64_t overwritten = slot.seq.load(std::memory_order_relaxed);  // relaxed: only this lane's producer writes it
      if (overwritten >= gate) wait_until([&] { return overwritten < (gate = cursors.slowest()); });
      slot.seq.store(seq, std::memory_order_relaxed);  // relaxed: published by the stamp
      slot.stamp.store(pos + 1, std::memory_order_release);  // release: pairs with the subscriber's acquire
      if (lock_per_message) lane.locked.store(false, std::memory_order_release);  // release: pairs with the next lock
    }
  };
  const auto subscribe = [&](int s) {
    uint64_t sum = 0;
    uint64_t head[kProducers] = {};  // per lane, the next position to read
    int last_lane = 0;
    for (uint64_t next = 1; next <= total; ++next) {
      // The sequence we want is at the head of exactly one lane, once written.
      wait_until([&] {
        for (int k = 0; k < kProducers; ++k) {
          const int l = (last_lane + k) % kProducers;
          const Slot& slot = lanes[l].slots[head[l] & kMask];
          if (slot.stamp.load(std::memory_order_acquire) == head[l] + 1 &&  // acquire: pairs with the producer's release
              slot.seq.load(std::memory_order_relaxed) == next) {  // relaxed: ordered by the stamp
            sum += slot.seq.load(std::memory_order_relaxed);  // relaxed: as above
            ++head[l];
            last_lane = l;
            return true;
          }
        }
        return false;
      });
      cursors.advance(s, next + 1, next == total);
    }
    // Each lane position read exactly once: the lanes held `total` messages in all.
    uint64_t read = 0;
    for (uint64_t h : head) read += h;
    return read == total ? sum : 0;
  };
  return run(produce, subscribe, total);
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  const uint64_t per_producer = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 4'000'000;
  if (rounds < 1 || per_producer < 1) {
    std::fprintf(stderr, "usage: broadcast_lane_model [ROUNDS >= 1 [MESSAGES_PER_PRODUCER >= 1]]\n");
    return 2;
  }
  const char* names[] = {"shared", "lanes", "locked lanes"};
  const std::function<Result()> layouts[] = {
      [&] { return run_shared(per_producer); },
      [&] { return run_lanes(per_producer, /*lock_per_message=*/false); },
      [&] { return run_lanes(per_producer, /*lock_per_message=*/true); },
  };
  constexpr int kLayouts = 3;
  std::vector<double> rates[kLayouts];
  const double delivered = static_cast<double>(per_producer * kProducers * kSubscribers);
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < kLayouts; ++k) {
      const int i = (r + k) % kLayouts;
      const Result result = layouts[i]();
      if (!result.exact) {
        std::fprintf(stderr, "%s: a subscriber did not see every sequence once\n", names[i]);
        return 1;
      }
      rates[i].push_back(delivered / result.seconds / 1e6);
    }
  }
  std::printf("2 producers -> 2 subscribers, capacity %llu, %d rounds, M msgs/s delivered\n",
              static_cast<unsigned long long>(kCapacity), rounds);
  std::printf("%-14s %8s  %s\n", "layout", "median", "quartiles");
  for (int i = 0; i < kLayouts; ++i) {
    using streamcache::bench::median;
    using streamcache::bench::quantile;
    std::printf("%-14s %8.1f  %.1f-%.1f\n", names[i], median(rates[i]), quantile(rates[i], 0.25),
                quantile(rates[i], 0.75));
  }
}
