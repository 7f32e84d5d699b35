// The soak run: the Cache, two Broadcast rings and a StreamingMap under a mixed
// multi-threaded load for a given time, checking invariants continuously and at quiescent
// checkpoints, printing operations and RSS once a second, and failing on an invariant
// violation, a part that stops making progress, or RSS that keeps growing after warm-up.
//
//   soak [minutes]          (default 10; fractions allowed, e.g. 0.5)
//   soak --seconds N
//
// Exit status: 0 pass, 1 invariant violation / stall / leak, 2 usage, 3 shutdown hung.
// Run through scripts/soak, which builds the release preset first. docs/reliability.md
// records a 10-minute run and explains the leak threshold.
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "streamcache/streamcache.hpp"

namespace {

using namespace streamcache;
using Steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

// ---- Reporting -------------------------------------------------------------------------

std::stop_source g_stop;  // the end of the run
std::atomic<uint64_t> g_violations{0};
std::mutex g_print_mu;

// Counts every violation and prints the first 20. The run goes on to its end, so that one
// run shows every kind of failure and still measures memory for the whole time.
void violation(const std::string& what) {
  if (g_violations.fetch_add(1) >= 20) return;
  std::lock_guard lock(g_print_mu);
  std::fprintf(stderr, "VIOLATION: %s\n", what.c_str());
  std::fflush(stderr);
}

double rss_mib() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

// Bytes the program has allocated and not freed (all malloc arenas plus mmapped blocks).
double heap_in_use_mib() {
  const struct mallinfo2 m = mallinfo2();
  return static_cast<double>(m.uordblks + m.hblkhd) / (1024.0 * 1024.0);
}

// RSS as the leak check sees it: glibc keeps freed pages inside its arenas, so raw RSS is
// the high-water mark of transient peaks (16 threads, several arenas) and ratchets up in
// steps without any leak. malloc_trim(0) first returns the free pages to the kernel, so
// what is left tracks live memory plus unavoidable fragmentation.
double trimmed_rss_mib() {
  malloc_trim(0);
  return rss_mib();
}

// Counters bumped by one worker and read by the monitor once a second: relaxed, because
// nothing else is published through them and a slightly stale figure is fine.
struct Counter {
  std::atomic<uint64_t> n{0};
  void add(uint64_t k = 1) { n.fetch_add(k, std::memory_order_relaxed); }  // relaxed: statistics only
  uint64_t get() const { return n.load(std::memory_order_relaxed); }        // relaxed: statistics only
};

// ---- Quiescent checkpoints ---------------------------------------------------------------

// Lets a checker stop a part's writers between two operations, check, and let them go.
// Invariant: while pause() has returned and resume() has not, every registered worker is
// inside wait_if_paused() (or has exited), so it holds no lock and no operation is in flight.
class Quiescer {
 public:
  explicit Quiescer(int workers) : workers_(workers) {}

  // Worker side: called between operations.
  void wait_if_paused() {
    if (!requested_.load()) return;
    std::unique_lock lock(mu_);
    ++parked_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !requested_.load(); });
    --parked_;
  }
  void worker_exited() {
    std::lock_guard lock(mu_);
    ++exited_;
    cv_.notify_all();
  }

  // Checker side. Returns false if the workers did not all park in time (they are hung).
  bool pause() {
    std::unique_lock lock(mu_);
    requested_.store(true);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return parked_ + exited_ == workers_; });
  }
  void resume() {
    std::lock_guard lock(mu_);
    requested_.store(false);
    cv_.notify_all();
  }

 private:
  const int workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> requested_{false};
  int parked_ = 0;
  int exited_ = 0;
};

// ---- Part 1: the Cache -------------------------------------------------------------------
//
// Workers mix get / insert / compute / get_with / remove / invalidate / invalidate_if / contains_key
// on a skewed key space, with a time-to-live on the system clock. Continuously: every value
// read or loaded belongs to the key asked for and is intact. At checkpoints (writers parked,
// maintenance run): the size bound holds exactly, entry_count() == weighted_size(), every
// entry is intact, and the stats agree with the causes the listener was told. Once a
// second: the entry count stays within the documented overshoot bound. Every few seconds,
// while the workers run, set_max_capacity() changes the bound (shrinking and growing).

struct CacheValue {
  uint64_t key = 0;
  uint64_t version = 0;
  std::string body;
};

std::string cache_body(uint64_t key, uint64_t version) {
  return std::string((key + version) % 48, static_cast<char>('a' + (key * 31 + version) % 26));
}
CacheValue make_cache_value(uint64_t key, uint64_t version) { return {key, version, cache_body(key, version)}; }
bool intact(uint64_t key, const CacheValue& v) { return v.key == key && v.body == cache_body(key, v.version); }

class CachePart {
 public:
  static constexpr int kWorkers = 2;
  static constexpr uint64_t kCapacity = 20'000;
  static constexpr uint64_t kKeys = 60'000;

  CachePart()
      : cache_(Cache<uint64_t, CacheValue>::builder()
                   .max_capacity(kCapacity)
                   .time_to_live(milliseconds(200))
                   .eviction_listener([this](const uint64_t& k, const CacheValue& v, RemovalCause cause) {
                     if (!intact(k, v)) violation("cache: listener got a torn entry for key " + std::to_string(k));
                     causes_[static_cast<size_t>(cause)].add();
                   })
                   .build()),
        quiescer_(kWorkers) {}

