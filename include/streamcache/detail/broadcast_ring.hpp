// The engine behind streamcache::Broadcast: the slots, the sequencer, and the
// gating of kBlock producers. Shared (std::shared_ptr) by the Broadcast and its
// Subscribers, so a Subscriber outliving its Broadcast never dangles.
//
// Protocol (sequences start at 1; slot of s = s & mask):
//   producer: 1. s = sequencer_.next()              (a plain load + store while one thread
//                                                    publishes; a fetch_add once several do)
//             2. kBlock only: wait until every live subscriber has read s - capacity
//                (for a claim of n sequences, the last one's)
//             3. wait for the slot's previous writer (s - capacity) to finish, write the
//                value, store stamp 2s (release)
//             4. if a subscriber sleeps: bump the epoch and wake it
//   subscriber at s: 1. stamp == 2s: copy, re-check the stamp (seqlock) or copy under
//                       the slot's shared lock
//                    2. stamp < 2s: not published yet: wait (or kEmpty)
//                    3. stamp > 2s: overwritten: kLagged, jump to the oldest sequence
//                       no producer has claimed to overwrite
// The stamps are the availability buffer: producers finish out of order, and a
// subscriber reading in sequence order never sees s + 1 before s.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "streamcache/detail/asymmetric_barrier.hpp"
#include "streamcache/detail/backoff.hpp"
#include "streamcache/detail/broadcast_sequencer.hpp"
#include "streamcache/detail/broadcast_slot.hpp"
#include "streamcache/detail/broadcast_wait.hpp"
#include "streamcache/detail/mutex.hpp"
#include "streamcache/detail/prefetch.hpp"

namespace streamcache::detail {

/// A kBlock subscriber's cursor as producers see it: the next sequence it reads.
struct alignas(kCacheLine) GateCursor {
  std::atomic<uint64_t> next{0};
};
static_assert(sizeof(GateCursor) == kCacheLine);

template <class T>
class BroadcastRing {
 public:
  using Slot = SlotFor<T>;
  static constexpr uint64_t kNoGate = std::numeric_limits<uint64_t>::max();

  BroadcastRing(size_t capacity, bool block_producers, WaitMode mode)
      : capacity_(capacity),
        mask_(capacity - 1),
        block_producers_(block_producers),
        mode_(mode),
        gate_stride_(std::max<uint64_t>(1, capacity / 8)),
        slots_(std::make_unique<Slot[]>(capacity)) {}

  uint64_t capacity() const noexcept { return capacity_; }
  bool blocks_producers() const noexcept { return block_producers_; }
  WaitMode mode() const noexcept { return mode_; }
  bool closed() const noexcept { return closed_.load(); }

  /// Reserves the next `n` sequences (1 <= n <= capacity, checked by the caller) and
  /// returns the first. The caller fills them at once, in order, on this thread
  /// (Broadcast's publish() and publish_batch()); any other use is claim_deferred().
  /// kBlock: waits until their slots are free for every live subscriber. Throws
  /// std::logic_error once closed (also when close() interrupts the wait; those
  /// sequences then stay unpublished, which only matters after close).
  /// A claim that returns is below close()'s cutoff, so subscribers wait for it: a
  /// publish() that returns is delivered, even when it raced with close().
  ///
  /// Forced inline, as fill() is: without it GCC at -O2 calls both once per publish, and
  /// 1 -> 1 delivered 16-18 M msgs/s instead of 73 (the calls' register saves queue in the
  /// store buffer behind the previous slot stores, which wait for the subscriber's copy
  /// of the line; docs/notes/broadcast.md, session 11). The rare paths stay out of line.
  [[gnu::always_inline]] uint64_t claim(uint64_t n = 1) {
    // After close(), publishing is refused before claiming, so that claims nobody will
    // fill do not move the claim counter that lag accounting reads (lag_target()). Only
    // a claim racing close() can still land above the cutoff (see claimed_for_readers()).
    if (closed_.load()) [[unlikely]] throw_publish_after_close();
    const uint64_t first = sequencer_.next(n);
    const uint64_t last = first + n - 1;
    // The light side for register_gate() and for close(): our claim, then the loads of
    // the gate and of closed_ (close() stores closed_, then reads the claims).
    light_barrier();
    // seq_cst: after the claim (a fetch_add, or the owner's plain store ordered by
    // close()'s heavy barrier), so either close() counts this claim in its cutoff or we
    // see closed_ here. Checked again after claiming: checked only before, a claim
    // could land just above the cutoff, and its publish() return a message that no
    // subscriber would ever read.
    const bool closed = closed_.load();
    if (closed && first > cutoff()) [[unlikely]] throw_publish_after_close();
    // Once closed, every kBlock claim that needs room decides in wait_for_gate() whether
    // it fits or gives up, in order with the others (see there). A claim that saw the
    // ring open and fits is not overtaken by one that gives up: that one is lower, and
    // fits too.
    if (block_producers_ && last > capacity_ && (closed || !gate_allows(last, gate_cache_.load()))) {
      wait_for_room(first, last);
    }
    return first;
  }

