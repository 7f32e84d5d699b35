// A hierarchical timer wheel: O(1) schedule/deschedule and amortized O(1)
// expiry for nodes addressed by 32-bit ids. See docs/notes/timer_wheel.md.
#pragma once

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <new>
#include <utility>
#include <vector>

#include "streamcache/detail/intrusive_list.hpp"

namespace streamcache::detail {

/// The wheel's per-node state, embedded in the cache's node. 12 bytes.
struct TimerWheelHook {
  static constexpr uint16_t kNotScheduled = 0xFFFF;

  /// A list's links; while the node is in the wheel's heap (no list then), the
  /// deadline of its live heap entry instead (see TimerWheel::heap_deadline()).
  ListHook links;
  /// Where the node is: `level * 64 + index` for the levels' lists, then the
  /// overflow list, the wheel's pending list (during advance()), and its heap of
  /// deadlines in the current finest tick.
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
/// in bucket tick_L(d) mod 64, unless tick_0(d) <= tick_0(now): deadlines in the
/// current finest tick, or already due, go to a min-heap of (deadline, node).
/// Invariants between calls (now = now()):
///   - level L holds ticks in (tick_L(now), tick_L(now) + 63], so a bucket never
///     mixes two laps of its level (level 0's current bucket, tick_0(now), is
///     empty but for the heap's fallback, below);
///   - the heap holds every node scheduled with tick_0(d) <= tick_0(now);
///   - the overflow list holds deadlines with tick_6(d) > tick_6(now).
/// advance(t) takes every bucket whose tick lies in (tick_L(now), tick_L(t)],
/// the overflow list when tick_6 moves, and the heap's deadlines <= t. Any node
/// with deadline <= t is in one of those.
///
/// The heap is why a deadline in the current tick costs one hand-over: the
/// lists cannot tell deadlines apart within their 1.05 ms, and a current bucket
/// re-taken whole by every advance() cost O(its size) per advance, quadratic
/// when many entries with short lifetimes were written within one tick (found
/// by a review: 20000 inserts with a 100 us time-to-live on a stopped clock took
/// 10 s). A node in the heap has one live entry, whose deadline its hook keeps
/// (in the links it has no use for there); scheduled again at a later deadline it
/// keeps that entry (it is handed over early, once, and rescheduled), at an
/// earlier one it gets a new entry. Entries that are no longer live (the node
/// moved, was descheduled, or got an earlier entry) stay behind and are skipped
/// when popped; once they outnumber the live ones (plus kHeapKeptCapacity) the
/// heap is compacted, so it holds O(nodes in the heap) entries however often they
/// are rescheduled while the clock stands still (found by a second review: 2M
/// rewrites of one key with a 100 us time-to-live on a stopped clock, 32 MB).
/// If the heap cannot grow (std::bad_alloc) the node goes to the current level-0
/// bucket instead, which every advance() takes whole, as before the heap.
///
/// The wheel stores no deadlines in its lists: a node taken from a coarse
/// bucket is handed to `on_due`, which either expires it or schedules it again
/// at its real deadline, which then lands on a strictly finer level or in the
/// heap (its deadline and the new time share the coarse tick). Hence each node
/// is handed over early at most once per level it passes through (6), plus once
/// per 2^56 ns (~2.3 years) spent in overflow, plus once per time it is scheduled
/// again at a later deadline while in the heap.
///
/// Not thread-safe: the cache drives it under its maintenance lock.
template <class HookOf>  // HookOf: cheap copyable callable NodeId -> TimerWheelHook&
class TimerWheel {
 public:
  static constexpr int kLevels = 6;
  static constexpr int kBucketBits = 6;
  static constexpr int kBuckets = 1 << kBucketBits;
  /// Level 0 buckets span 2^20 ns ~ 1.05 ms; deadlines within the current one
  /// are kept in the heap, in deadline order.
  static constexpr int kFinestShift = 20;
  /// The heap's slack: it is compacted when its entries reach twice its nodes plus
  /// this, and an emptied heap keeps up to this many entries' worth of memory.
  static constexpr size_t kHeapKeptCapacity = 1024;
  /// log2 of the span of one bucket of `level`; shift(kLevels) is the span of
  /// the overflow list's tick.
  static constexpr int shift(int level) { return kFinestShift + kBucketBits * level; }

  TimerWheel(HookOf hook_of, int64_t now_ns)
      : hook_of_(hook_of),
        now_(now_ns),
        lists_(kOverflow + 1, List(LinksOf{hook_of})),
        pending_(LinksOf{hook_of}) {}