  void start(std::vector<std::jthread>& threads) {
    for (int w = 0; w < kWorkers; ++w) threads.emplace_back([this, w] { work(w); });
  }

  uint64_t ops() const { return ops_.get(); }

  // Once a second from the monitor: the most entries seen (including expired ones not yet
  // removed), to tell memory growth from the cache overshooting its capacity under load.
  // The documented bound (docs/design.md, "Size bound"): at most 256 pending writes plus one
  // in-flight write per writer above the capacity, at any moment. Reported at each new peak.
  // Then, every fifth call, a new bound, unless a checkpoint is running (it checks the bound
  // it read).
  void sample_entries() {
    const uint64_t count = cache_.entry_count();
    peak_entries_ = std::max(peak_entries_, count);
    if (count > peak_since_resize_) {
      peak_since_resize_ = count;
      const uint64_t bound = capacity_ + 256 + kWorkers;
      if (count > bound) {
        violation("cache: " + std::to_string(count) + " entries, above the bound capacity + 256 + writers = " +
                  std::to_string(bound));
      }
    }
    if (++samples_ % 5 != 0) return;
    std::unique_lock<std::mutex> lock(bound_mu_, std::try_to_lock);
    if (!lock.owns_lock()) return;
    capacity_ = kCapacities[(samples_ / 5) % std::size(kCapacities)];
    cache_.set_max_capacity(capacity_);
    ++resizes_;
    peak_since_resize_ = 0;  // the next sample is held to the new bound
  }

  void checkpoint() {
    if (!quiescer_.pause()) {
      violation("cache: workers did not reach a checkpoint within 30 s");
      quiescer_.resume();
      return;
    }
    const std::lock_guard<std::mutex> lock(bound_mu_);
    cache_.run_pending_tasks();
    const uint64_t count = cache_.entry_count();
    if (count > capacity_) violation("cache: " + std::to_string(count) + " entries after maintenance, capacity " + std::to_string(capacity_));
    if (count != cache_.weighted_size()) {
      violation("cache: entry_count " + std::to_string(count) + " != weighted_size " + std::to_string(cache_.weighted_size()));
    }
    cache_.for_each([](const uint64_t& k, const CacheValue& v) {
      if (!intact(k, v)) violation("cache: for_each saw a torn entry for key " + std::to_string(k));
    });
    const CacheStats s = cache_.stats();
    auto told = [&](RemovalCause c) { return causes_[static_cast<size_t>(c)].get(); };
    if (s.replacements != told(RemovalCause::kReplaced) || s.invalidations != told(RemovalCause::kExplicit) ||
        s.evictions_expired != told(RemovalCause::kExpired) || s.evictions_size != told(RemovalCause::kSize)) {
      violation("cache: stats (replaced " + std::to_string(s.replacements) + ", explicit " + std::to_string(s.invalidations) +
                ", expired " + std::to_string(s.evictions_expired) + ", size " + std::to_string(s.evictions_size) +
                ") disagree with the listener (" + std::to_string(told(RemovalCause::kReplaced)) + ", " +
                std::to_string(told(RemovalCause::kExplicit)) + ", " + std::to_string(told(RemovalCause::kExpired)) + ", " +
                std::to_string(told(RemovalCause::kSize)) + ")");
    }
    last_stats_ = s;
    ++checkpoints_;
    quiescer_.resume();
  }

  std::string summary() const {
    const CacheStats& s = last_stats_;
    return "cache: " + std::to_string(checkpoints_) + " checkpoints, " + std::to_string(resizes_) +
           " resizes, peak " + std::to_string(peak_entries_) + " entries (capacity at the end " + std::to_string(capacity_) +
           "), hit rate " + std::to_string(s.hit_rate()).substr(0, 5) +
           ", expired " + std::to_string(s.evictions_expired) + ", size-evicted " + std::to_string(s.evictions_size) +
           ", explicit " + std::to_string(s.invalidations) + ", replaced " + std::to_string(s.replacements) +
           ", loads " + std::to_string(s.load_successes);
  }