  /// claim() for a caller that may fill the sequences later or on another thread
  /// (Broadcast's two-phase claim()). From then on the published hint is always found
  /// by scanning the stamps (advance_published_hint()).
  uint64_t claim_deferred(uint64_t n = 1) {
    // Load first: the flag shares the hint's line, and StreamingMap's producers claim
    // here on every publish; once set, nobody writes the line for it again.
    // relaxed: what matters is that the owner's own later fills see it, and those come
    // after this store in its program order. A non-owner's claim revokes ownership.
    if (!deferred_claims_.load(std::memory_order_relaxed)) deferred_claims_.store(true, std::memory_order_relaxed);
    return claim(n);
  }

  /// Fills the claimed `seq` and makes it visible. Every claimed sequence must be
  /// published, or subscribers (and published_cursor) stall at it. Returns false, and
  /// writes nothing, when close() made the producer of an earlier sequence of this slot
  /// abandon it: no subscriber can read past that one (see abandon()).
  [[gnu::always_inline]] bool publish_claimed(uint64_t seq, T&& value) noexcept(std::is_nothrow_move_constructible_v<T>) {
    return fill(seq, [&](Slot& slot) {
      if constexpr (kUseSeqlock<T>) {
        slot.write(seq, value);
      } else {
        slot.write(seq, std::move(value));
      }
    });
  }

  /// Completes the claimed `seq` without a message, so nobody stalls at it; subscribers
  /// count it as missed. For a batch whose copy of a value threw before its slot was
  /// touched (trivially copyable values, in seqlock slots, cannot throw).
  void publish_lost(uint64_t seq) noexcept
    requires(!kUseSeqlock<T>)
  {
    (void)fill(seq, [&](Slot& slot) { slot.write_lost(seq); });  // false: nobody reads it anyway
  }

  /// The highest s such that every sequence <= s is complete.
  uint64_t published_cursor() noexcept {
    uint64_t hint = published_hint_.load(std::memory_order_acquire);  // acquire: pairs with the release CAS below
    uint64_t end = hint;
    while (slots_[(end + 1) & mask_].complete(end + 1)) ++end;
    // release: a caller that reads the new hint also sees the stamps we scanned; acquire
    // on failure: the hint we retry from, with the stamps its writer scanned (its release
    // CAS here or in advance_published_hint()).
    while (hint < end && !published_hint_.compare_exchange_weak(
                             hint, end, std::memory_order_release, std::memory_order_acquire)) {
    }
    return std::max(hint, end);
  }

  template <class Sink>
  ReadStatus read(uint64_t seq, Sink&& sink) const {
    return slots_[seq & mask_].read(seq, std::forward<Sink>(sink));
  }

  /// read() for seq, seq + 1, ... while they are readable, at most `max` of them. Returns
  /// how many went to `sink`; `status` says why the next one did not (kOk: `max` reached).
  template <class Sink>
  [[gnu::always_inline]] size_t read_run(uint64_t seq, size_t max, ReadStatus& status, Sink&& sink) const {
    // In locals: after each stamp load (an acquire) the compiler must reload members,
    // which another thread might have written, and the sink's stores may alias them.
    const Slot* const slots = slots_.get();
    const uint64_t mask = mask_;
    status = ReadStatus::kOk;
    size_t n = 0;
    for (; n < max; ++n) {
      status = slots[(seq + n) & mask].read(seq + n, sink);
      if (status != ReadStatus::kOk) break;
    }
    return n;
  }

  /// True when `seq` is complete (so read() returns kOk or kOverwritten).
  bool complete(uint64_t seq) const noexcept { return slots_[seq & mask_].complete(seq); }

  /// Where a subscriber that found `seq` overwritten continues: the oldest sequence
  /// no producer has claimed to overwrite yet (everything before it is lost to it).
  uint64_t lag_target(uint64_t seq) const noexcept {
    // The producer that overwrote `seq` claimed before it wrote, so this is at least
    // its sequence (stamps are release stores after the claim); max() covers the rest.
    const uint64_t claimed_now = claimed_for_readers();
    const uint64_t oldest = claimed_now >= capacity_ ? claimed_now - capacity_ + 1 : 1;
    return std::max(seq + 1, oldest);
  }

