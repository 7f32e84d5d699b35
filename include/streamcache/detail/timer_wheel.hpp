// A hierarchical timer wheel: O(1) schedule/deschedule and amortized O(1)
// expiry for nodes addressed by 32-bit ids. See docs/notes/timer_wheel.md.
#pragma once

#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "streamcache/detail/intrusive_list.hpp"

namespace streamcache::detail {

/// The wheel's per-node state, embedded in the cache's node. 12 bytes.
struct TimerWheelHook {
  static constexpr uint16_t kNotScheduled = 0xFFFF;

  ListHook links;
  /// Which list holds the node: `level * 64 + index` for the levels, then the
  /// overflow list, then the wheel's pending list (during advance()).
  uint16_t bucket = kNotScheduled;
};
static_assert(sizeof(TimerWheelHook) <= 12, "the hook is part of every cache entry");

/// Levels of 64 buckets; the bucket of level L spans 2^(20 + 6L) ns:
///
///   level  bucket span        level span (64 buckets)
///   0      2^20 ns ~ 1.05 ms  2^26 ~ 67 ms
///   1      2^26 ns ~ 67 ms    2^32 ~ 4.3 s
///   2      2^32 ns ~ 4.3 s    2^38 ~ 4.6 min
///   3      2^38 ns ~ 4.6 min  2^44 ~ 4.9 h
///   4      2^44 ns ~ 4.9 h    2^50 ~ 13 days
///   5      2^50 ns ~ 13 days  2^56 ~ 2.3 years
///   overflow: one list, re-examined whenever time crosses a multiple of 2^56 ns.
///
/// Time is cut into "ticks" per level: tick_L(t) = t >> shift(L). A node with
/// deadline d lives at the finest level L where tick_L(d) - tick_L(now) < 64,
/// in bucket tick_L(d) mod 64. Invariants between calls (now = now()):
///   - level 0 holds ticks in [tick_0(now), tick_0(now) + 63]; deadlines already
///     due when scheduled go to the current bucket, tick_0(now);
///   - level L >= 1 holds ticks in (tick_L(now), tick_L(now) + 63], so a bucket
///     never mixes two laps of its level;
///   - the overflow list holds deadlines with tick_6(d) > tick_6(now).
/// advance(t) takes every bucket whose tick lies in (tick_L(now), tick_L(t)]
/// (level 0: [tick_0(now), tick_0(t)], the current bucket being re-examined
/// because it may hold deadlines in (now, t]), and the overflow list when
/// tick_6 moves. Any node with deadline <= t is in one of those buckets.
///
/// The wheel does not store deadlines: a node taken from a coarse bucket is
/// handed to `on_due`, which either expires it or schedules it again at its
/// real deadline, which then lands on a strictly finer level (its deadline and
/// the new time share the coarse tick). Hence each node is handed over early at
/// most once per level it passes through (5), plus once per 2^56 ns (~2.3
/// years) spent in overflow, plus once per advance() while its deadline lies in
/// the current finest bucket (< 1.05 ms before it is due).
///
/// Not thread-safe: the cache drives it under its maintenance lock.
template <class HookOf>  // HookOf: cheap copyable callable NodeId -> TimerWheelHook&
class TimerWheel {
 public:
  static constexpr int kLevels = 6;
  static constexpr int kBucketBits = 6;
  static constexpr int kBuckets = 1 << kBucketBits;
  /// Level 0 buckets span 2^20 ns ~ 1.05 ms: fine enough that the current
  /// bucket (whose nodes are handed over on every advance) stays small.
  static constexpr int kFinestShift = 20;
  /// log2 of the span of one bucket of `level`; shift(kLevels) is the span of
  /// the overflow list's tick.
  static constexpr int shift(int level) { return kFinestShift + kBucketBits * level; }

  TimerWheel(HookOf hook_of, int64_t now_ns)
      : hook_of_(hook_of),
        now_(now_ns),
        lists_(kOverflow + 1, List(LinksOf{hook_of})),
        pending_(LinksOf{hook_of}) {}

  /// Schedules `id` to be handed over by the first advance() to a time >=
  /// `deadline_ns`, moving it if it is already scheduled. O(1).
  void schedule(NodeId id, int64_t deadline_ns) {
    TimerWheelHook& h = hook_of_(id);
    if (h.bucket == TimerWheelHook::kNotScheduled) {
      ++size_;
    } else {
      unlink(id, h);
    }
    const uint16_t bucket = bucket_for(deadline_ns);
    lists_[bucket].push_back(id);
    if (bucket != kOverflow) occupied_[bucket >> kBucketBits] |= uint64_t{1} << (bucket & kIndexMask);
    h.bucket = bucket;
  }

  /// Removes `id` from the wheel; a no-op if it is not scheduled. O(1).
  void deschedule(NodeId id) {
    TimerWheelHook& h = hook_of_(id);
    if (h.bucket == TimerWheelHook::kNotScheduled) return;
    unlink(id, h);
    h.bucket = TimerWheelHook::kNotScheduled;
    --size_;
  }

  bool scheduled(NodeId id) const { return hook_of_(id).bucket != TimerWheelHook::kNotScheduled; }

  /// Scheduled nodes, including those an advance() has yet to hand over.
  size_t size() const { return size_; }

  /// The wheel's time: the largest now_ns given to the constructor or advance().
  int64_t now() const { return now_; }