 private:
  void work(int worker) {
    std::mt19937_64 rng(1000 + static_cast<uint64_t>(worker));
    uint64_t version = 0;
    auto key = [&] { return (rng() & 1) ? rng() % 2'000 : rng() % kKeys; };  // a hot set and a long tail
    while (!g_stop.stop_requested()) {
      quiescer_.wait_if_paused();
      for (int i = 0; i < 64; ++i) {
        const uint64_t k = key();
        const uint64_t dice = rng() % 1000;
        if (dice < 500) {
          if (auto v = cache_.get(k); v && !intact(k, *v)) violation("cache: get returned a foreign or torn value for key " + std::to_string(k));
        } else if (dice < 650) {
          cache_.insert(k, make_cache_value(k, ++version));
        } else if (dice < 700) {
          compute(k, rng());
        } else if (dice < 900) {
          const CacheValue v = cache_.get_with(k, [&] { return make_cache_value(k, 0); });
          if (!intact(k, v)) violation("cache: get_with returned a foreign or torn value for key " + std::to_string(k));
        } else if (dice < 970) {
          if (auto v = cache_.remove(k); v && !intact(k, *v)) violation("cache: remove returned a foreign value for key " + std::to_string(k));
        } else if (dice < 990) {
          cache_.invalidate(k);
        } else if (dice < 999) {
          (void)cache_.contains_key(k);
        } else if (worker == 0 && rng() % 64 == 0) {
          const uint64_t residue = rng() % 512;
          cache_.invalidate_if([residue](const uint64_t& kk, const CacheValue&) { return kk % 512 == residue; });
        }
      }
      ops_.add(64);
    }
    quiescer_.worker_exited();
  }

  // A read-modify-write racing everything above: bumps the version it read (or removes the
  // entry, or keeps it), and checks what it got and what it returns.
  void compute(uint64_t k, uint64_t choice) {
    using Op = ComputeOp<CacheValue>;
    const ComputeResult<CacheValue> r = cache_.compute(k, [&](const std::optional<CacheValue>& current) {
      if (current && !intact(k, *current)) violation("cache: compute's function got a foreign or torn value for key " + std::to_string(k));
      if (choice % 8 == 0) return Op::remove();
      if (choice % 8 == 1) return Op::nop();
      return Op::put(make_cache_value(k, current ? current->version + 1 : 1));
    });
    if (r.value && !intact(k, *r.value)) violation("cache: compute returned a foreign or torn value for key " + std::to_string(k));
  }

  std::array<Counter, 4> causes_;  // before cache_: the listener uses it while the cache lives
  Cache<uint64_t, CacheValue> cache_;
  Quiescer quiescer_;
  Counter ops_;
  CacheStats last_stats_{};
  uint64_t checkpoints_ = 0;
  // Monitor thread only:
  uint64_t peak_entries_ = 0;
  uint64_t peak_since_resize_ = 0;
  uint64_t samples_ = 0;
  uint64_t resizes_ = 0;
  static constexpr uint64_t kCapacities[] = {kCapacity, 5'000, 40'000, 12'000};
  // The bound in force: changed by the monitor, read by the checker's checkpoints, under
  // bound_mu_ (the monitor's once-a-second check reads its own writes).
  std::mutex bound_mu_;
  uint64_t capacity_ = kCapacity;
};

// ---- Part 2: Broadcast --------------------------------------------------------------------
//
// A kOverwrite ring of strings (two producers, three subscribers that join, lag on purpose
// and leave): each subscriber sees gap-free sequences except where it was told of lag, the
// missed count equals the gap exactly, missed_total() agrees, each producer's messages come
// in its order, and no message is torn. A kBlock ring (one producer, two churning
// subscribers): every subscriber sees every message after it joined, exactly once, never lag.

struct Msg {
  uint32_t producer = 0;
  uint64_t counter = 0;
  std::string body;
};
std::string msg_body(uint32_t producer, uint64_t counter) {
  return std::string(counter % 40, static_cast<char>('A' + (producer * 7 + counter) % 26));
}

class BroadcastPart {
 public:
  static constexpr uint32_t kProducers = 2;
  static constexpr int kSubscribers = 3;
  static constexpr int kBlockSubscribers = 2;

  void start(std::vector<std::jthread>& threads) {
    for (uint32_t p = 0; p < kProducers; ++p) threads.emplace_back([this, p] { produce(p); });
    for (int s = 0; s < kSubscribers; ++s) threads.emplace_back([this, s] { subscribe_overwrite(s); });
    threads.emplace_back([this] { produce_block(); });
    for (int s = 0; s < kBlockSubscribers; ++s) threads.emplace_back([this, s] { subscribe_block(s); });
  }

  uint64_t ops() const { return ops_.get(); }
  void close() {
    ring_.close();
    block_ring_.close();
  }

  std::string summary() const {
    return "broadcast: " + std::to_string(published_.get()) + " published, " + std::to_string(received_.get()) +
           " received, " + std::to_string(lagged_.get()) + " lag reports (" + std::to_string(missed_.get()) +
           " missed), " + std::to_string(subscriptions_.get()) + " subscriptions; kBlock ring " +
           std::to_string(block_published_.get()) + " published, " + std::to_string(block_received_.get()) + " received";
  }

 private:
  void produce(uint32_t p) {
    for (uint64_t c = 1; !g_stop.stop_requested(); ++c) {
      try {
        ring_.publish(Msg{p, c, msg_body(p, c)});
      } catch (const std::logic_error&) {
        return;  // closed at shutdown
      }
      published_.add();
      ops_.add();
      // Paced (at most ~64k messages/s each) so that fast subscribers keep up on a small
      // machine and only the deliberately slow ones lag.
      if (c % 64 == 0) std::this_thread::sleep_for(milliseconds(1));
    }
  }

  void subscribe_overwrite(int s) {
    std::mt19937_64 rng(2000 + static_cast<uint64_t>(s));
    const std::stop_token stop = g_stop.get_token();
    std::vector<Msg> batch;
    while (!stop.stop_requested()) {
      const uint64_t cursor = ring_.published_cursor();
      Subscriber<Msg> sub = (rng() % 3 == 0 && cursor > 0) ? ring_.subscribe_from(cursor - std::min<uint64_t>(cursor, rng() % 3000))
                                                           : ring_.subscribe();
      subscriptions_.add();
      uint64_t expected = sub.next_seq();
      uint64_t missed = 0;
      std::array<uint64_t, kProducers> last{};
      const bool slow = rng() % 4 == 0;
      const uint64_t budget = 1'000 + rng() % 100'000;
      auto check = [&](const Msg& m, uint64_t seq) {
        if (m.producer >= kProducers || m.body != msg_body(m.producer, m.counter)) {
          violation("broadcast: torn message at seq " + std::to_string(seq));
        } else if (m.counter <= last[m.producer]) {
          violation("broadcast: producer " + std::to_string(m.producer) + " out of order at seq " + std::to_string(seq));
        } else {
          last[m.producer] = m.counter;
        }
      };
      for (uint64_t got = 0; got < budget && !stop.stop_requested();) {
        if (slow && got % 64 == 0) std::this_thread::sleep_for(milliseconds(2));  // fall behind on purpose
        if (rng() % 2 == 0) {
          Received<Msg> r = (rng() % 2) ? sub.recv_for(milliseconds(50), stop) : sub.try_recv();
          switch (r.status) {
            case RecvStatus::kOk:
              if (r.seq != expected) violation("broadcast: got seq " + std::to_string(r.seq) + ", expected " + std::to_string(expected));
              if (r.missed != 0 || !r.value) violation("broadcast: kOk without a value or with a missed count");
              if (r.value) check(*r.value, r.seq);
              expected = r.seq + 1;
              ++got;
              received_.add();
              ops_.add();
              break;
            case RecvStatus::kLagged:
              if (r.missed == 0 || r.seq != expected + r.missed || r.value) {
                violation("broadcast: kLagged at " + std::to_string(expected) + " reports missed " + std::to_string(r.missed) +
                          " and continues at " + std::to_string(r.seq));
              }
              missed += r.missed;
              expected = r.seq;
              lagged_.add();
              missed_.add(r.missed);
              break;
            case RecvStatus::kClosed:
              if (!stop.stop_requested()) violation("broadcast: kClosed while the ring is open");
              got = budget;
              break;
            case RecvStatus::kEmpty:
            case RecvStatus::kTimeout:
            case RecvStatus::kCancelled:
              break;
          }
        } else {
          batch.clear();
          const size_t n = sub.recv_batch(batch, 1 + rng() % 64, stop);
          if (n == 0) {
            if (!stop.stop_requested()) violation("broadcast: recv_batch returned 0 while the ring is open");
            break;
          }
          const uint64_t first = sub.next_seq() - n;
          if (first < expected) violation("broadcast: recv_batch went backwards to " + std::to_string(first));
          if (first > expected) {  // lag inside the batch
            missed += first - expected;
            lagged_.add();
            missed_.add(first - expected);
          }
          for (size_t i = 0; i < n; ++i) check(batch[i], first + i);
          expected = sub.next_seq();
          got += n;
          received_.add(n);
          ops_.add(n);
        }
        if (sub.missed_total() != missed) {
          violation("broadcast: missed_total " + std::to_string(sub.missed_total()) + " != reported " + std::to_string(missed));
        }
        if (sub.next_seq() != expected) violation("broadcast: next_seq disagrees with what was received");
      }
    }
  }

  void produce_block() {
    for (uint64_t c = 1; !g_stop.stop_requested(); ++c) {
      try {
        const uint64_t seq = block_ring_.publish(c);
        if (seq != c) violation("broadcast kBlock: the only producer's message " + std::to_string(c) + " got seq " + std::to_string(seq));
      } catch (const std::logic_error&) {
        return;  // closed at shutdown, possibly while waiting for a subscriber
      }
      block_published_.add();
      ops_.add();
      if (c % 256 == 0) std::this_thread::yield();
    }
  }

  void subscribe_block(int s) {
    std::mt19937_64 rng(3000 + static_cast<uint64_t>(s));
    const std::stop_token stop = g_stop.get_token();
    std::vector<uint64_t> batch;
    while (!stop.stop_requested()) {
      Subscriber<uint64_t> sub = block_ring_.subscribe();
      uint64_t expected = sub.next_seq();
      const bool slow = rng() % 4 == 0;
      const uint64_t budget = 1'000 + rng() % 200'000;
      for (uint64_t got = 0; got < budget && !stop.stop_requested();) {
        if (slow && got % 64 == 0) std::this_thread::sleep_for(milliseconds(1));  // hold the producer back
        batch.clear();
        if (rng() % 2 == 0) {
          Received<uint64_t> r = sub.recv(stop);
          if (r.status == RecvStatus::kCancelled || r.status == RecvStatus::kClosed) break;
          if (r.status != RecvStatus::kOk) {
            violation("broadcast kBlock: status " + std::to_string(static_cast<int>(r.status)) + " at seq " + std::to_string(expected));
            break;
          }
          if (r.seq != expected || *r.value != r.seq) violation("broadcast kBlock: got seq " + std::to_string(r.seq) + " value " + std::to_string(*r.value) + ", expected " + std::to_string(expected));
          expected = r.seq + 1;
          ++got;
          block_received_.add();
          ops_.add();
        } else {
          const size_t n = sub.recv_batch(batch, 1 + rng() % 128, stop);
          if (n == 0) break;
          for (size_t i = 0; i < n; ++i) {
            if (batch[i] != expected + i) violation("broadcast kBlock: gap or duplicate at seq " + std::to_string(expected + i));
          }
          expected += n;
          got += n;
          block_received_.add(n);
          ops_.add(n);
        }
        if (sub.missed_total() != 0) {  // report once, then start a fresh subscription
          violation("broadcast kBlock: a subscriber lagged: missed_total " + std::to_string(sub.missed_total()) +
                    ", next_seq " + std::to_string(sub.next_seq()) + ", " + std::to_string(got) + " received");
          break;
        }
      }
    }
  }

  Broadcast<Msg> ring_{BroadcastOptions{.capacity = 1024}};
  Broadcast<uint64_t> block_ring_{BroadcastOptions{.capacity = 256, .overflow = Overflow::kBlock}};
  Counter ops_, published_, received_, lagged_, missed_, subscriptions_, block_published_, block_received_;
};

// ---- Part 3: the StreamingMap -------------------------------------------------------------
//
// Writers insert and remove over a small key space; subscribers open streams of all three
// kinds (stream() with a rebuilt state, stream_from(last processed seq) keeping their state,
// stream_batches()), some slow enough to lag past the small ring and recover. Continuously:
// sequences strictly increase (except the relisting after kReset), snapshots only before
// kSnapshotEnd, live events only above the cutoff, values present exactly where they must be,
// every recovery ended by a kSnapshotEnd at its cutoff (mark_recovery_end) before any live
// upsert.
// At checkpoints the writers park, a marker key is written, and every subscriber, on
// applying the marker, compares its whole state with the map: they must be equal.

class MapPart {
 public:
  static constexpr int kWriters = 2;
  static constexpr int kSubscribers = 3;
  static constexpr uint32_t kKeys = 1024;
  static constexpr uint32_t kMarkerKey = kKeys;  // written only at checkpoints

  MapPart() : map_(options()), quiescer_(kWriters) {}

  void start(std::vector<std::jthread>& threads) {
    for (int w = 0; w < kWriters; ++w) threads.emplace_back([this, w] { write(w); });
    for (int s = 0; s < kSubscribers; ++s) threads.emplace_back([this, s] { subscribe(s); });
  }

  uint64_t ops() const { return ops_.get(); }

  void checkpoint() {
    if (!quiescer_.pause()) {
      violation("map: writers did not reach a checkpoint within 30 s");
      quiescer_.resume();
      return;
    }
    const uint64_t id = ++checkpoint_id_;
    map_.insert(kMarkerKey, "cp" + std::to_string(id));
    // Every subscriber thread is always inside some stream, so each one applies the marker.
    const auto deadline = Steady::now() + std::chrono::seconds(30);
    for (const auto& done : checked_) {
      while (done.load() < id && !g_stop.stop_requested()) {
        if (Steady::now() > deadline) {
          violation("map: a subscriber did not reach checkpoint " + std::to_string(id) + " within 30 s");
          break;
        }
        std::this_thread::sleep_for(milliseconds(1));
      }
    }
    quiescer_.resume();
  }

  std::string summary() const {
    return "map: " + std::to_string(mutations_.get()) + " mutations, " + std::to_string(events_.get()) + " events, " +
           std::to_string(streams_.get()) + " streams (" + std::to_string(resumes_.get()) + " stream_from), " +
           std::to_string(resyncs_.get()) + " kResync, " + std::to_string(resets_.get()) + " kReset, " +
           std::to_string(recovery_ends_.get()) + " recovery ends, " +
           std::to_string(checkpoint_id_.load()) + " checkpoints compared by every subscriber";
  }

 private:
  using M = StreamingMap<uint32_t, std::string>;
  using E = Event<uint32_t, std::string>;

  static StreamingMapOptions options() {
    StreamingMapOptions o;
    o.ring_capacity = 512;    // small: slow subscribers lag and recover
    o.snapshot_batch = 64;
    o.mark_snapshot_end = true;
    o.mark_recovery_end = true;
    return o;
  }

  void write(int w) {
    std::mt19937_64 rng(4000 + static_cast<uint64_t>(w));
    uint64_t n = 0;
    while (!g_stop.stop_requested()) {
      quiescer_.wait_if_paused();
      for (int i = 0; i < 32; ++i) {
        const auto k = static_cast<uint32_t>(rng() % kKeys);
        if (rng() % 5 == 0) {
          map_.remove(k);
        } else {
          map_.insert(k, writer_value(w, ++n));
        }
      }
      mutations_.add(32);
      ops_.add(32);
      // Paced (at most ~32k mutations/s each) so that normal subscribers keep up on a small
      // machine and only the deliberately slow ones lag and recover.
      std::this_thread::sleep_for(milliseconds(1));
    }
    quiescer_.worker_exited();
  }

  // "w<writer>:<n>". Formatted with snprintf: g++ 12 at -O3 warns (-Wrestrict, a known false
  // positive, GCC bug 105329) on the equivalent chain of std::string operator+.
  static std::string writer_value(int w, uint64_t n) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "w%d:%llu", w, static_cast<unsigned long long>(n));
    return buf;
  }