  /// True when a subscriber at `seq` is done: the ring is closed and `seq` will never
  /// be complete. A sequence claimed before close() (<= closed_at_) is still coming,
  /// unless its producer abandoned it: those whose publish() returned before close()
  /// are delivered. closed_at_ and abandoned_from_ are read before the slot, so a
  /// publish completed before them is seen by the re-check.
  bool drained(uint64_t seq) const noexcept {
    if (!closed_.load()) return false;
    const uint64_t last_claim = cutoff();
    const uint64_t abandoned = abandoned_from_.load();
    return !complete(seq) && (seq > last_claim || seq >= abandoned);
  }

  /// Waits until `seq` is complete, drained(seq), the deadline passes or stop.
  WaitOutcome wait_readable(uint64_t seq, const Deadline& deadline, const std::stop_token& stop) {
    return await_condition(
        mode_, data_parker_, [&] { return complete(seq) || drained(seq); },
        // A producer that claimed `seq` before we registered may have checked the
        // waiter count before it too: its wake-up is not promised, so don't sleep long.
        [&] { return sequencer_.claimed() >= seq; },
        // A single producer's claim and stamp are plain stores: make them visible
        // before the re-check (heavy side; the producer's notify is the light side).
        [&] { sequencer_.fence_for_readers(); }, deadline, stop);
  }

  /// Registers a kBlock subscriber whose first wanted sequence is `from`. Returns the
  /// sequence it may really start at: `from`, or later if producers that claimed
  /// before the registration may already be overwriting `from` (a subscribe_from()
  /// reports that gap as lag; a plain subscribe() just starts later).
  uint64_t register_gate(GateCursor* cursor, uint64_t from) {
    WriterLock<Mutex> lock(gate_mu_);
    // Lower the cache first (seq_cst), then read the claims (after the heavy barrier
    // when a single producer claims with plain stores): a producer either claimed
    // before our read (and is accounted for below) or sees the lowered cache.
    gate_cache_.store(std::min(gate_cache_.load(), from));
    sequencer_.fence_for_readers();
    const uint64_t claimed_now = claimed_for_readers();
    // A claim overwrites sequence q only once every live cursor is past q (the gate), so
    // nothing from the lowest live cursor on is overwritten, however far claims went.
    if (claimed_now >= capacity_) from = std::max(from, std::min(claimed_now - capacity_ + 1, live_gate_locked()));
    cursor->next.store(from);
    gates_.push_back(cursor);
    return from;
  }

  void unregister_gate(GateCursor* cursor) {
    {
      WriterLock<Mutex> lock(gate_mu_);
      std::erase(gates_, cursor);
    }
    // A departed subscriber can never hold producers back: let them re-check.
    space_parker_.wake_all();
  }

  /// A kBlock subscriber moved its cursor to `next`. Waking producers after every
  /// message would cost a syscall per message when the ring is full, so the handshake
  /// with waiting producers (seq_cst store, then the parker) happens every
  /// gate_stride_ sequences and whenever the subscriber is about to wait or to report
  /// kEmpty (`force`). A subscriber that reads a few messages and then turns to other
  /// work does neither: producers waiting for space therefore never sleep for good, but
  /// poll in short sleeps (wait_for_gate()).
  [[gnu::always_inline]] void advance_gate(GateCursor* cursor, uint64_t next, bool force) noexcept {
    if (force || (next & (gate_stride_ - 1)) == 0) {
      cursor->next.store(next);  // seq_cst: the Dekker handshake with producers in wait_for_gate()
      space_parker_.notify_if_waiting();
    } else {
      cursor->next.store(next, std::memory_order_release);  // release: pairs with the seq_cst loads in recompute_gate(), so our copies precede the overwrite
    }
  }

  /// Subscribers drain every sequence claimed before this call (whose producers are
  /// still writing or, under kBlock, waiting for space and about to abandon), then stop.
  void close() noexcept {
    closed_.store(true);  // first: claims after this throw
    // Then the cutoff: every claim made before closed_ was set, visible (a single
    // producer claims with plain stores; see Sequencer). A claim racing with this
    // lands above the cutoff: its publish did not return before close().
    sequencer_.fence_for_readers();
    uint64_t expected = kNotClosed;
    closed_at_.compare_exchange_strong(expected, sequencer_.claimed());  // a second close() keeps the first cutoff
    data_parker_.wake_all();
    space_parker_.wake_all();
  }

