// Lock types with clang thread-safety annotations.
#pragma once

#include <absl/base/thread_annotations.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "streamcache/detail/asymmetric_barrier.hpp"
#include "streamcache/detail/backoff.hpp"
#include "streamcache/detail/cache_line.hpp"
#include "streamcache/detail/thread_stripe.hpp"

namespace streamcache::detail {

// Why not absl::Mutex: Debian's libabsl is not built with ThreadSanitizer, and absl::Mutex
// synchronizes inside that library with raw futex calls, so TSan cannot see its
// happens-before edges and reports every access it protects as a race. std::mutex is a
// pthread mutex, which TSan intercepts, and SharedMutex is built on it and on atomics.
// Both carry the annotations that let clang's -Wthread-safety check the lock discipline.

/// A reader-writer lock whose readers never write a shared cache line: each reader
/// announces itself on its thread's stripe (one counter per cache line), so readers on
/// different cores do not bounce a lock word between them, which is what made the
/// cache's reads stop scaling with a pthread rwlock (two contended RMWs per get). A
/// writer pays instead: it raises its flag and waits for every stripe to drain, one
/// load per stripe. No dependency offers a distributed reader lock (pthread, absl::Mutex
/// and tbb::spin_rw_mutex all count readers on one word).
///
/// Protocol, unbiased (a Dekker handshake, every step seq_cst):
///   reader: 1. stripe += 1   2. kWriter set? then stripe -= 1, wait until clear, retry
///   (the exit's decrement is a release store on an owned stripe, see StripeChoice, and a
///   release fetch_add on a shared one)
///   writer: 1. writer_mu_    2. state_ |= kWriter   3. wait until every stripe is 0
/// Either the writer's step 3 sees the reader's count, or the reader's step 2 sees the
/// flag. Readers that find a writer back off, so a writer waits only for the readers
/// already inside. Not recursive: a thread holding it shared must not take it again.
///
/// Biased mode (kBiased): step 1 as a locked add is a full fence, and it was a fifth of
/// a cache hit's time. While the lock is biased, a reader on an owned stripe does step 1
/// as a plain store with only a compiler barrier before step 2, and the writer that
/// finds the lock biased runs heavy_barrier() between its steps 2 and 3: an asymmetric
/// Dekker handshake (asymmetric_barrier.hpp), as the broadcast sequencer's. Such a
/// reader enters only if its step 2 reads exactly kBiased. Why that is enough: every
/// write of state_ is made under writer_mu_, and the only one that takes kBiased away is
/// a writer W's step 2 after it read kBiased, followed by W's heavy barrier. If the
/// reader's step 2 read a kBiased that W then replaced, that load (and the count store
/// before it, in the reader's own order) came before the point where W's barrier ran on
/// the reader's core; so W's step 3 sees the count and waits for the reader to leave.
/// Writers after W start after W's unlock; a kBiased set again by bias_if_quiet() (with
/// no writer inside) starts the same argument over with the next writer, which finds it
/// and runs the barrier. A stale first load only picks the path: step 2 decides.
/// A heavy barrier costs about 20 us on a 2-vCPU VM while another thread runs (and the
/// shard's readers wait that long too, since the flag is already up), so the lock is
/// biased only on request: bias_if_quiet() biases it when no writer took it since its
/// previous call, so there is at most one heavy barrier per call; its caller decides how
/// often that may be (the cache's maintenance, bias_quiet_shards()). Without
/// heavy_barrier_available() the lock is never biased.
/// Built on atomics and a pthread mutex, so ThreadSanitizer sees every edge (but cannot
/// check the handshakes, which are beyond the C++ model: the argument is above).
class ABSL_LOCKABLE SharedMutex {
 public:
  SharedMutex() : owned_(stripe_count()), stripes_(new Stripe[2 * owned_]) {}

  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    lock_writer_mu();
    raise_flag();
    for (uint32_t i = 0; i < 2 * owned_; ++i) {
      Backoff backoff;
      // seq_cst: step 3. An acquire load could be ordered before the flag store
      // (store buffering), and a reader could then miss the flag while we miss its count.
      // It also pairs with the readers' release decrements.
      while (stripes_[i].readers.load() != 0) backoff.pause();
    }
  }
  /// Excludes other writers but not readers: for state under the lock that readers
  /// never touch (the cache's shard log and free list). Cheaper than lock(): no flag, no
  /// wait for readers, and a biased lock keeps its bias. The thread-safety analysis
  /// counts it as exclusive, so the caller must not touch what readers read.
  void lock_writers_only() ABSL_EXCLUSIVE_LOCK_FUNCTION() { lock_writer_mu(); }
  void unlock_writers_only() ABSL_UNLOCK_FUNCTION() { writer_mu_.unlock(); }

