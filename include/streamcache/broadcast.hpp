// Broadcast: a bounded multi-producer, multi-subscriber ring that tells a slow
// subscriber exactly how many messages it missed.
#pragma once

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "streamcache/clock.hpp"
#include "streamcache/detail/broadcast_ring.hpp"

namespace streamcache {

/// What a full ring does when a producer publishes.
enum class Overflow {
  /// Producers never wait for subscribers: the oldest message is overwritten and a
  /// subscriber that had not read it gets kLagged with the exact count it missed.
  kOverwrite,
  /// Producers wait (backpressure) until the slowest live subscriber has read the
  /// message about to be overwritten. Dropping a Subscriber releases them.
  kBlock,
};

/// How a waiting subscriber (or a kBlock producer) waits.
enum class WaitStrategy {
  /// Spin briefly, then sleep on a futex (std::atomic::wait). A producer pays one
  /// load and no syscall when nobody sleeps. The right default.
  kBlocking,
  /// Spin on std::this_thread::yield(): lower wake-up latency, burns its core when
  /// there are spare cores, and is fair to other threads when there are none.
  kYield,
  /// Busy-spin with a pause instruction: lowest latency, one core per waiter. Only
  /// when every waiter has a core of its own.
  kSpin,
};

struct BroadcastOptions {
  /// Messages held for subscribers; rounded up to a power of two. A subscriber can
  /// fall this far behind before it lags (kOverwrite) or holds producers back
  /// (kBlock). Memory: capacity slots of about sizeof(T) + 8 bytes (+ 4 and an
  /// std::optional for non-trivially-copyable T). 0 is invalid.
  size_t capacity = 4096;
  Overflow overflow = Overflow::kOverwrite;
  WaitStrategy wait = WaitStrategy::kBlocking;
};

enum class RecvStatus { kOk, kEmpty, kLagged, kClosed, kTimeout, kCancelled };

template <class T>
struct Received {
  RecvStatus status;
  uint64_t seq;            // kOk: the message's sequence; kLagged: where the subscriber continues
  uint64_t missed;         // kLagged: exactly how many messages were overwritten unseen
  std::optional<T> value;  // kOk only
};

template <class T>
class Broadcast;

/// One subscriber's view of a Broadcast: its own cursor over the ring. Move-only;
/// use from one thread at a time. Keeps the ring's shared state alive, so it stays
/// valid after the Broadcast is destroyed (it then drains what is left and reports
/// kClosed). Dropping it unsubscribes (a kBlock ring stops waiting for it).
template <class T>
class Subscriber {
 public:
  Subscriber(Subscriber&& other) noexcept { *this = std::move(other); }
  Subscriber& operator=(Subscriber&& other) noexcept {
    if (this != &other) {
      unsubscribe();
      ring_ = std::move(other.ring_);
      gate_ = std::move(other.gate_);
      next_ = other.next_;
      missed_total_ = other.missed_total_;
      pending_missed_ = std::exchange(other.pending_missed_, 0);
      announced_ = other.announced_;  // belongs to gate_'s cursor, which moved with it
      finished_ = other.finished_;
    }
    return *this;
  }
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;
  ~Subscriber() { unsubscribe(); }

  /// Never waits: kOk, kLagged, kEmpty (nothing new yet) or kClosed (closed and drained).
  Received<T> try_recv() { return poll(); }

  /// Waits for the next message: kOk, kLagged, kClosed, or kCancelled when `stop` is
  /// requested while waiting. Forced inline, with wait_recv(): at -O2 GCC called it once
  /// per message, which cut 1 -> 1 to a fifth (docs/notes/broadcast.md, session 11).
  [[gnu::always_inline]] Received<T> recv(std::stop_token stop = {}) { return wait_recv(std::nullopt, stop); }

  /// As recv(), but gives up with kTimeout after `timeout`.
  Received<T> recv_for(Clock::duration timeout, std::stop_token stop = {}) {
    return wait_recv(detail::deadline_after(timeout), stop);
  }