  /// The Broadcast is gone: nobody can fill a claim any more, so readers stop at the first
  /// sequence not yet complete instead of waiting for it (close() alone waits for claims).
  void abandon_unpublished() noexcept { abandon(published_cursor() + 1); }

 private:
  // Every 256th sequence, its producer advances the published hint.
  static constexpr uint64_t kHintStride = 256;
  static constexpr uint64_t kPrefetchAhead = 16;
  static constexpr std::chrono::microseconds kGateParkSlice{1000};

  /// The common part of completing a claimed `seq`: `write(slot)` stores it.
  template <class Write>
  [[gnu::always_inline]] bool fill(uint64_t seq, Write&& write) noexcept(noexcept(write(std::declval<Slot&>()))) {
    Slot& slot = slots_[seq & mask_];
    // Fetch a line we will write soon for ownership now: subscribers hold it shared
    // from the last lap, and the claim RMW of the next publish would otherwise stall
    // on this store's cache miss.
    prefetch_for_write(&slots_[(seq + kPrefetchAhead) & mask_]);
    const auto predecessor_abandoned = [&] { return seq > capacity_ && seq - capacity_ >= abandoned_from_.load(); };
    if (!slot.wait_for_predecessor(seq, capacity_, predecessor_abandoned)) return false;
    struct Notify {
      BroadcastRing* ring;
      uint64_t seq;
      // Forced inline, like fill(): clang 14 judged it too costly (it inlined the hint's
      // scan loop) and called it once per publish.
      [[gnu::always_inline]] ~Notify() {
        // The light side for waiting subscribers (their heavy side is in wait_readable):
        // the claim and stamp stores above stay above the parker load, in the compiler.
        light_barrier();
        ring->data_parker_.notify_if_waiting();
        // Keep the published hint close, so published_cursor() scans a short distance.
        if ((seq & (kHintStride - 1)) == 0) ring->advance_published_hint(seq);
      }
    } notify{this, seq};
    write(slot);
    return true;
  }

  /// Called by the producer that just completed `seq`. A sole producer (the sequencer's
  /// owner) that never deferred a fill claimed every sequence before `seq` itself and
  /// completed each before claiming the next (claim() callers fill at once; a fill that
  /// close() made fail ends its publishing): `seq` is the published prefix, no scan
  /// needed. The scan was a quarter of a single producer's time at 1 -> 1.
  /// Only for seqlock slots: their values are trivially copyable, so no user code runs
  /// inside a publish. A T whose copy, move or destructor publishes to the same Broadcast
  /// would claim and complete a later sequence while the outer one is still unfilled.
  [[gnu::noinline]] void advance_published_hint(uint64_t seq) noexcept {
    // relaxed: see claim_deferred(); owned_by_this_thread() has its own argument.
    if (kUseSeqlock<T> && !deferred_claims_.load(std::memory_order_relaxed) && sequencer_.owned_by_this_thread()) {
      // Only forward: ownership may have been revoked since we looked, and a reader may
      // already have moved the hint past `seq` over other producers' sequences.
      // release: pairs with the acquire load in published_cursor(), so a reader of the
      // hint sees every stamp up to `seq`.
      uint64_t hint = published_hint_.load(std::memory_order_relaxed);  // relaxed: the CAS re-checks it
      while (hint < seq && !published_hint_.compare_exchange_weak(hint, seq, std::memory_order_release,
                                                                  std::memory_order_relaxed)) {
      }
      return;
    }
    (void)published_cursor();
  }

  [[noreturn, gnu::noinline, gnu::cold]] static void throw_publish_after_close() {
    throw std::logic_error("Broadcast: publish after close()");
  }

  /// kBlock, out of line: waits until the claim first..last fits (see wait_for_gate());
  /// when close() interrupts the wait, the claim is abandoned and this throws.
  [[gnu::noinline]] void wait_for_room(uint64_t first, uint64_t last) {
    if (!wait_for_gate(first, last)) throw std::logic_error("Broadcast: close() while publish was waiting for space");
  }

  /// The claims that count for readers: once closed, none above the cutoff, since a claim
  /// that raced close() and landed above it is refused and never filled (claim()). The
  /// claims are read first: a refused claim follows the store of closed_ (its claimer
  /// saw closed_), so a reader that sees the claim then sees closed_.
  uint64_t claimed_for_readers() const noexcept {
    const uint64_t claimed_now = sequencer_.claimed();
    return closed_.load() ? std::min(claimed_now, cutoff()) : claimed_now;
  }

  /// The last sequence claimed before close(), once closed_ is set. close() sets closed_
  /// and then the cutoff, so a thread that saw closed_ may have to wait a moment for it.
  uint64_t cutoff() const noexcept {
    uint64_t at = closed_at_.load();
    for (Backoff backoff; at == kNotClosed; at = closed_at_.load()) backoff.pause();
    return at;
  }

