// The broadcast implementations the Broadcast benchmarks compare, behind one adapter
// interface, and the run that drives them: shared by bench/broadcast_benchmark.cpp and
// bench/tools/broadcast_interleaved.cpp so that both measure exactly the same thing.
//
// Adapter interface (uint64_t messages):
//   Adapter(int producers, int subscribers);          // everyone subscribed before the run
//   void produce(int p, uint64_t first, uint64_t count);          // one message per call
//   void produce_batches(int p, uint64_t first, uint64_t count);  // kBatch per call
//   void producers_done();                             // close: subscribers drain, then stop
//   uint64_t consume(int s, bool batch, uint64_t& checksum);      // returns messages delivered
//
// Implementations:
//   RingBlock      streamcache::Broadcast, Overflow::kBlock (lossless, like the baselines)
//   RingOverwrite  streamcache::Broadcast, Overflow::kOverwrite (default; slow subscribers
//                  lose messages; only delivered ones count)
//   SpscFanout     one boost::lockfree::spsc_queue<uint64_t, capacity<4096>> per
//                  (producer, subscriber) pair; each producer pushes every message into
//                  each of its queues, each subscriber pops its queues round-robin
//                  (pop() one at a time, or pop(buf, 64) for batches)
//   MutexDeque     std::mutex + std::condition_variable + std::deque broadcast with a
//                  cursor per subscriber; producers wait when 4096 messages are unread
// Spin loops of the baselines (a full spsc queue, an empty one) pause once, then yield:
// with 5 threads on 2 cores, a pure spin would mostly measure the scheduler. Boost
// documents no wait strategy, so the spin count is the one that measured best for the
// spsc fan-out (session 12, 3 sittings, every case): limits of 1, 2 and 4 measured alike,
// 16 and the 64 used until then were slower (1 -> 1 batches 47-54 and 41-52 against
// 96-108 M msgs/s). Our ring's kBlocking waits spin twice too (session 13: against 16,
// faster with two producers in the machine's fast state), yield, then sleep on a futex.
#pragma once

#include <time.h>

#include <boost/lockfree/spsc_queue.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "streamcache/broadcast.hpp"