  /// Waits for at least one message, then appends what is available, up to `max`,
  /// to `out`. Returns how many it appended: 0 means closed-and-drained or cancelled
  /// (or max == 0). Lag skips ahead and is counted in missed_total(); the appended
  /// messages are one contiguous run of sequences ending at next_seq() - 1.
  size_t recv_batch(std::vector<T>& out, size_t max, std::stop_token stop = {}) {
    if (max == 0 || !ring_) return 0;
    for (;;) {
      const uint64_t first = next_;
      size_t appended = 0;
      bool drained_closed = false;
      while (appended < max) {
        if (pending_missed_ != 0) {  // kBlock subscribe_from() that started behind the window
          missed_total_ += std::exchange(pending_missed_, 0);
          continue;
        }
        if (finished_) {
          drained_closed = true;
          break;
        }
        detail::ReadStatus status;
        if constexpr (kAppendsRuns) {
          const size_t n = append_run(out, max - appended, status);
          next_ += n;
          appended += n;
        } else {
          status = ring_->read(next_, [&](const T& v) { out.push_back(v); });
          if (status == detail::ReadStatus::kOk) {
            ++next_;
            ++appended;
          }
        }
        if (status == detail::ReadStatus::kOk) continue;
        if (status == detail::ReadStatus::kOverwritten) {
          if (appended > 0) break;  // keep a batch one contiguous run; skip next call
          skip_lag();
        } else {
          if (ring_->drained(next_)) {
            finished_ = true;  // kClosed from now on, even if a late claim completes
            drained_closed = true;
          } else if (ring_->complete(next_)) {
            continue;  // completed between the read and the check
          }
          break;
        }
      }
      if (next_ != first) moved_cursor();
      if (appended > 0) return appended;
      if (drained_closed) return 0;
      moved_cursor(/*announce=*/true);
      if (ring_->wait_readable(next_, std::nullopt, stop) == detail::WaitOutcome::kCancelled) {
        return 0;
      }
    }
  }

  /// The next sequence this subscriber receives.
  uint64_t next_seq() const { return next_; }

  /// Messages lost to lag so far, by any recv.
  uint64_t missed_total() const { return missed_total_ + pending_missed_; }

 private:
  friend class Broadcast<T>;
  using Ring = detail::BroadcastRing<T>;

  // `replay`: the caller asked for `from` (subscribe_from), so a later start is lag
  // it must hear about. Otherwise (subscribe) the subscription takes effect when it
  // registers: sequences claimed meanwhile by a producer no subscriber held back are
  // concurrent with subscribing, not missed.
  Subscriber(std::shared_ptr<Ring> ring, uint64_t from, bool born_closed, bool replay)
      : ring_(std::move(ring)), next_(from), finished_(born_closed) {
    if (ring_->blocks_producers() && !finished_) {
      gate_ = std::make_unique<detail::GateCursor>();
      next_ = ring_->register_gate(gate_.get(), from);
      if (replay) pending_missed_ = next_ - from;
    }
  }

  void unsubscribe() {
    if (gate_) ring_->unregister_gate(gate_.get());
    gate_.reset();
  }

  /// Whether recv_batch() reads runs through append_run(): values in seqlock slots
  /// (trivially copyable) that vector::insert can take (it needs them assignable).
  static constexpr bool kAppendsRuns = detail::kUseSeqlock<T> && std::is_copy_assignable_v<T>;

  /// recv_batch()'s reads when kAppendsRuns: copies the run of readable messages from
  /// next_ (at most `max`, and at most one chunk) into a local chunk and appends it to `out`
  /// at once. Pushed one by one, each message cost a store-to-load round trip through the
  /// vector's end pointer, which every stamp load (an acquire) forced back to memory
  /// (docs/notes/broadcast.md, session 13). Returns the count and leaves next_ to the
  /// caller: if the append throws, this chunk is neither lost nor taken.
  size_t append_run(std::vector<T>& out, size_t max, detail::ReadStatus& status)
    requires kAppendsRuns
  {
    constexpr size_t kChunk = std::max<size_t>(1, 512 / sizeof(T));  // 512 bytes, or one T if larger
    union Chunk {
      Chunk() {}  // leaves the items unconstructed: T's default constructor need not be free
      T items[kChunk];
    } chunk;
    size_t filled = 0;
    const size_t n = ring_->read_run(next_, std::min(kChunk, max), status,
                                     [&](const T& v) { std::construct_at(chunk.items + filled++, v); });
    out.insert(out.end(), chunk.items, chunk.items + n);
    return n;
  }