  // One subscriber thread's consumer state, carried across its streams.
  struct Consumer {
    std::map<uint32_t, std::string> state;
    uint64_t prev = 0;         // last sequence applied (the resume point)
    bool have_state = false;   // state is the map's as of `prev` (so stream_from(prev) may resume)
    bool history = false;      // before kSnapshotEnd of a stream()
    bool relisting = false;    // after kReset, until its recovery's kSnapshotEnd
    bool recovering = false;   // a kResync or kReset came, its recovery's kSnapshotEnd not yet
    uint64_t cutoff = 0;
  };

  void subscribe(int s) {
    std::mt19937_64 rng(5000 + static_cast<uint64_t>(s));
    const std::stop_token stop = g_stop.get_token();
    Consumer c;
    while (!stop.stop_requested()) {
      const uint64_t mode = rng() % 3;
      const bool slow = rng() % 3 == 0;
      const uint64_t budget = 100 + rng() % 20'000;
      uint64_t seen = 0;
      bool leave = false;
      streams_.add();
      // Returns false to leave the stream.
      auto on_event = [&](const E& e) {
        apply(s, c, e);
        ++seen;
        events_.add();
        ops_.add();
        if (slow && seen % 8 == 0) std::this_thread::sleep_for(milliseconds(1));  // fall behind on purpose
        // Leave only where the state is the map's as of `prev`: not in a recovery.
        leave = seen >= budget && !c.recovering;
        return !leave;
      };
      if (mode == 0 && c.have_state) {
        resumes_.add();
        c.history = false;
        for (const E& e : map_.stream_from(c.prev, stop)) {
          if (!on_event(e)) break;
        }
      } else if (mode == 1) {
        reset(c);
        for (std::span<const E> span : map_.stream_batches(1 + rng() % 100, stop)) {
          if (span.empty()) violation("map: empty span from stream_batches");
          bool go = true;
          for (const E& e : span) {
            go = on_event(e);
            if (!go) break;
          }
          if (!go) break;
        }
      } else {
        reset(c);
        for (const E& e : map_.stream(stop)) {
          if (!on_event(e)) break;
        }
      }
      if (!leave && !stop.stop_requested()) violation("map: a stream ended while the map lives and no stop was requested");
    }
  }