  /// Fails, without waiting for them, if another writer holds it or a reader is inside.
  /// On a biased lock it pays the heavy barrier first, and the bias is gone even if it fails.
  bool try_lock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    if (!writer_mu_.try_lock()) return false;
    raise_flag();
    for (uint32_t i = 0; i < 2 * owned_; ++i) {
      if (stripes_[i].readers.load() != 0) {  // seq_cst: step 3
        state_.store(0, std::memory_order_release);  // release: as in unlock()
        writer_mu_.unlock();
        return false;
      }
    }
    return true;
  }
  void unlock() ABSL_UNLOCK_FUNCTION() {
    state_.store(0, std::memory_order_release);  // release: pairs with the readers' acquire loads of state_, so our writes precede their reads
    writer_mu_.unlock();
  }

  struct BiasCheck {
    bool biased;   // the lock is biased now
    bool revoked;  // a writer took away the bias the previous check had left
  };
  /// Biases the lock if no writer took it since the previous check. Never waits: a
  /// writer inside (or no heavy barrier on this system) leaves it as it is.
  BiasCheck bias_if_quiet() {
    if (!heavy_barrier_available() || !writer_mu_.try_lock()) return {false, false};
    const bool quiet = !written_since_bias_check_;
    const BiasCheck check{quiet, biased_at_check_ && !quiet};
    written_since_bias_check_ = false;
    biased_at_check_ = quiet;
    // release: pairs with the readers' acquire loads of state_, like unlock(). Nobody
    // is inside as a writer (we hold writer_mu_), so readers may enter on the light path.
    if (quiet) state_.store(kBiased, std::memory_order_release);
    writer_mu_.unlock();
    return check;
  }

  /// Returns the stripe to hand back to unlock_shared(): the unlock must decrement the
  /// counter the lock incremented, even if the holder's stripe probe changed meanwhile.
  StripeChoice lock_shared() ABSL_SHARED_LOCK_FUNCTION() {
    const StripeChoice stripe = StripeChoice::of_this_thread(owned_);
    std::atomic<uint32_t>& readers = stripes_[stripe.index].readers;
    for (;;) {
      // relaxed: only picks the path; the load after the increment decides.
      if (stripe.owned && state_.load(std::memory_order_relaxed) == kBiased) {
        // relaxed: an owned stripe; a revoking writer's heavy barrier publishes the store.
        readers.store(readers.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        light_barrier();
        // acquire: pairs with the release stores of state_ in unlock() and bias_if_quiet().
        if (state_.load(std::memory_order_acquire) == kBiased) return stripe;
      } else {
        // seq_cst RMW even on an owned stripe: step 1 must not pass the flag load below
        // (a plain store could, from the store buffer), and a locked add is the cheapest
        // full fence.
        readers.fetch_add(1);
        if ((state_.load() & kWriter) == 0) return stripe;  // seq_cst: step 2
      }
      stripe.add(readers, ~uint32_t{0}, std::memory_order_release);  // release: as in unlock_shared()
      Backoff backoff;
      while ((state_.load(std::memory_order_relaxed) & kWriter) != 0) backoff.pause();  // relaxed: re-checked above
    }
  }
  void unlock_shared(StripeChoice stripe) ABSL_UNLOCK_FUNCTION() {
    // release: pairs with the writer's stripe loads in lock(), so our reads precede its
    // writes. Adds -1 (unsigned wrap-around).
    stripe.add(stripes_[stripe.index].readers, ~uint32_t{0}, std::memory_order_release);
  }

  /// Tells the analysis the caller holds the lock (for lambdas, which it does not follow).
  void assert_held() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

 private:
  static constexpr uint32_t kWriter = 1;  // a writer is inside or draining the readers
  static constexpr uint32_t kBiased = 2;  // readers on owned stripes may enter without a fence

  struct alignas(kCacheLine) Stripe {
    std::atomic<uint32_t> readers{0};
  };

  /// Owned stripes: twice the hardware threads (as the read buffers), between 2 and 16;
  /// as many shared ones follow. Beyond that a writer's scan costs more than the readers'
  /// occasional sharing of a stripe.
  static uint32_t stripe_count() {
    static const uint32_t count = std::clamp<uint32_t>(
        std::bit_ceil(2 * std::max(1u, std::thread::hardware_concurrency())), 2, 16);
    return count;
  }

  /// Spins briefly before blocking. Writers hold the lock for a few hundred nanoseconds,
  /// and glibc's default mutex sleeps in the kernel at the first conflict: two writers
  /// on one hot shard then paid a futex wait and wake each (write 100% at 2 threads,
  /// 0.27x -> 0.35x tbb in alternating runs, docs/notes/cache_benchmarks.md "Session 6").
  void lock_writer_mu() {
    for (uint32_t i = 0; i < kSpinsBeforeBlocking; ++i) {
      if (writer_mu_.try_lock()) return;
      cpu_relax();
    }
    writer_mu_.lock();
  }
  static constexpr uint32_t kSpinsBeforeBlocking = 100;

  /// Step 2, with writer_mu_ held; revokes the bias if the lock had it (see the class
  /// comment). The bias is gone from here on: unlock() and a failed try_lock() store 0.
  void raise_flag() {
    written_since_bias_check_ = true;
    const uint32_t was = state_.load(std::memory_order_relaxed);  // relaxed: only writer_mu_'s holder writes it
    state_.store(was | kWriter);  // seq_cst: step 2 of the handshake
    if ((was & kBiased) != 0) heavy_barrier();
  }

  alignas(kCacheLine) std::atomic<uint32_t> state_{0};  // kWriter | kBiased, written under writer_mu_
  const uint32_t owned_;  // stripes [0, owned_) are owned (StripeChoice), the rest shared
  std::unique_ptr<Stripe[]> stripes_;
  std::mutex writer_mu_;  // one writer at a time; a pthread mutex, so TSan sees it
  // Guarded by writer_mu_ (a std::mutex, which the thread-safety analysis cannot name).
  // The first check has no quiet period behind it.
  bool written_since_bias_check_ = true;
  bool biased_at_check_ = false;
};

/// An exclusive lock (pthread_mutex).
class ABSL_LOCKABLE Mutex {
 public:
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  bool try_lock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return mu_.try_lock(); }
  void assert_held() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

template <class M>
class ABSL_SCOPED_LOCKABLE WriterLock {
 public:
  explicit WriterLock(M& mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_.lock(); }
  ~WriterLock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  M& mu_;
};

/// SharedMutex::lock_writers_only() for a scope.
class ABSL_SCOPED_LOCKABLE WriterOnlyLock {
 public:
  explicit WriterOnlyLock(SharedMutex& mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_.lock_writers_only(); }
  ~WriterOnlyLock() ABSL_UNLOCK_FUNCTION() { mu_.unlock_writers_only(); }
  WriterOnlyLock(const WriterOnlyLock&) = delete;
  WriterOnlyLock& operator=(const WriterOnlyLock&) = delete;

 private:
  SharedMutex& mu_;
};

class ABSL_SCOPED_LOCKABLE ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu), stripe_(mu_.lock_shared()) {}
  ~ReaderLock() ABSL_UNLOCK_FUNCTION() { mu_.unlock_shared(stripe_); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& mu_;
  const StripeChoice stripe_;
};

}  // namespace streamcache::detail
