// The broadcast ring's sequencer: hands out sequences 1, 2, 3... with a plain load +
// store while a single thread publishes, and a fetch_add once several do.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <thread>

#include "streamcache/detail/asymmetric_barrier.hpp"
#include "streamcache/detail/backoff.hpp"
#include "streamcache/detail/cache_line.hpp"

namespace streamcache::detail {

/// A per-thread identity for Sequencer ownership: unique for the life of the process
/// (never reused, unlike thread ids or the address of a thread_local).
inline uint64_t this_thread_token() noexcept {
  static std::atomic<uint64_t> next{1};
  thread_local uint64_t token = 0;  // constant-initialised: no guard on the fast path
  if (token == 0) token = next.fetch_add(1, std::memory_order_relaxed);  // relaxed: only uniqueness matters
  return token;
}

/// Hands out sequences 1, 2, 3... to producers on any threads.
///
/// A locked RMW per publish (fetch_add) is what made the ring's producer slow: it
/// drains the store buffer, so every publish waited for the previous slot write's
/// cache miss. So the first thread to claim becomes the owner and claims with a plain
/// load + store; the first claim from any other thread revokes the ownership for
/// good and everybody uses fetch_add from then on (a biased lock, without a lock).
///
/// Revocation is an asymmetric Dekker handshake (see light_barrier/heavy_barrier):
///   owner:    1. busy_ = true   2. light   3. owner_ == me? claim plainly   4. busy_ = false
///   revoker:  1. owner_ = kRevoking   2. heavy   3. wait for !busy_   4. owner_ = kShared
/// Either the owner's step 3 sees kRevoking, or the revoker's step 3 sees its busy_
/// and waits for that claim to finish. Nobody claims while owner_ == kRevoking.
///
/// Invariants: claimed_ is written by the owner alone while owner_ is a token, and
/// only by fetch_add once owner_ is kShared; busy_ is written by the owner alone. A reader of claimed_ that needs a claim to
/// be visible as soon as it is made (the Dekker handshakes with waiting subscribers
/// and with kBlock registration) runs heavy_barrier() first unless shared() is true.
/// Without heavy_barrier_available() the sequencer starts shared.
class Sequencer {
 public:
  Sequencer() : owner_(heavy_barrier_available() ? kNobody : kShared) {}

  /// Claims `n` >= 1 contiguous sequences and returns the first of them.
  uint64_t next(uint64_t n = 1) noexcept {
    // Shared: a fetch_add, inline like the owner's claim. Behind a call, the register
    // saves queue after the previous publish's slot stores: 2 -> 2 delivered 10-20% less
    // (docs/notes/broadcast.md, session 12).
    // acquire: pairs with the release store of kShared in revoke(), as in next_slow().
    if (owner_.load(std::memory_order_acquire) == kShared) return claimed_.fetch_add(n) + 1;
    const uint64_t me = this_thread_token();
    const uint64_t first = try_claim_as_owner(me, n);
    return first != 0 ? first : next_slow(me, n);
  }

  /// The highest sequence claimed so far, as far as this thread can tell.
  uint64_t claimed() const noexcept { return claimed_.load(); }

  /// True once every claim is a fetch_add, which is a full fence: then a claim is
  /// visible to other threads before the claimer's next load, without heavy_barrier().
  bool shared() const noexcept { return owner_.load() == kShared; }

  /// True when the calling thread owns the sequencer, so every sequence claimed so far
  /// was claimed by this thread (ownership is taken once, before the first claim, and
  /// never comes back once revoked). Conservative: false while a revocation is under way.
  bool owned_by_this_thread() const noexcept {
    // relaxed: a thread that claimed with a fetch_add saw kShared, and coherence keeps
    // its later loads from returning its own older token; only its own claims matter.
    return owner_.load(std::memory_order_relaxed) == this_thread_token();
  }

  /// For readers of claimed() in a Dekker handshake: after their own seq_cst store,
  /// makes every claim made before it visible (see the class comment).
  void fence_for_readers() const noexcept {
    if (!shared()) heavy_barrier();
  }

 private:
  static constexpr uint64_t kNobody = 0;
  static constexpr uint64_t kRevoking = std::numeric_limits<uint64_t>::max() - 1;
  static constexpr uint64_t kShared = std::numeric_limits<uint64_t>::max();

  /// The owner's plain claim of `n` sequences (the first is returned); 0 when `me` is
  /// not the owner.
  uint64_t try_claim_as_owner(uint64_t me, uint64_t n) noexcept {
    // Only the owner may write busy_: another thread's `busy_ = false` could hide the
    // owner's claim in progress from a revoker.
    if (owner_.load(std::memory_order_relaxed) != me) return 0;  // relaxed: re-checked below
    busy_.store(true, std::memory_order_relaxed);  // relaxed: made visible to a revoker by its heavy_barrier()
    light_barrier();
    if (owner_.load(std::memory_order_relaxed) == me) {  // relaxed: ordered after busy_ by the revoker's heavy_barrier()
      const uint64_t before = claimed_.load(std::memory_order_relaxed);  // relaxed: only this thread writes it now
      claimed_.store(before + n, std::memory_order_relaxed);  // relaxed: see the class comment for its readers
      busy_.store(false, std::memory_order_release);  // release: pairs with the acquire wait in revoke(), so this claim precedes the revoker's fetch_add
      return before + 1;
    }
    busy_.store(false, std::memory_order_release);  // release: as above, so a revoker that reads it also sees our earlier claims
    return 0;
  }

  // Out of line: runs for the first claim and while a second producer revokes ownership.
  [[gnu::noinline]] uint64_t next_slow(uint64_t me, uint64_t n) noexcept {
    Backoff backoff;
    for (;;) {
      uint64_t owner = owner_.load(std::memory_order_acquire);  // acquire: pairs with the release store of kShared in revoke()
      if (owner == kShared) return claimed_.fetch_add(n) + 1;
      if (owner == kNobody) {
        if (owner_.compare_exchange_strong(owner, me)) {
          if (const uint64_t first = try_claim_as_owner(me, n); first != 0) return first;
        }
      } else if (owner == kRevoking) {
        // Another thread is waiting for the owner's last plain claim: microseconds.
        backoff.pause();
      } else if (owner != me) {
        revoke(owner);
      } else if (const uint64_t first = try_claim_as_owner(me, n); first != 0) {
        return first;  // rare: our own claim of ownership became visible late
      }
    }
  }

  void revoke(uint64_t owner) noexcept {
    if (!owner_.compare_exchange_strong(owner, kRevoking)) return;  // somebody else got there
    heavy_barrier();
    // acquire: pairs with the release store ending the owner's plain claim.
    Backoff backoff;
    while (busy_.load(std::memory_order_acquire)) backoff.pause();
    owner_.store(kShared, std::memory_order_release);  // release: pairs with the acquire load in next_slow()
  }

  // Written per claim by the owner alone, or by every producer's fetch_add.
  alignas(kCacheLine) std::atomic<uint64_t> claimed_{0};
  // Read by every claim but written only while ownership changes: on a line of their
  // own, so that once shared a claim's load of owner_ hits in cache instead of pulling
  // claimed_'s line over from the other producer just before its fetch_add does again.
  alignas(kCacheLine) std::atomic<uint64_t> owner_;  // kNobody, a thread token, kRevoking or kShared
  std::atomic<bool> busy_{false};  // written by the owner alone, beside owner_ which it reads
};

}  // namespace streamcache::detail