  static void reset(Consumer& c) {
    c.state.clear();
    c.prev = 0;
    c.have_state = false;
    c.history = true;
    c.relisting = false;
    c.recovering = false;
    c.cutoff = 0;
  }

  void apply(int s, Consumer& c, const E& e) {
    auto bad = [&](const std::string& what) {
      violation("map subscriber " + std::to_string(s) + ": " + what + " (seq " + std::to_string(e.seq) + ", kind " +
                std::to_string(static_cast<int>(e.kind)) + ", previous " + std::to_string(c.prev) + ")");
    };
    switch (e.kind) {
      case EventKind::kSnapshotEnd:  // the history's, or a recovery's
        if (e.seq < c.prev) bad("cutoff below the sequences before it");
        if (c.relisting && e.seq != c.cutoff) bad("a relisting's kSnapshotEnd not at its kReset's seq");
        if (!c.history) recovery_ends_.add();
        c.history = false;
        c.relisting = false;
        c.recovering = false;
        c.cutoff = e.seq;
        c.prev = e.seq;
        c.have_state = true;
        return;
      case EventKind::kSnapshot:
        if (!c.history) bad("kSnapshot outside the history");
        break;
      case EventKind::kUpsert:
      case EventKind::kRemove:
        if (e.seq <= c.cutoff) bad("live event at or below the cutoff");
        if (c.recovering && e.kind == EventKind::kUpsert) bad("live event before the recovery's kSnapshotEnd");
        if (c.relisting) bad("kRemove inside a relisting");
        break;
      case EventKind::kResync:
        resyncs_.add();
        c.recovering = true;
        break;
      case EventKind::kReset:
        resets_.add();
        c.state.clear();
        c.relisting = true;
        c.recovering = true;
        c.prev = e.seq;  // the relisted state's sequences restart below it
        c.cutoff = e.seq;
        c.history = false;
        return;
    }
    if (c.history && e.kind != EventKind::kSnapshot) bad("non-snapshot event inside the history");
    if (!(c.relisting && e.kind == EventKind::kResync)) {
      if (e.seq <= c.prev) bad("sequence did not increase");
      c.prev = e.seq;
    }
    if (e.kind == EventKind::kRemove) {
      if (e.value) bad("kRemove with a value");
      c.state.erase(e.key);
    } else {
      if (!e.value) {
        bad("missing value");
        return;
      }
      c.state[e.key] = *e.value;
    }
    if (!c.history && !c.relisting) c.have_state = true;
    if (e.key == kMarkerKey && e.value) compare_at_marker(s, c, *e.value);
  }