  // `announce`: we are about to wait, or to report kEmpty. Then a kBlock subscriber does
  // the full handshake with producers waiting for space (advance_gate's `force`), or one
  // of them could sleep for good: a batch claim may need exactly the cursor we stop at,
  // and no stride multiple need lie on the way. Once per cursor value is enough (a
  // producer that parks later reads the cursor we announced).
  [[gnu::always_inline]] void moved_cursor(bool announce = false) {
    if (!gate_) return;
    if (announce) {
      if (announced_ == next_) return;
      announced_ = next_;
    }
    ring_->advance_gate(gate_.get(), next_, announce);
  }

  void skip_lag() {
    // kBlock producers never overwrite what a live subscriber has not read, so there an
    // "overwritten" slot is one message lost by its producer (a throwing copy or move):
    // skip just it. Jumping to lag_target() would also skip sequences already claimed
    // by producers still waiting for room.
    const uint64_t target = gate_ ? next_ + 1 : ring_->lag_target(next_);
    missed_total_ += target - next_;
    next_ = target;
  }

  // The receive paths' per-message step: a message ready to read is taken here, with
  // moved_cursor() and the ring's advance_gate(), all forced inline; everything else
  // goes to poll_rest(). GCC's unit-growth limits outlined this path once the
  // benchmark's translation unit grew, and 1 -> 4 recv lost 3x (docs/notes/broadcast.md,
  // session 7); a user's translation unit can be larger still.
  [[gnu::always_inline]] Received<T> poll() {
    if (ring_ && pending_missed_ == 0 && !finished_) [[likely]] {
      Received<T> r{RecvStatus::kOk, next_, 0, std::nullopt};
      if (ring_->read(next_, [&](const T& v) { r.value.emplace(v); }) == detail::ReadStatus::kOk) [[likely]] {
        return consume(r);
      }
    }
    return poll_rest();
  }

  /// Returns the message read at next_ and moves past it. If returning it throws (T's
  /// move constructor; compilers need not elide that move), the cursor stays, so the
  /// next receive reads the message again instead of losing it.
  [[gnu::always_inline]] Received<T> consume(Received<T>& r) {
    if constexpr (std::is_nothrow_move_constructible_v<T>) {
      ++next_;
      moved_cursor();
      return std::move(r);
    } else {
      struct Advance {
        Subscriber* self;
        int exceptions = std::uncaught_exceptions();
        ~Advance() {
          if (std::uncaught_exceptions() == exceptions) {  // the return value is built
            ++self->next_;
            self->moved_cursor();
          }
        }
      } advance{this};
      return std::move(r);
    }
  }

  Received<T> poll_rest() {
    if (!ring_) return {RecvStatus::kClosed, next_, 0, std::nullopt};
    if (pending_missed_ != 0) {  // kBlock subscribe_from() that started behind the window
      const uint64_t missed = std::exchange(pending_missed_, 0);
      missed_total_ += missed;
      return {RecvStatus::kLagged, next_, missed, std::nullopt};
    }
    if (finished_) return {RecvStatus::kClosed, next_, 0, std::nullopt};
    Received<T> r{RecvStatus::kOk, next_, 0, std::nullopt};
    switch (ring_->read(next_, [&](const T& v) { r.value.emplace(v); })) {
      case detail::ReadStatus::kOk:
        return consume(r);
      case detail::ReadStatus::kOverwritten: {
        const uint64_t from = next_;
        skip_lag();
        moved_cursor();
        return {RecvStatus::kLagged, next_, next_ - from, std::nullopt};
      }
      case detail::ReadStatus::kNotReady:
        break;
    }
    if (ring_->drained(next_)) {
      finished_ = true;  // kClosed from now on, even if a claim racing close() completes
      return {RecvStatus::kClosed, next_, 0, std::nullopt};
    }
    if (ring_->complete(next_)) return poll_rest();  // completed just now
    moved_cursor(/*announce=*/true);
    return {RecvStatus::kEmpty, next_, 0, std::nullopt};
  }