  /// Schedules `id` to be handed over by the first advance() to a time >=
  /// `deadline_ns`, moving it if it is already scheduled. O(1); O(log n) amortized
  /// for a deadline in the current finest tick (the heap).
  void schedule(NodeId id, int64_t deadline_ns) {
    TimerWheelHook& h = hook_of_(id);
    uint16_t bucket = bucket_for(deadline_ns);
    if (bucket == kHeap) {
      // Already in the heap, due no later than this: its entry stands (it hands the
      // node over early, which on_due answers by scheduling it again).
      if (h.bucket == kHeap && heap_deadline(h) <= deadline_ns) return;
      // First, so that a failure to grow leaves the wheel as it was: the node
      // then goes to the current level-0 bucket (see the class comment).
      try {
        if (heap_.size() >= 2 * heap_nodes_ + kHeapKeptCapacity) compact_heap();
        heap_.emplace_back(deadline_ns, id);
        std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
      } catch (const std::bad_alloc&) {
        bucket = static_cast<uint16_t>((now_ >> shift(0)) & kIndexMask);
      }
    }
    if (h.bucket == TimerWheelHook::kNotScheduled) {
      ++size_;
    } else {
      unlink(id, h);
    }
    if (bucket == kHeap) {
      ++heap_nodes_;
      set_heap_deadline(h, deadline_ns);
    } else {
      lists_[bucket].push_back(id);
      if (bucket != kOverflow) occupied_[bucket >> kBucketBits] |= uint64_t{1} << (bucket & kIndexMask);
    }
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

  /// Entries in the heap of the current tick's deadlines, live or not (for tests: it
  /// stays within twice the nodes in the heap plus kHeapKeptCapacity).
  size_t heap_entries() const { return heap_.size(); }

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
    for (const auto& [deadline, id] : heap_) {
      TimerWheelHook& h = hook_of_(id);
      if (h.bucket == kHeap) h.bucket = TimerWheelHook::kNotScheduled;
    }
    release_heap();
    heap_nodes_ = 0;
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
  static constexpr uint16_t kHeap = kPending + 1;
  static constexpr uint16_t kHeapKept = kHeap + 1;  // during compact_heap() only
  static constexpr int64_t kIndexMask = kBuckets - 1;
  static_assert(kHeapKept < TimerWheelHook::kNotScheduled);
  static_assert(sizeof(ListHook) == sizeof(int64_t), "a heap node's links hold its entry's deadline");
  static_assert(shift(kLevels) < 63, "the overflow tick must be a real shift of int64");

  uint16_t bucket_for(int64_t deadline_ns) const {
    for (int level = 0; level < kLevels; ++level) {
      // Ticks are at most 2^44 apart in magnitude: no overflow, whatever the
      // deadline (INT64_MAX, or long past).
      const int64_t now_tick = now_ >> shift(level);
      int64_t tick = deadline_ns >> shift(level);
      if (tick - now_tick < kBuckets) {
        // Only possible at level 0: a deadline in the current tick or past goes
        // to the heap, from which the first advance() to a time >= it takes it.
        if (tick <= now_tick) return kHeap;
        return static_cast<uint16_t>(level * kBuckets + (tick & kIndexMask));
      }
    }
    return kOverflow;
  }

  List& list_of(uint16_t bucket) { return bucket == kPending ? pending_ : lists_[bucket]; }

  void unlink(NodeId id, const TimerWheelHook& h) {
    const uint16_t bucket = h.bucket;
    if (bucket == kHeap) {  // its entry is skipped once the hook says otherwise
      --heap_nodes_;
      return;
    }
    List& list = list_of(bucket);
    list.remove(id);
    if (bucket < kOverflow && list.empty()) {
      occupied_[bucket >> kBucketBits] &= ~(uint64_t{1} << (bucket & kIndexMask));
    }
  }

  void take_due(int64_t to) {
    // The heap first: its deadlines are in ticks before those of the lists'
    // buckets taken below. Deadlines <= to, in deadline order; an entry whose node
    // is no longer in the heap (moved, descheduled, or already taken through
    // another entry) is skipped.
    while (!heap_.empty() && heap_.front().first <= to) {
      const auto [deadline, id] = heap_.front();
      std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
      heap_.pop_back();
      TimerWheelHook& h = hook_of_(id);
      if (!live(h, deadline)) continue;
      --heap_nodes_;
      h.bucket = kPending;
      pending_.push_back(id);  // overwrites the links that held the deadline
    }
    if (heap_.empty() && heap_.capacity() > kHeapKeptCapacity) release_heap();
    take_due_from_lists(to);
  }

  static int64_t heap_deadline(const TimerWheelHook& h) { return std::bit_cast<int64_t>(h.links); }
  static void set_heap_deadline(TimerWheelHook& h, int64_t deadline) { h.links = std::bit_cast<ListHook>(deadline); }
  static bool live(const TimerWheelHook& h, int64_t deadline) {
    return h.bucket == kHeap && heap_deadline(h) == deadline;
  }

  /// Drops every entry that is not live, and duplicates of a live one (a node that
  /// left the heap and came back at the same deadline has two), then rebuilds the heap.
  /// O(entries); schedule() calls it once they reach twice the nodes in the heap (plus
  /// kHeapKeptCapacity), so it costs O(1) per schedule amortized.
  void compact_heap() {
    size_t kept = 0;
    for (const auto& entry : heap_) {
      TimerWheelHook& h = hook_of_(entry.second);
      if (!live(h, entry.first)) continue;
      h.bucket = kHeapKept;  // a second entry of the node no longer passes live()
      heap_[kept++] = entry;
    }
    heap_.resize(kept);
    for (const auto& entry : heap_) hook_of_(entry.second).bucket = kHeap;
    std::make_heap(heap_.begin(), heap_.end(), std::greater<>());
  }

  void release_heap() {
    heap_.clear();
    if (heap_.capacity() > kHeapKeptCapacity) std::vector<std::pair<int64_t, NodeId>>().swap(heap_);
  }

  void take_due_from_lists(int64_t to) {
    for (int level = 0; level < kLevels; ++level) {
      const int64_t from_tick = now_ >> shift(level);
      const int64_t to_tick = to >> shift(level);
      // Level 0 takes its current bucket too: empty unless the heap could not
      // grow (see the class comment), and then its nodes may be due.
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
  // A min-heap (std::greater) of (deadline, node) for deadlines with
  // tick_0(deadline) <= tick_0(now_); may hold entries that are no longer live
  // (see the class comment). heap_nodes_: the nodes whose hook says kHeap.
  std::vector<std::pair<int64_t, NodeId>> heap_;
  size_t heap_nodes_ = 0;
};

}  // namespace streamcache::detail