  // The writers are parked and the marker is the newest write: the map is still, and a
  // consumer that has applied everything up to the marker must hold exactly its state.
  void compare_at_marker(int s, Consumer& c, const std::string& marker) {
    const uint64_t id = checkpoint_id_.load();
    if (marker != "cp" + std::to_string(id)) return;  // an older marker replayed (history / resync)
    if (checked_[static_cast<size_t>(s)].load() >= id) return;
    size_t differences = 0;
    for (uint32_t k = 0; k <= kKeys; ++k) {
      std::shared_ptr<const std::string> in_map = map_.get(k);
      auto it = c.state.find(k);
      const bool same = in_map ? (it != c.state.end() && it->second == *in_map) : it == c.state.end();
      if (!same && ++differences <= 3) {
        violation("map subscriber " + std::to_string(s) + " at checkpoint " + std::to_string(id) + ": key " + std::to_string(k) +
                  " is " + (it == c.state.end() ? "absent" : "'" + it->second + "'") + " but the map has " +
                  (in_map ? "'" + *in_map + "'" : "nothing"));
      }
    }
    checked_[static_cast<size_t>(s)].store(id);
  }

  M map_;
  Quiescer quiescer_;
  std::atomic<uint64_t> checkpoint_id_{0};
  std::array<std::atomic<uint64_t>, kSubscribers> checked_{};
  Counter ops_, mutations_, events_, streams_, resumes_, resyncs_, resets_, recovery_ends_;
};

// ---- The leak check -----------------------------------------------------------------------

struct Sample {
  double t;     // seconds since the start
  double rss;   // MiB, after malloc_trim
  double heap;  // MiB allocated and not freed
};