  /// The receive loop: the message at hand in poll(), the waiting in the ring's
  /// out-of-line wait. Forced inline into recv() and recv_for() (see recv()).
  [[gnu::always_inline]] Received<T> wait_recv(const detail::Deadline& deadline, const std::stop_token& stop) {
    for (;;) {
      if constexpr (std::is_nothrow_move_constructible_v<T>) {
        Received<T> r = poll();
        if (r.status != RecvStatus::kEmpty) return r;  // kEmpty has announced our cursor
      } else {
        // Returning `r` as above could move the message a second time, after poll()
        // moved past it: a throwing move would lose it. So return what poll() reports
        // as it is (moved once, into the caller's object; see consume()) whenever it
        // would not be kEmpty.
        if (!ring_ || pending_missed_ != 0 || finished_ || ring_->complete(next_) || ring_->drained(next_)) {
          return poll();
        }
        moved_cursor(/*announce=*/true);  // as poll() does before reporting kEmpty
      }
      switch (ring_->wait_readable(next_, deadline, stop)) {
        case detail::WaitOutcome::kReady:
          break;
        case detail::WaitOutcome::kTimeout:
          return {RecvStatus::kTimeout, next_, 0, std::nullopt};
        case detail::WaitOutcome::kCancelled:
          return {RecvStatus::kCancelled, next_, 0, std::nullopt};
      }
    }
  }

  std::shared_ptr<Ring> ring_;
  std::unique_ptr<detail::GateCursor> gate_;  // kBlock only: the cursor producers wait for
  uint64_t next_ = 1;
  uint64_t missed_total_ = 0;
  uint64_t pending_missed_ = 0;
  uint64_t announced_ = 0;  // the cursor of our last full handshake with producers
  bool finished_ = false;   // reports kClosed from now on (subscribed after close(), or drained)
};

/// A bounded ring that delivers every message to every subscriber.
///
/// Producers (any threads) publish; each message gets the next sequence, 1, 2, 3...
/// Each Subscriber has its own cursor and receives, in sequence order, every
/// message published after it subscribed, unless it lags: under kOverwrite, a
/// subscriber more than `capacity` behind gets kLagged with the exact number of
/// messages it missed, then continues at the oldest message still held.
///
/// Memory ordering: writes made before publish() are visible to a subscriber that
/// receives that message. A publish() that returns has its message delivered (to every
/// subscriber that does not lag), also when it ran concurrently with close(); one that
/// throws std::logic_error because of close() delivered nothing.
///
/// Destroying the Broadcast closes it: live Subscribers drain what is left, then
/// report kClosed. (A claim() never passed to publish_claimed() holds readers at its
/// sequence after close(), but not after the Broadcast is destroyed.)
template <class T>
class Broadcast {
 public:
  explicit Broadcast(BroadcastOptions options = {}) : ring_(make_ring(options)) {}
  Broadcast(Broadcast&&) noexcept = default;
  Broadcast& operator=(Broadcast&& other) noexcept {
    if (this != &other) {
      release();
      ring_ = std::move(other.ring_);
    }
    return *this;
  }
  Broadcast(const Broadcast&) = delete;
  Broadcast& operator=(const Broadcast&) = delete;
  ~Broadcast() { release(); }