namespace streamcache::bench::broadcast {

inline constexpr uint64_t kMessages = uint64_t{1} << 21;
inline constexpr size_t kCapacity = 4096;
inline constexpr size_t kBatch = 64;

class Backoff {
 public:
  void pause() {
    if (++spins_ < kSpinsBeforeYield) {
      streamcache::detail::cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
  void reset() { spins_ = 0; }

 private:
  static constexpr int kSpinsBeforeYield = 2;
  int spins_ = 0;
};

// --- adapters: Setup(P, S); Produce(p, n); Consume(s, batch) -> delivered; Finish() ---

template <streamcache::Overflow kOverflow>
class RingAdapter {
 public:
  RingAdapter(int /*producers*/, int subscribers)
      : ring_(streamcache::BroadcastOptions{.capacity = kCapacity, .overflow = kOverflow}) {
    for (int i = 0; i < subscribers; ++i) subs_.push_back(ring_.subscribe());
  }
  void produce(int /*p*/, uint64_t first, uint64_t count) {
    for (uint64_t i = 0; i < count; ++i) ring_.publish(first + i);
  }
  void produce_batches(int /*p*/, uint64_t first, uint64_t count) {
    uint64_t buf[kBatch];
    for (uint64_t i = 0; i < count; i += kBatch) {
      const uint64_t n = std::min<uint64_t>(kBatch, count - i);
      for (uint64_t k = 0; k < n; ++k) buf[k] = first + i + k;
      ring_.publish_batch(std::span<const uint64_t>(buf, n));
    }
  }
  void producers_done() { ring_.close(); }
  uint64_t consume(int s, bool batch, uint64_t& checksum) {
    streamcache::Subscriber<uint64_t>& sub = subs_[s];
    uint64_t delivered = 0;
    if (batch) {
      std::vector<uint64_t> out;
      out.reserve(kBatch);
      for (;;) {
        out.clear();
        const size_t n = sub.recv_batch(out, kBatch);
        if (n == 0) break;
        delivered += n;
        checksum += out.back();
      }
    } else {
      for (;;) {
        streamcache::Received<uint64_t> r = sub.recv();
        if (r.status == streamcache::RecvStatus::kOk) {
          ++delivered;
          checksum += *r.value;
        } else if (r.status != streamcache::RecvStatus::kLagged) {
          break;
        }
      }
    }
    return delivered;
  }

 private:
  streamcache::Broadcast<uint64_t> ring_;
  std::vector<streamcache::Subscriber<uint64_t>> subs_;
};

using RingBlock = RingAdapter<streamcache::Overflow::kBlock>;
using RingOverwrite = RingAdapter<streamcache::Overflow::kOverwrite>;

class SpscFanout {
  using Queue = boost::lockfree::spsc_queue<uint64_t, boost::lockfree::capacity<kCapacity>>;

 public:
  SpscFanout(int producers, int subscribers)
      : producers_(producers), subscribers_(subscribers), done_(producers) {
    for (int i = 0; i < producers * subscribers; ++i) queues_.push_back(std::make_unique<Queue>());
    for (auto& d : done_) d.store(false);
  }
  Queue& queue(int p, int s) { return *queues_[static_cast<size_t>(p * subscribers_ + s)]; }

  void produce(int p, uint64_t first, uint64_t count) {
    for (uint64_t i = 0; i < count; ++i) {
      for (int s = 0; s < subscribers_; ++s) {
        Backoff backoff;
        while (!queue(p, s).push(first + i)) backoff.pause();
      }
    }
    done_[p].store(true, std::memory_order_release);  // release: pairs with the acquire load in consume()
  }
  // boost's documented batch push: push(const T*, size) returns how many fitted.
  void produce_batches(int p, uint64_t first, uint64_t count) {
    uint64_t buf[kBatch];
    for (uint64_t i = 0; i < count; i += kBatch) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kBatch, count - i));
      for (size_t k = 0; k < n; ++k) buf[k] = first + i + k;
      for (int s = 0; s < subscribers_; ++s) {
        Backoff backoff;
        for (size_t pushed = 0; pushed < n;) {
          const size_t now = queue(p, s).push(buf + pushed, n - pushed);
          pushed += now;
          if (now == 0) backoff.pause();
        }
      }
    }
    done_[p].store(true, std::memory_order_release);  // release: pairs with the acquire load in consume()
  }
  void producers_done() {}
  uint64_t consume(int s, bool batch, uint64_t& checksum) {
    uint64_t delivered = 0;
    uint64_t buf[kBatch];
    Backoff backoff;
    for (;;) {
      bool any = false;
      for (int p = 0; p < producers_; ++p) {
        Queue& q = queue(p, s);
        if (batch) {
          const size_t n = q.pop(buf, kBatch);
          if (n != 0) {
            any = true;
            delivered += n;
            checksum += buf[n - 1];
          }
        } else {
          uint64_t v;
          if (q.pop(v)) {
            any = true;
            ++delivered;
            checksum += v;
          }
        }
      }
      if (any) {
        backoff.reset();
        continue;
      }
      bool all_done = true;
      for (int p = 0; p < producers_; ++p) {
        // acquire: pairs with the release store in produce(); then drain once more.
        all_done = all_done && done_[p].load(std::memory_order_acquire) && queue(p, s).empty();
      }
      if (all_done) return delivered;
      backoff.pause();
    }
  }

 private:
  int producers_;
  int subscribers_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::vector<std::atomic<bool>> done_;
};

class MutexDeque {
 public:
  MutexDeque(int /*producers*/, int subscribers) : cursors_(static_cast<size_t>(subscribers), 1) {}