  /// A kBlock claim of first.. that close() interrupted is never written: subscribers stop
  /// at `first` (drained()), and producers of later laps of its slots give up instead of
  /// waiting for it (fill()).
  void abandon(uint64_t first) noexcept {
    uint64_t current = abandoned_from_.load();
    while (first < current && !abandoned_from_.compare_exchange_weak(current, first)) {
    }
    data_parker_.wake_all();
  }

  bool gate_allows(uint64_t seq, uint64_t gate) const noexcept { return seq - capacity_ < gate; }

  /// Lowest cursor among live kBlock subscribers, kNoGate if none.
  uint64_t live_gate_locked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(gate_mu_) {
    uint64_t gate = kNoGate;
    for (const GateCursor* c : gates_) gate = std::min(gate, c->next.load());
    return gate;
  }

  /// live_gate_locked(), also stored in the cache.
  uint64_t recompute_gate() {
    WriterLock<Mutex> lock(gate_mu_);
    const uint64_t gate = live_gate_locked();
    gate_cache_.store(gate);
    return gate;
  }

  /// Waits until a claim ending at `last` fits: every live subscriber has read
  /// last - capacity. (Not a sequence more: a producer with room must never wait, even
  /// when its only subscriber is on its own thread.) Returns false, having abandoned the
  /// claim first..last, when close() came before it fitted.
  [[nodiscard]] bool wait_for_gate(uint64_t first, uint64_t last) {
    // Invariant: gate_cache_ <= every live subscriber's cursor (cursors only grow,
    // registration lowers the cache, recomputation happens under gate_mu_).
    const std::stop_token never;
    const auto outcome = await_condition(
        mode_, space_parker_,
        [&] { return closed_.load() || gate_allows(last, recompute_gate()); },
        [] { return false; }, [] {}, std::nullopt, never,
        // A cursor move off the stride wakes nobody (advance_gate()): the room we wait
        // for may come without a wake-up, from a subscriber that read a few messages and
        // turned to other work. So a parked producer looks again every millisecond.
        // (Notifying on every move instead cost a futex wake per message whenever the
        // ring was full: 1 -> 1 recv fell from 64 to 34 M msgs/s.)
        kGateParkSlice);
    (void)outcome;
    if (!closed_.load()) return true;
    // Closed: fit or give up, under gate_mu_ so that the claims decide one at a time.
    // Readers stop at the lowest abandoned sequence, so a claim above it must give up
    // too, even if it fits: deciding alone, a later claim could fit (the subscriber
    // drained meanwhile) after an earlier one gave up, and its publish() return a message
    // nobody reads. For the claims already made the gate only rises (cursors grow, and a
    // subscriber registering later starts past what they overwrite), so a claim that
    // fits was not overtaken by one that gave up.
    WriterLock<Mutex> lock(gate_mu_);
    if (gate_allows(last, live_gate_locked()) && first < abandoned_from_.load()) return true;
    abandon(first);
    return false;
  }

  const uint64_t capacity_;
  const uint64_t mask_;
  const bool block_producers_;
  const WaitMode mode_;
  const uint64_t gate_stride_;  // a power of two

  Sequencer sequencer_;
  // Invariant: every sequence <= published_hint_ is complete. It only lags behind.
  alignas(kCacheLine) std::atomic<uint64_t> published_hint_{0};
  std::atomic<bool> deferred_claims_{false};  // set for good by claim_deferred()
  alignas(kCacheLine) std::atomic<uint64_t> gate_cache_{kNoGate};
  alignas(kCacheLine) std::atomic<bool> closed_{false};
  // Read by subscribers once closed_ is set: closed_at_ is written once, by close();
  // abandoned_from_ only ever decreases, in abandon().
  static constexpr uint64_t kNotClosed = std::numeric_limits<uint64_t>::max();
  std::atomic<uint64_t> closed_at_{kNotClosed};      // claims made before close()
  std::atomic<uint64_t> abandoned_from_{kNotClosed};  // the first claim close() made a producer abandon
  Parker data_parker_;   // subscribers waiting for a message
  Parker space_parker_;  // kBlock producers waiting for the slowest subscriber
  Mutex gate_mu_;  // detail/mutex.hpp: pthread-backed, so TSan sees it
  std::vector<GateCursor*> gates_ ABSL_GUARDED_BY(gate_mu_);
  std::unique_ptr<Slot[]> slots_;
};

}  // namespace streamcache::detail