  /// Publishes from any thread; returns the message's sequence (the first is 1).
  /// kOverwrite never waits for subscribers; kBlock waits for the slowest one.
  /// Throws std::logic_error after close() (also when close() interrupts a kBlock wait).
  /// Forced inline with the ring's claim and fill (see BroadcastRing::claim()).
  [[gnu::always_inline]] uint64_t publish(T value) {
    const uint64_t seq = ring_->claim();
    // The ring's publish_claimed takes `value` by reference: a throwing move happens
    // inside it, which completes `seq` as lost (it must not stay unpublished).
    if (!ring_->publish_claimed(seq, std::move(value))) throw_abandoned();
    return seq;
  }

  /// Two-phase publish, first half: reserves the next sequence (for a caller that must
  /// allocate it under its own lock and fill it after releasing that lock). Never
  /// blocks under kOverwrite; under kBlock it waits for space like publish().
  /// Every claimed sequence MUST be passed to publish_claimed(): subscribers and
  /// published_cursor() stop at an unpublished one, and so, even under kOverwrite, does a
  /// producer whose sequence is one lap (the capacity) later and would overwrite its slot:
  /// a thread that claims and then publishes a capacity's worth of messages before its
  /// publish_claimed() waits for itself. Throws std::logic_error after close().
  uint64_t claim() { return ring_->claim_deferred(); }

  /// claim() for `n` messages at once: reserves the sequences first .. first + n - 1 and
  /// returns first; each must then be passed to publish_claimed(). One claim instead of
  /// n matters when several threads publish: each claim is then a contended atomic
  /// add. Throws std::invalid_argument unless 1 <= n <= capacity().
  uint64_t claim(size_t n) {
    check_batch_size("claim: n", n);
    return ring_->claim_deferred(n);
  }

  /// Publishes copies of `values` as consecutive messages, with one claim for the lot
  /// (see claim(n)), and returns the first one's sequence. An empty `values` publishes
  /// nothing and returns 0, even after close().
  /// Throws std::invalid_argument when values.size() > capacity(). If copying a value
  /// throws, it and the values after it are completed as lost (subscribers count them
  /// as missed, nobody stalls) and the exception propagates.
  uint64_t publish_batch(std::span<const T> values) {
    if (values.empty()) return 0;
    check_batch_size("publish_batch: values.size()", values.size());
    const uint64_t first = ring_->claim(values.size());
    const uint64_t end = first + values.size();
    uint64_t seq = first;
    bool abandoned = false;
    try {
      for (const T& v : values) {
        // A throwing copy or move completes `seq` itself (as lost); false: close() left
        // an earlier claim unfinished, so nobody can read this one or the rest.
        if (!publish_claimed(seq++, v)) {
          abandoned = true;
          break;
        }
      }
    } catch (...) {
      // The rest of the batch, after the one that threw. Unreachable for seqlock slots:
      // their trivially copyable values cannot throw.
      if constexpr (!detail::kUseSeqlock<T>) {
        for (; seq < end; ++seq) ring_->publish_lost(seq);
      }
      throw;
    }
    if (abandoned) throw_abandoned();
    return first;
  }

  /// The ring's capacity (BroadcastOptions::capacity rounded up to a power of two).
  size_t capacity() const { return ring_->capacity(); }

  /// Two-phase publish, second half: fills `seq` (from claim()) and makes it visible.
  /// Producers may finish out of order; published_cursor() and subscribers advance
  /// over the contiguous prefix only. Never throws if T's move constructor does not
  /// (if it does, the message is completed as lost, so nobody stalls, and rethrown).
  /// It waits only for a producer still writing the same slot one lap earlier.
  /// Returns false, publishing nothing, only after close() under kBlock, when a
  /// producer of an earlier sequence of the same slot gave up its claim: no subscriber
  /// can read past that sequence.
  bool publish_claimed(uint64_t seq, T&& value) noexcept(std::is_nothrow_move_constructible_v<T>) {
    return ring_->publish_claimed(seq, std::move(value));
  }
  /// As above, from a copy of `value`. If the copy throws, `seq` is completed as lost
  /// (nobody stalls at it) and the exception propagates.
  bool publish_claimed(uint64_t seq, const T& value) noexcept(std::is_nothrow_copy_constructible_v<T> &&
                                                              std::is_nothrow_move_constructible_v<T>) {
    if constexpr (std::is_nothrow_copy_constructible_v<T>) {
      return ring_->publish_claimed(seq, T(value));
    } else {
      std::optional<T> copy;
      try {
        copy.emplace(value);
      } catch (...) {
        if constexpr (!detail::kUseSeqlock<T>) ring_->publish_lost(seq);
        throw;
      }
      return ring_->publish_claimed(seq, std::move(*copy));
    }
  }