  void produce(int /*p*/, uint64_t first, uint64_t count) {
    for (uint64_t i = 0; i < count; ++i) {
      std::unique_lock lock(mu_);
      not_full_.wait(lock, [&] { return queue_.size() < kCapacity; });
      queue_.push_back(first + i);
      lock.unlock();
      not_empty_.notify_all();
    }
  }
  void produce_batches(int /*p*/, uint64_t first, uint64_t count) {
    for (uint64_t i = 0; i < count; i += kBatch) {
      const uint64_t n = std::min<uint64_t>(kBatch, count - i);
      std::unique_lock lock(mu_);
      not_full_.wait(lock, [&] { return queue_.size() + n <= kCapacity; });
      for (uint64_t k = 0; k < n; ++k) queue_.push_back(first + i + k);
      lock.unlock();
      not_empty_.notify_all();
    }
  }
  void producers_done() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    not_empty_.notify_all();
  }
  uint64_t consume(int s, bool batch, uint64_t& checksum) {
    uint64_t delivered = 0;
    const size_t max = batch ? kBatch : 1;
    for (;;) {
      std::unique_lock lock(mu_);
      uint64_t& cursor = cursors_[static_cast<size_t>(s)];
      not_empty_.wait(lock, [&] { return cursor < base_ + queue_.size() || closed_; });
      if (cursor == base_ + queue_.size()) return delivered;  // closed and drained
      for (size_t n = 0; n < max && cursor < base_ + queue_.size(); ++n) {
        checksum += queue_[cursor - base_];
        ++cursor;
        ++delivered;
      }
      // Drop what every subscriber has read.
      uint64_t oldest = cursor;
      for (uint64_t c : cursors_) oldest = std::min(oldest, c);
      bool freed = false;
      while (base_ < oldest) {
        queue_.pop_front();
        ++base_;
        freed = true;
      }
      lock.unlock();
      if (freed) not_full_.notify_all();
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<uint64_t> queue_;
  uint64_t base_ = 1;  // sequence of queue_.front()
  std::vector<uint64_t> cursors_;
  bool closed_ = false;
};

inline double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct RunResult {
  uint64_t delivered = 0;  // messages delivered, summed over subscribers
  uint64_t checksum = 0;   // keeps the reads observable
  double seconds = 0;      // wall clock, threads' start to the last join
  double cpu_seconds = 0;  // the whole process's CPU time over the same span
};

/// One run: `producers` threads publish kMessages in total (split evenly), one message
/// per call or kBatch per call (`publish_batches`); `subscribers` threads receive until
/// the channel is closed and drained, one message per call or up to kBatch (`batch`).
template <class Impl>
RunResult run_once(int producers, int subscribers, bool batch, bool publish_batches) {
  RunResult result;
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = process_cpu_seconds();
  Impl impl(producers, subscribers);
  std::vector<uint64_t> delivered(static_cast<size_t>(subscribers));
  std::vector<uint64_t> sums(static_cast<size_t>(subscribers));
  std::vector<std::thread> consumers;
  for (int s = 0; s < subscribers; ++s) {
    consumers.emplace_back([&, s] {
      // The checksum is accumulated on this thread's stack and stored once: consume()
      // adds to it per message through the reference, and neighbouring elements of
      // `sums` share a cache line, so every message moved that line between the
      // subscribers' cores (until session 12: 2 -> 2 recv, 33% of a subscriber's time).
      uint64_t sum = 0;
      delivered[static_cast<size_t>(s)] = impl.consume(s, batch, sum);
      sums[static_cast<size_t>(s)] = sum;
    });
  }
  std::vector<std::thread> writers;
  const uint64_t share = kMessages / static_cast<uint64_t>(producers);
  for (int p = 0; p < producers; ++p) {
    writers.emplace_back([&, p] {
      const uint64_t first = 1 + static_cast<uint64_t>(p) * share;
      if (publish_batches) {
        impl.produce_batches(p, first, share);
      } else {
        impl.produce(p, first, share);
      }
    });
  }
  for (auto& t : writers) t.join();
  impl.producers_done();
  for (auto& t : consumers) t.join();
  for (size_t s = 0; s < delivered.size(); ++s) {
    result.delivered += delivered[s];
    result.checksum += sums[s];
  }
  result.cpu_seconds = process_cpu_seconds() - cpu_start;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace streamcache::bench::broadcast