struct LeakVerdict {
  bool judged = false;
  bool leak = false;
  double slope_mib_per_min = 0;
  double fitted_growth = 0;
  double threshold = 0;
  double first = 0, last = 0;
  std::string text;
};

// Least-squares RSS growth after the warm-up. A leak is growth that is both steady (the
// fitted slope times the window exceeds the threshold) and real (the mean of the last 10%
// of samples exceeds that of the first 10% by the threshold too), so that one allocator
// step or a transient spike does not fail the run. Threshold: max(4 MiB, 5% of the RSS at
// the end of the warm-up).
LeakVerdict judge_leak(const std::vector<Sample>& samples, double warmup, double Sample::*what, const char* name) {
  LeakVerdict v;
  std::vector<Sample> w;
  for (const Sample& s : samples) {
    if (s.t >= warmup) w.push_back({s.t, s.*what, 0});
  }
  if (w.size() < 20) {
    v.text = "too short to judge a leak (" + std::to_string(w.size()) + " samples after the warm-up; need 20)";
    return v;
  }
  double mt = 0, mr = 0;
  for (const Sample& s : w) {
    mt += s.t;
    mr += s.rss;
  }
  mt /= static_cast<double>(w.size());
  mr /= static_cast<double>(w.size());
  double num = 0, den = 0;
  for (const Sample& s : w) {
    num += (s.t - mt) * (s.rss - mr);
    den += (s.t - mt) * (s.t - mt);
  }
  const double slope = den > 0 ? num / den : 0;  // MiB per second
  const size_t tenth = std::max<size_t>(1, w.size() / 10);
  for (size_t i = 0; i < tenth; ++i) {
    v.first += w[i].rss;
    v.last += w[w.size() - 1 - i].rss;
  }
  v.first /= static_cast<double>(tenth);
  v.last /= static_cast<double>(tenth);
  v.judged = true;
  v.slope_mib_per_min = slope * 60;
  v.fitted_growth = slope * (w.back().t - w.front().t);
  v.threshold = std::max(4.0, 0.05 * w.front().rss);
  v.leak = v.fitted_growth > v.threshold && v.last - v.first > v.threshold;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "%s after warm-up (t >= %.0f s): fitted slope %+.3f MiB/min, fitted growth %+.2f MiB over %.0f s, "
                "first-10%% mean %.1f MiB, last-10%% mean %.1f MiB, threshold %.1f MiB",
                name, warmup, v.slope_mib_per_min, v.fitted_growth, w.back().t - w.front().t, v.first, v.last, v.threshold);
  v.text = buf;
  return v;
}