  /// Every sequence <= this is published and visible. Starts at 0.
  uint64_t published_cursor() const { return ring_->published_cursor(); }

  /// Subscribers drain what is left, then get kClosed; later publish() throws
  /// std::logic_error; kBlock producers waiting for space are woken and throw.
  void close() { ring_->close(); }

  /// Receives the messages published after this call. After close(): a subscriber
  /// that reports kClosed.
  Subscriber<T> subscribe() {
    return subscribe_at(ring_->published_cursor() + 1, /*replay=*/false);
  }

  /// Replays from `seq` while the ring still holds it; otherwise its first receive is
  /// kLagged with the exact count of the messages it cannot have. `seq` 0 means 1.
  /// Throws std::invalid_argument if `seq > published_cursor() + 1`.
  Subscriber<T> subscribe_from(uint64_t seq) {
    const uint64_t published = ring_->published_cursor();
    if (seq > published + 1) {
      throw std::invalid_argument("Broadcast::subscribe_from: seq " + std::to_string(seq) +
                                  " is beyond published_cursor() + 1 = " +
                                  std::to_string(published + 1));
    }
    return subscribe_at(seq == 0 ? 1 : seq, /*replay=*/true);
  }

 private:
  using Ring = detail::BroadcastRing<T>;

  // Destroyed (or replaced): close, and since no claim can be filled any more, let
  // readers stop at the first unfilled one instead of waiting for it.
  void release() noexcept {
    if (!ring_) return;
    ring_->close();
    ring_->abandon_unpublished();
  }

  [[noreturn]] static void throw_abandoned() {
    throw std::logic_error("Broadcast: close() while publish was waiting for space");
  }

  void check_batch_size(const char* what, size_t n) const {
    if (n == 0 || n > ring_->capacity()) {
      throw std::invalid_argument(std::string("Broadcast::") + what + " = " + std::to_string(n) +
                                  " must be in 1.." + std::to_string(ring_->capacity()) +
                                  " (the capacity)");
    }
  }

  static std::shared_ptr<Ring> make_ring(const BroadcastOptions& options) {
    if (options.capacity == 0) {
      throw std::invalid_argument("BroadcastOptions::capacity must be at least 1");
    }
    if (options.capacity > (size_t{1} << 40)) {
      throw std::invalid_argument("BroadcastOptions::capacity must be at most 2^40");
    }
    detail::WaitMode mode = detail::WaitMode::kBlocking;
    switch (options.wait) {
      case WaitStrategy::kBlocking: mode = detail::WaitMode::kBlocking; break;
      case WaitStrategy::kYield: mode = detail::WaitMode::kYield; break;
      case WaitStrategy::kSpin: mode = detail::WaitMode::kSpin; break;
      default: throw std::invalid_argument("BroadcastOptions::wait is not a WaitStrategy");
    }
    bool block = false;
    switch (options.overflow) {
      case Overflow::kOverwrite: block = false; break;
      case Overflow::kBlock: block = true; break;
      default: throw std::invalid_argument("BroadcastOptions::overflow is not an Overflow");
    }
    return std::make_shared<Ring>(std::bit_ceil(options.capacity), block, mode);
  }

  Subscriber<T> subscribe_at(uint64_t from, bool replay) {
    return Subscriber<T>(ring_, from, ring_->closed(), replay);
  }

  std::shared_ptr<Ring> ring_;
};

}  // namespace streamcache