  /// Moves the wheel's time to `now_ns` (a smaller now_ns than now() is a
  /// no-op). Every node scheduled with a deadline <= now_ns is descheduled and
  /// passed to `on_due(id)`, which either leaves it descheduled or schedules it
  /// again at its real deadline (> now_ns). Nodes not yet due may be passed too
  /// (see the class comment for how rarely). `on_due` may schedule or
  /// deschedule any node; it must not call advance(). A node it schedules at a
  /// deadline <= now_ns goes to the next advance(). Nodes are handed over
  /// roughly in deadline order: level-0 buckets in tick order, each bucket in
  /// the order its nodes were scheduled.
  ///
  /// Cost: O(levels) plus O(1) per node handed over. If `on_due` throws, the
  /// nodes not yet handed over stay scheduled and go to the next advance().
  template <class F>
  void advance(int64_t now_ns, F&& on_due) {
    assert(!advancing_ && "on_due must not call advance()");
    if (now_ns < now_) return;
    // Everything due moves to pending_ before the first on_due call and before
    // the time moves, so that nodes on_due schedules (relative to the new time)
    // can never land in a bucket still to be taken, nor in one being drained.
    take_due(now_ns);
    now_ = now_ns;
    advancing_ = true;
    struct Reset {
      bool& flag;
      ~Reset() { flag = false; }
    } reset{advancing_};
    while (!pending_.empty()) {
      const NodeId id = pending_.pop_front();
      hook_of_(id).bucket = TimerWheelHook::kNotScheduled;
      --size_;
      on_due(id);
    }
  }

  /// Deschedules every node. O(scheduled nodes).
  void clear() {
    for (List& list : lists_) clear_list(list);
    clear_list(pending_);
    for (uint64_t& bits : occupied_) bits = 0;
    size_ = 0;
  }

 private:
  // IntrusiveList threads the ListHook inside the TimerWheelHook.
  struct LinksOf {
    HookOf hook_of;
    ListHook& operator()(NodeId id) const { return hook_of(id).links; }
  };
  using List = IntrusiveList<LinksOf>;

  static constexpr uint16_t kOverflow = kLevels * kBuckets;
  static constexpr uint16_t kPending = kOverflow + 1;
  static constexpr int64_t kIndexMask = kBuckets - 1;
  static_assert(kPending < TimerWheelHook::kNotScheduled);
  static_assert(shift(kLevels) < 63, "the overflow tick must be a real shift of int64");

  uint16_t bucket_for(int64_t deadline_ns) const {
    for (int level = 0; level < kLevels; ++level) {
      // Ticks are at most 2^44 apart in magnitude: no overflow, whatever the
      // deadline (INT64_MAX, or long past).
      const int64_t now_tick = now_ >> shift(level);
      int64_t tick = deadline_ns >> shift(level);
      if (tick - now_tick < kBuckets) {
        // Only possible at level 0: a deadline already in the current tick or
        // past goes to the current bucket, which the next advance() takes.
        if (tick < now_tick) tick = now_tick;
        return static_cast<uint16_t>(level * kBuckets + (tick & kIndexMask));
      }
    }
    return kOverflow;
  }

  List& list_of(uint16_t bucket) { return bucket == kPending ? pending_ : lists_[bucket]; }

  void unlink(NodeId id, const TimerWheelHook& h) {
    const uint16_t bucket = h.bucket;
    List& list = list_of(bucket);
    list.remove(id);
    if (bucket < kOverflow && list.empty()) {
      occupied_[bucket >> kBucketBits] &= ~(uint64_t{1} << (bucket & kIndexMask));
    }
  }

  void take_due(int64_t to) {
    for (int level = 0; level < kLevels; ++level) {
      const int64_t from_tick = now_ >> shift(level);
      const int64_t to_tick = to >> shift(level);
      const int64_t first = level == 0 ? from_tick : from_tick + 1;
      // A level whose tick did not move has nothing due, nor has any coarser one.
      if (to_tick < first) return;
      const int start = static_cast<int>(first & kIndexMask);
      const int64_t count = to_tick - first + 1;
      const uint64_t window =
          count >= kBuckets ? ~uint64_t{0} : std::rotl((uint64_t{1} << count) - 1, start);
      const uint64_t due = occupied_[level] & window;
      occupied_[level] &= ~due;
      // Walk the window in tick order (bit 0 = tick `first`), so that nodes go
      // out roughly by deadline even when the window wraps around the level.
      for (uint64_t rest = std::rotr(due, start); rest != 0; rest &= rest - 1) {
        const int index = (start + std::countr_zero(rest)) & static_cast<int>(kIndexMask);
        take(lists_[static_cast<size_t>(level * kBuckets + index)]);
      }
    }
    if ((to >> shift(kLevels)) > (now_ >> shift(kLevels))) take(lists_[kOverflow]);
  }

  // Moves a whole bucket to pending_. The nodes are re-tagged so that
  // deschedule()/schedule() from on_due unlink them from the right list.
  void take(List& bucket) {
    for (NodeId id = bucket.front(); id != kNoNode; id = bucket.next(id)) {
      hook_of_(id).bucket = kPending;
    }
    pending_.splice_back(bucket);
  }

  void clear_list(List& list) {
    while (!list.empty()) hook_of_(list.pop_front()).bucket = TimerWheelHook::kNotScheduled;
  }

  HookOf hook_of_;
  int64_t now_;
  size_t size_ = 0;
  bool advancing_ = false;
  // One bit per non-empty bucket, per level: advance() finds due buckets
  // without visiting empty ones.
  uint64_t occupied_[kLevels] = {};
  // kLevels * kBuckets buckets, then the overflow list.
  std::vector<List> lists_;
  // Nodes taken by the advance() in progress, not yet handed to on_due.
  List pending_;
};

}  // namespace streamcache::detail