std::string human(uint64_t n) {
  char buf[32];
  if (n >= 10'000'000'000ULL) {
    std::snprintf(buf, sizeof buf, "%.1fG", static_cast<double>(n) / 1e9);
  } else if (n >= 10'000'000) {
    std::snprintf(buf, sizeof buf, "%.1fM", static_cast<double>(n) / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(n));
  }
  return buf;
}

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [minutes] [--only cache|broadcast|map]   or   %s --seconds N [--only ...]\n", argv0, argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 600;
  // --only cache|broadcast|map (last): run one part alone, to find which one a failure is in.
  std::string only;
  if (argc >= 3 && std::string(argv[argc - 2]) == "--only") {
    only = argv[argc - 1];
    if (only != "cache" && only != "broadcast" && only != "map") return usage(argv[0]);
    argc -= 2;
  }
  const bool run_cache = only.empty() || only == "cache";
  const bool run_broadcast = only.empty() || only == "broadcast";
  const bool run_map = only.empty() || only == "map";
  if (argc == 2) {
    char* end = nullptr;
    const double minutes = std::strtod(argv[1], &end);
    if (end == argv[1] || *end != '\0' || !(minutes > 0)) return usage(argv[0]);
    seconds = minutes * 60;
  } else if (argc == 3 && std::string(argv[1]) == "--seconds") {
    char* end = nullptr;
    seconds = std::strtod(argv[2], &end);
    if (end == argv[2] || *end != '\0' || !(seconds > 0)) return usage(argv[0]);
  } else if (argc != 1) {
    return usage(argv[0]);
  }
  // glibc raises its mmap threshold (up to 32 MiB) each time it frees an mmapped block, so
  // after the first large transient vector (a resize's notifications: 35,000 evictions at
  // once) later ones come from the arenas, and trimmed RSS ratchets up in steps while the
  // heap in use stays flat (measured: cache part, 300 s, RSS 11.3 -> 17.7 MiB, heap 7.8).
  // Pinned at its default, large blocks keep going back to the kernel: RSS then tracks live
  // memory again (11.2 -> 11.4 MiB over 240 s), and a leak still raises both figures.
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  // Warm-up: 20% of the run, at least 30 s once the run is long enough for that to leave
  // most of it to measure.
  const double warmup = seconds >= 150 ? std::max(30.0, 0.2 * seconds) : 0.2 * seconds;
  std::printf("soak: %.0f s, warm-up %.0f s, %u hardware threads, RSS at start %.1f MiB (RSS is sampled after malloc_trim)\n",
              seconds, warmup, std::thread::hardware_concurrency(), rss_mib());
  std::fflush(stdout);

  auto cache = std::make_unique<CachePart>();
  auto broadcast = std::make_unique<BroadcastPart>();
  auto map = std::make_unique<MapPart>();
  std::vector<std::jthread> workers;
  if (run_cache) cache->start(workers);
  if (run_broadcast) broadcast->start(workers);
  if (run_map) map->start(workers);

  // Quiescent checkpoints every 10 s, on their own thread so the once-a-second line keeps
  // its rhythm while a checkpoint waits for the map's subscribers.
  std::jthread checker([&](std::stop_token) {
    const std::stop_token stop = g_stop.get_token();
    while (!stop.stop_requested()) {
      for (int i = 0; i < 100 && !stop.stop_requested(); ++i) std::this_thread::sleep_for(milliseconds(100));
      if (stop.stop_requested()) break;
      if (run_cache) cache->checkpoint();
      if (run_map) map->checkpoint();
    }
  });

  const auto start = Steady::now();
  std::vector<Sample> samples;
  std::array<uint64_t, 3> before{0, 0, 0};
  std::array<int, 3> still{0, 0, 0};
  const char* names[3] = {"cache", "broadcast", "map"};
  constexpr int kStallSeconds = 45;  // longer than a checkpoint may legitimately hold a part
  for (int tick = 1; !g_stop.stop_requested(); ++tick) {
    std::this_thread::sleep_until(start + std::chrono::seconds(tick));
    const double t = std::chrono::duration<double>(Steady::now() - start).count();
    const std::array<uint64_t, 3> now{cache->ops(), broadcast->ops(), map->ops()};
    if (run_cache) cache->sample_entries();
    const double rss = trimmed_rss_mib();
    const double heap = heap_in_use_mib();
    samples.push_back({t, rss, heap});
    std::printf("[%5.0fs] ops/s cache %9s  broadcast %9s  map %9s | total %8s %8s %8s | rss %6.1f MiB heap %6.1f MiB\n", t,
                human(now[0] - before[0]).c_str(), human(now[1] - before[1]).c_str(), human(now[2] - before[2]).c_str(),
                human(now[0]).c_str(), human(now[1]).c_str(), human(now[2]).c_str(), rss, heap);
    std::fflush(stdout);
    for (size_t p = 0; p < 3; ++p) {
      const bool running = p == 0 ? run_cache : p == 1 ? run_broadcast : run_map;
      still[p] = running && now[p] == before[p] ? still[p] + 1 : 0;
      if (still[p] >= kStallSeconds) violation(std::string(names[p]) + ": no progress for " + std::to_string(kStallSeconds) + " s (hang)");
    }
    before = now;
    if (t >= seconds) g_stop.request_stop();
  }

  // Shutdown must not hang either: give it a bound, then give up loudly.
  std::atomic<bool> shut_down{false};
  std::thread watchdog([&] {
    const auto deadline = Steady::now() + std::chrono::seconds(60);
    while (!shut_down.load()) {
      if (Steady::now() > deadline) {
        std::fprintf(stderr, "VIOLATION: shutdown did not finish within 60 s (hang)\n");
        std::_Exit(3);
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  });
  checker.join();
  broadcast->close();  // wakes kBlock producers and any receiver not watching the stop token
  workers.clear();     // joins
  if (g_violations.load() == 0 && run_cache) cache->checkpoint();  // one last look with everything stopped
  const double elapsed = std::chrono::duration<double>(Steady::now() - start).count();
  std::printf("\nsoak summary after %.0f s\n", elapsed);
  std::printf("  ops: cache %s, broadcast %s, map %s\n", human(cache->ops()).c_str(), human(broadcast->ops()).c_str(),
              human(map->ops()).c_str());
  std::printf("  %s\n  %s\n  %s\n", cache->summary().c_str(), broadcast->summary().c_str(), map->summary().c_str());
  cache.reset();
  broadcast.reset();
  map.reset();
  shut_down.store(true);
  watchdog.join();

  std::printf("  RSS samples (MiB, trimmed):");
  for (size_t i = 0; i < 11 && !samples.empty(); ++i) {
    const Sample& s = samples[std::min(samples.size() - 1, i * (samples.size() - 1) / 10)];
    std::printf(" %.0fs=%.1f", s.t, s.rss);
  }
  std::printf("\n  heap in use (MiB):");
  for (size_t i = 0; i < 11 && !samples.empty(); ++i) {
    const Sample& s = samples[std::min(samples.size() - 1, i * (samples.size() - 1) / 10)];
    std::printf(" %.0fs=%.1f", s.t, s.heap);
  }
  std::printf("\n  after teardown: RSS %.1f MiB, heap in use %.1f MiB\n", trimmed_rss_mib(), heap_in_use_mib());
  // The verdict is on (trimmed) RSS; the heap's fit is printed to tell a leak of live
  // memory (both grow) from allocator retention (only RSS grows).
  const LeakVerdict leak = judge_leak(samples, warmup, &Sample::rss, "RSS");
  const LeakVerdict heap_fit = judge_leak(samples, warmup, &Sample::heap, "heap in use");
  std::printf("  %s\n  %s\n", leak.text.c_str(), heap_fit.text.c_str());
  const uint64_t violations = g_violations.load();
  const bool pass = violations == 0 && !leak.leak;
  std::printf("  verdict: %s (%llu invariant violations, %s)\n", pass ? "PASS" : "FAIL",
              static_cast<unsigned long long>(violations),
              !leak.judged ? "leak not judged" : leak.leak ? "RSS keeps growing: LEAK" : "no leak");
  return pass ? 0 : 1;
}
