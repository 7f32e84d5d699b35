// The engine behind streamcache::Cache: sharded map, buffered policy, expiry, loaders.
#pragma once

#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>
#include <absl/status/status.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cassert>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "streamcache/cache_types.hpp"
#include "streamcache/clock.hpp"
#include "streamcache/detail/delivery_tracker.hpp"
#include "streamcache/detail/hash_mix.hpp"
#include "streamcache/detail/intrusive_list.hpp"
#include "streamcache/detail/mutex.hpp"
#include "streamcache/detail/node_arena.hpp"
#include "streamcache/detail/read_buffer.hpp"
#include "streamcache/detail/read_epoch.hpp"
#include "streamcache/detail/timer_wheel.hpp"
#include "streamcache/detail/tiny_lfu_policy.hpp"

namespace streamcache::detail {

/// The max_weight of a cache without a bound.
inline constexpr uint64_t kUnboundedWeight = std::numeric_limits<uint64_t>::max();

/// Everything a CacheBuilder collects; validated by CacheCore's constructor.
template <class K, class V>
struct CacheConfig {
  uint64_t max_weight = kUnboundedWeight;
  size_t initial_capacity = 0;
  std::optional<Clock::duration> time_to_live;
  std::optional<Clock::duration> time_to_idle;
  std::shared_ptr<Expiry<K, V>> expiry;
  std::function<uint32_t(const K&, const V&)> weigher;
  std::function<void(const K&, const V&, RemovalCause)> listener;
  std::shared_ptr<Clock> clock;
  bool clock_set = false;  // a clock(nullptr) call is an error, not "use the default"
  size_t shards = 0;
};

inline constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
/// A time-to-idle or per-entry deadline that a call found passed and sealed, so that no
/// reader extends it again (see CacheCore::expired_for_good()). Below every time now_ns()
/// returns, so an entry with a sealed deadline is expired whenever it is looked at.
inline constexpr int64_t kSealed = std::numeric_limits<int64_t>::min();

struct Empty {};

/// What a component built on the cache (the StreamingMap) can add to it. The default adds
/// nothing and costs nothing. An extension provides:
///  - `NodeExtra`: per-entry state kept in the node, owned by the shard (touched only under
///    the shard lock, by the per-call hooks of insert_with() / remove_with() and by
///    removed_locked());
///  - `kWriteOrder`: keep each shard's entries in a list in write order (every write moves
///    its entry to the tail), which read_history() walks;
///  - `removed_locked(extra, key, value, cause)`: called under the shard lock when
///    maintenance evicts or expires an entry;
///  - `kOrderEpochs` (with kWriteOrder): the write hook returns the entry's 64-bit order
///    key, of which NodeExtra keeps only the low 32 bits; the write-order list then carries
///    epoch markers holding the high 32 bits (`set_marker_epoch` / `marker_epoch` store
///    them in a marker's NodeExtra), and history walks hand each entry its epoch, so the
///    key is exact however long an entry stays unwritten.
struct NoExtension {
  using NodeExtra = Empty;
  static constexpr bool kWriteOrder = false;
  static constexpr bool kOrderEpochs = false;
  template <class K, class V>
  void removed_locked(NodeExtra&, const K&, const V&, RemovalCause) {}
};

/// Where a read_history() walk of one shard stands: a marker node linked into the shard's
/// write-order list, so writes that move or remove other entries never lose our place.
/// `epoch`: with Ext::kOrderEpochs, the epoch of any entry between the marker and the next
/// epoch marker, once the walk has passed one (a walk from the front meets an epoch marker
/// before any entry; new entries only go to the tail, behind the last marker).
struct HistoryCursor {
  NodeId marker = kNoNode;
  bool done = false;
  uint32_t epoch = 0;
};
inline constexpr size_t kMaxShards = 256;

inline int64_t saturating_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? kNever : std::numeric_limits<int64_t>::min();
  return r;
}

/// The concurrent cache. Architecture (Caffeine's, in C++):
///
///  - The map is split into shards, each an absl::flat_hash_set of 4-byte node ids
///    behind a reader-writer lock. Readers take the shard lock shared, writers exclusive. The
///    map is strongly consistent: a get() after an insert() returns see the value.
///  - Entries live in per-shard NodeArenas (stable addresses, 32-bit ids). A node's key,
///    value, `alive` flag and timestamps are owned by its shard (written under the shard
///    lock; timestamps are atomics because readers move time-to-idle under a shared lock).
///    Its policy and timer hooks are owned by the maintenance lock.
///  - The eviction policy (W-TinyLFU) and the timer wheel are single-threaded and are
///    driven only under `maintenance_mu_`. Readers record hits into lossy striped
///    buffers; writers append events to their shard's log (under the shard lock they
///    already hold, so each shard's events are in mutation order). Whoever gets the
///    maintenance lock (try-lock after a write or when a read stripe fills, or
///    run_pending_tasks()) drains both, expires, and evicts. Eviction bookkeeping is thus
///    eventually consistent, like Caffeine's and Moka's.
///  - Maintenance collects the notifications of what it evicted or expired under the lock
///    and delivers them after releasing it, so a listener never runs under any lock of the
///    cache: it may call back into the cache and wait for other threads that use it (a
///    load it joins, say). While a thread delivers maintenance's notifications
///    (`delivering_`), its writes and reads only log work: the maintenance that delivered
///    picks it up after the delivery (maintain_and_unlock(), run_pending_tasks()), and a
///    listener that writes cannot recurse into maintenance without bound.
///
/// Node lifecycle invariants (what makes ids safe to keep in buffers):
///  1. A node is in its shard's map iff `alive`. Only the thread that flips `alive` to
///     false (under the shard lock) destroys its key and value.
///  2. A writer that removes a node logs kRemove; maintenance frees the node when it
///     processes that event. Maintenance frees the nodes it evicts or expires itself.
///     So each node is freed exactly once, and only by maintenance.
///  3. Freed ids wait in `pending_free` until maintenance next swaps that shard's log, so
///     every event logged before the free has been taken out of the log by then. Events
///     and read records that mention a freed or reused id find `policy.contains(id)`
///     false (the hooks are reset on unlink and only maintenance sets them) and are
///     ignored, or at worst credit one read to the id's next occupant.
///  4. Arena chunks are never freed while the cache lives, so a stale id never dangles.
template <class K, class V, class Hash, class Eq, class Ext = NoExtension>
class CacheCore {
  struct Node;
  using Arena = NodeArena<Node>;

  // A write's or removal's precondition, checked under the shard lock before anything
  // changes: guard(id of the key's entry or kNoNode, whether it expired) -> go ahead.
  // Only compute() sets one; a guarded write is a compute's own.
  struct NoGuard {
    bool operator()(NodeId, bool) const { return true; }
  };
  template <class Guard>
  static constexpr bool kGuarded = !std::is_same_v<std::remove_cvref_t<Guard>, NoGuard>;

 public:
  explicit CacheCore(CacheConfig<K, V> config, Ext ext = {}) : config_(std::move(config)), ext_(std::move(ext)) {
    validate();
    clock_ = config_.clock ? config_.clock : Clock::system();
    int slots = 0;
    if (config_.time_to_live) ttl_slot_ = slots++;
    if (config_.time_to_idle) tti_slot_ = slots++;
    if (config_.expiry) custom_slot_ = slots++;
    expires_ = slots > 0;

    size_t shards = config_.shards;
    if (shards == 0) {
      const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
      shards = std::clamp<size_t>(std::bit_ceil(size_t{16} * cpus), 16, 64);
    }
    codec_.shard_bits = static_cast<uint32_t>(std::countr_zero(shards));
    // Each shard's arena addresses max_local() + 1 entries (32-bit ids, the shard in the
    // low bits): 2^32 - shards in all. A larger initial_capacity could never be used, and
    // the hash tables' own size check would abort the process rather than throw.
    const uint64_t addressable = static_cast<uint64_t>(shards) * (uint64_t{codec_.max_local()} + 1);
    if (config_.initial_capacity > addressable) {
      throw std::invalid_argument("streamcache::Cache: initial_capacity must be at most 2^32 minus the shard count "
                                  "(the most entries the cache can address)");
    }
    shards_.reserve(shards);
    for (size_t i = 0; i < shards; ++i) {
      shards_.push_back(std::make_unique<Shard>(this, static_cast<uint32_t>(slots)));
      if (config_.initial_capacity > 0) {
        WriterLock<SharedMutex> lock(shards_.back()->mu);
        shards_.back()->map.reserve(config_.initial_capacity / shards + 1);
      }
    }
    pending_free_.resize(shards);
    dirty_words_ = (shards + 63) / 64;
    dirty_ = std::make_unique<std::atomic<uint64_t>[]>(dirty_words_);
    const uint32_t stripes = std::bit_ceil(2 * std::max(1u, std::thread::hardware_concurrency()));
    reads_ = std::make_unique<ReadBuffer>(std::min<uint32_t>(stripes, 64));
    stats_ = std::make_unique<StripedCounters<kStatCount>>(std::min<uint32_t>(stripes, 64));
    policy_.emplace(config_.max_weight, PolicyHookOf{this});
    wheel_.emplace(WheelHookOf{this}, now_ns());
  }

  CacheCore(const CacheCore&) = delete;
  CacheCore& operator=(const CacheCore&) = delete;

  ~CacheCore() {
    // No other thread may use the cache now. Destroy what live nodes hold; the arena
    // destroys the nodes themselves. No lock: nobody else can hold one, and taking a
    // biased shard lock would cost a heavy barrier per shard (see SharedMutex).
    for (auto& shard : shards_) {
      shard->mu.assert_held();
      for (Slot slot : shard->map) destroy_entry(node(slot.id));
      shard->map.clear();
    }
  }

  // ---- Reads ---------------------------------------------------------------------------

  std::optional<V> get(const K& key) { return lookup<true>(key); }

  /// get(); kCount: count the hit or miss (load() counts its own, see there).
  template <bool kCount>
  std::optional<V> lookup(const K& key) {
    const uint64_t h = hash_key(key);
    Shard& s = shard_for(h);
    const int64_t now = expires_ ? now_ns() : 0;
    std::optional<V> result;
    uint64_t unrecorded = 0;
    bool skipped = false;
    bool found_expired = false;
    NodeId brought_forward = kNoNode;
    {
      ReaderLock lock(s.mu);
      auto it = s.map.find(key, h);
      if (it != s.map.end()) {
        Node& n = node_in(s.arena, it->id);
        found_expired = expired_for_good(it->id, now);
        if (!found_expired) {
          result.emplace(n.value);
          const ReadOutcome read = on_read_locked(it->id, n, now);
          if (read == ReadOutcome::kBroughtForward) brought_forward = it->id;
          if (read == ReadOutcome::kFoundSealed) {
            result.reset();
            found_expired = true;
          } else if (applied_this_epoch(n)) {
            skipped = true;
          } else {
            const uint64_t rec = read_record(it->id, h);
            if (!reads_->record(rec)) unrecorded = rec;
          }
        }
      }
    }
    if constexpr (kCount) stats_->add(result ? kHits : kMisses);
    if (brought_forward != kNoNode) reschedule_now(brought_forward);
    // Reads drive maintenance when a stripe fills: ours is full (or we lost it to a
    // thread sharing it), or, for deduplicated reads, which fill no stripe, every
    // kStripeSize of them on this thread count as a full one (expiry and the read epoch
    // itself must keep moving in read-only phases). And at once when the read found an
    // expired entry, as Caffeine schedules a drain then: otherwise reads that find only
    // expired entries (a read-only phase after a TTL passed) would never remove them. The
    // timer wheel hands over every deadline <= now, so one pass removes the entry.
    const bool stripe_full =
        unrecorded != 0 || (skipped && (++skipped_reads_ & (ReadBuffer::kStripeSize - 1)) == 0);
    if ((stripe_full || found_expired) && may_run_maintenance() && maintenance_mu_.try_lock()) {
      maintain_and_unlock();
    }
    // Retry once, so that a single-threaded user never loses a read. (The id may be
    // stale by now; stale records are harmless, see invariant 3.)
    if (unrecorded != 0) reads_->record(unrecorded);
    return result;
  }

  bool contains_key(const K& key) const {
    const uint64_t h = hash_key(key);
    Shard& s = shard_for(h);
    const int64_t now = expires_ ? now_ns() : 0;
    ReaderLock lock(s.mu);
    auto it = s.map.find(key, h);
    return it != s.map.end() && !expired_for_good(it->id, now);
  }

  template <class F>
  void for_each(F&& f) const {
    // Weakly consistent: each shard is copied under its shared lock and visited after
    // the lock is released, so `f` may call back into the cache.
    std::vector<std::pair<K, V>> batch;
    for (const auto& shard : shards_) {
      batch.clear();
      {
        const int64_t now = expires_ ? now_ns() : 0;
        ReaderLock lock(shard->mu);
        batch.reserve(shard->map.size());
        for (Slot slot : shard->map) {
          if (expired_for_good(slot.id, now)) continue;
          const Node& n = node(slot.id);
          batch.emplace_back(n.key, n.value);
        }
      }
      for (const auto& [k, v] : batch) f(k, v);
    }
  }

  uint64_t entry_count() const {
    uint64_t total = 0;
    for (const auto& shard : shards_) {
      ReaderLock lock(shard->mu);
      total += shard->map.size();
    }
    return total;
  }

  uint64_t weighted_size() const {
    return weighted_size_.load(std::memory_order_relaxed);  // relaxed: a statistic, set by maintenance
  }

  /// The bound in force: set_max_capacity()'s latest, else the builder's.
  uint64_t max_weight() const {
    return max_weight_.load(std::memory_order_relaxed);  // relaxed: see max_weight_
  }

  /// A new bound. When it returns, what was written before the call is within it (the
  /// excess evicted, kSize, and its notifications delivered), as after run_pending_tasks().
  /// Inside a listener that maintenance delivers, where run_pending_tasks() does nothing,
  /// the delivering maintenance evicts the excess once its delivery is over, as it applies
  /// what the listener writes, within its pass limit (a listener that shrinks the bound
  /// again in every pass's delivery leaves the last excess to a later maintenance).
  void set_max_weight(uint64_t max_weight) {
    // A user's call: never under our maintenance lock (extensions' hooks, which are,
    // do not resize).
    assert(!ThreadMark::in(in_maintenance_, this));
    const bool run_now = may_run_maintenance();
    {
      WriterLock<Mutex> lock(maintenance_mu_);
      const bool shrinks = max_weight < policy_->max_weight();
      policy_->set_max_weight(max_weight);
      max_weight_.store(max_weight, std::memory_order_relaxed);  // relaxed: see max_weight_
      if (!run_now && shrinks) {
        // A batch's worth of pending work, released by the next pass: the delivering
        // maintenance's check after its delivery (maintain_and_unlock(),
        // run_pending_tasks()) then runs that pass instead of returning.
        pending_units_.fetch_add(kWriteBatch);  // seq_cst: as in after_write()
        applied_units_ += kWriteBatch;
      }
    }
    if (run_now) run_pending_tasks();
  }

  const CacheConfig<K, V>& config() const { return config_; }

  CacheStats stats() const {
    CacheStats s;
    s.hits = stats_->sum(kHits);
    s.misses = stats_->sum(kMisses);
    s.load_successes = stats_->sum(kLoadSuccesses);
    s.load_failures = stats_->sum(kLoadFailures);
    s.evictions_expired = stats_->sum(kEvictionsExpired);
    s.evictions_size = stats_->sum(kEvictionsSize);
    s.invalidations = stats_->sum(kInvalidations);
    s.replacements = stats_->sum(kReplacements);
    return s;
  }

  // ---- Writes --------------------------------------------------------------------------

  void insert(K key, V value) { insert_with(std::move(key), std::move(value), NoWriteHook{}); }

  /// insert() that also runs `on_write(extra, key, value)` under the shard lock once the
  /// entry is written (see write()).
  template <class OnWrite>
  void insert_with(K key, V value, OnWrite&& on_write) {
    const uint64_t h = hash_key(key);
    Notifications out;
    int64_t units = 0;
    try {
      write(std::move(key), std::move(value), h, out, units, on_write);
    } catch (...) {
      // A replacement that failed may have taken the entry out (see write()): report
      // and account what it logged.
      deliver(out);
      after_write(units);
      throw;
    }
    deliver(out);
    after_write(units);
  }

  /// Whether a read_history() walk visits entries that have expired but are not removed
  /// yet (maintenance has not run since their deadline).
  enum class ExpiredEntries { kSkip, kVisit };

  /// Reads up to `max` entries of shard `shard` in write order, resuming where `cursor`
  /// stands, under the shard's lock. `visit(extra, epoch, key, value)` returns false to
  /// stop before that entry (the cursor stays in front of it and the walk is done);
  /// `epoch` is the high half of the entry's order key with Ext::kOrderEpochs, else 0.
  /// Expired entries are visited or skipped as `expired` says. Sets cursor.done at the end
  /// of the list. Requires Ext::kWriteOrder. Call release_history() when done with a cursor.
  template <class Visit>
  size_t read_history(size_t shard, HistoryCursor& cursor, size_t max, ExpiredEntries expired, Visit&& visit) {
    static_assert(Ext::kWriteOrder, "read_history needs an extension that keeps write order");
    Shard& s = *shards_[shard];
    const int64_t now = expires_ && expired == ExpiredEntries::kSkip ? now_ns() : 0;
    WriterLock<SharedMutex> lock(s.mu);  // exclusive: moving the marker relinks the list
    NodeId id;
    NodeId last;  // the marker goes back right after this node (kNoNode: at the front)
    if (cursor.marker == kNoNode) {
      cursor.marker = allocate_locked(s, static_cast<uint64_t>(shard) << 56);
      node(cursor.marker).marker = MarkerKind::kCursor;
      id = s.order.front();
      last = kNoNode;
    } else {
      id = s.order.next(cursor.marker);
      unlink_order_locked(s, cursor.marker);  // may free an epoch marker before it: look again
      last = id != kNoNode ? s.order.prev(id) : s.order.back();
    }
    // The marker goes back when the walk ends, also if `visit` throws: left out of the
    // list, release_history() would unlink it a second time and wipe the list's ends.
    struct Relink {
      Shard& s;
      const NodeId& last;
      NodeId marker;
      ~Relink() { s.order.insert_after(last, marker); }
    } relink{s, last, cursor.marker};
    size_t emitted = 0;
    while (id != kNoNode && emitted < max) {
      Node& n = node(id);
      if (n.marker == MarkerKind::kEpoch) {
        if constexpr (Ext::kOrderEpochs) cursor.epoch = Ext::marker_epoch(n.extra);
      } else if (n.marker == MarkerKind::kNone &&
                 (expired == ExpiredEntries::kVisit || !expired_for_good(id, now))) {
        if (!visit(static_cast<const typename Ext::NodeExtra&>(n.extra), cursor.epoch, static_cast<const K&>(n.key),
                   static_cast<const V&>(n.value))) {
          cursor.done = true;
          break;
        }
        ++emitted;
      }
      last = id;
      id = s.order.next(id);
    }
    if (id == kNoNode) cursor.done = true;
    return emitted;
  }

  /// Places a fresh cursor right after the newest entry for which `older(extra, epoch)`
  /// holds, scanning from the tail (markers skipped): with lists sorted by order key, a
  /// walk that wants only entries newer than some bound then starts there, in O(newer
  /// entries).
  template <class Older>
  void seek_history(size_t shard, HistoryCursor& cursor, Older&& older) {
    static_assert(Ext::kWriteOrder, "seek_history needs an extension that keeps write order");
    Shard& s = *shards_[shard];
    WriterLock<SharedMutex> lock(s.mu);
    if (cursor.marker != kNoNode) return;  // only a fresh cursor
    cursor.marker = allocate_locked(s, static_cast<uint64_t>(shard) << 56);
    node(cursor.marker).marker = MarkerKind::kCursor;
    uint32_t epoch = s.epoch;  // of the entries the scan is among (those after the last marker)
    size_t markers_ahead = s.epoch_markers.size();  // epoch markers before the scan's place
    NodeId id = s.order.back();
    while (id != kNoNode) {
      const Node& n = node(id);
      if (n.marker == MarkerKind::kEpoch) {
        if constexpr (Ext::kOrderEpochs) {  // crossing epoch_markers[markers_ahead - 1] backwards
          --markers_ahead;
          epoch = markers_ahead == 0 ? 0 : Ext::marker_epoch(node(s.epoch_markers[markers_ahead - 1]).extra);
        }
      } else if (n.marker == MarkerKind::kNone && older(static_cast<const typename Ext::NodeExtra&>(n.extra), epoch)) {
        break;
      }
      id = s.order.prev(id);
    }
    s.order.insert_after(id, cursor.marker);
    cursor.epoch = epoch;  // at the front (id == kNoNode) the walk meets an epoch marker first
  }

  /// How many epoch markers shard `shard`'s write order holds (Ext::kOrderEpochs): what
  /// invariant E2 bounds, for tests. Walks the list, and returns SIZE_MAX if the markers
  /// met are not those E3's index lists. O(entries in the shard).
  size_t epoch_markers(size_t shard) const {
    static_assert(Ext::kOrderEpochs, "epoch markers exist only with Ext::kOrderEpochs");
    Shard& s = *shards_[shard];
    WriterLock<SharedMutex> lock(s.mu);
    size_t count = 0;
    for (NodeId id = s.order.front(); id != kNoNode; id = s.order.next(id)) {
      if (node(id).marker != MarkerKind::kEpoch) continue;
      if (count >= s.epoch_markers.size() || s.epoch_markers[count] != id) return SIZE_MAX;
      ++count;
    }
    return count == s.epoch_markers.size() ? count : SIZE_MAX;
  }

  /// Unlinks and frees a cursor's marker. Safe on a cursor never used.
  void release_history(size_t shard, HistoryCursor& cursor) {
    if (cursor.marker == kNoNode) return;
    Shard& s = *shards_[shard];
    WriterLock<SharedMutex> lock(s.mu);
    unlink_order_locked(s, cursor.marker);
    free_marker_locked(s, cursor.marker);
    cursor.marker = kNoNode;
  }

  std::optional<V> remove(const K& key) { return remove_with(key, NoRemoveHook{}); }

  /// remove() that also runs `on_remove(extra, key, value, cause)` under the shard lock when
  /// an entry (live: kExplicit, or expired: kExpired) is removed; it must not throw.
  /// Returns nullopt, changing nothing, if `guard` refuses (see NoGuard); a removal
  /// counts and marks as write() does.
  template <class OnRemove, class Guard = NoGuard>
  std::optional<V> remove_with(const K& key, OnRemove&& on_remove, Guard&& guard = {}) {
    const uint64_t h = hash_key(key);
    if (ComputingKey::innermost != nullptr) refuse_inside_own_compute(key, h);
    Shard& s = shard_for(h);
    const int64_t now = expires_ ? now_ns() : 0;
    Notifications out;
    std::optional<V> result;
    {
      WriterLock<SharedMutex> lock(s.mu);
      auto it = s.map.find(key, h);
      if constexpr (kGuarded<Guard>) {
        const bool found = it != s.map.end();
        if (!guard(found ? it->id : kNoNode, found && is_expired(it->id, now))) return std::nullopt;
      }
      if (it == s.map.end()) return std::nullopt;
      if (!s.loading.empty()) note_write_during_compute_locked(s, key);
      ++s.writes;
      const NodeId id = it->id;
      const bool expired = is_expired(id, now);
      Node& n = node(id);
      if (!expired) result.emplace(n.value);  // may throw: before anything changes
      s.map.erase(it);
      const RemovalCause cause = expired ? RemovalCause::kExpired : RemovalCause::kExplicit;
      on_remove(n.extra, static_cast<const K&>(n.key), static_cast<const V&>(n.value), cause);
      retire_locked(s, id, n, cause, out);
    }
    deliver(out);
    after_write(pending_units(EventKind::kRemove));
    return result;
  }

  template <class Pred>
  void invalidate_if(Pred&& pred) {
    // `pred` runs under each shard's exclusive lock, so a shard is filtered atomically;
    // it must not call back into the cache. If it throws, what was removed before stays
    // removed, is reported and accounted (its kRemove events are logged), and the
    // exception propagates; the other shards are left alone.
    int64_t removed = 0;
    std::exception_ptr error;
    for (auto& shard : shards_) {
      Notifications out;
      try {
        const int64_t now = expires_ ? now_ns() : 0;
        WriterLock<SharedMutex> lock(shard->mu);
        for (auto it = shard->map.begin(); it != shard->map.end();) {
          const NodeId id = it->id;
          Node& n = node(id);
          const bool expired = is_expired(id, now);
          if (!expired && !pred(static_cast<const K&>(n.key), static_cast<const V&>(n.value))) {
            ++it;
            continue;
          }
          shard->map.erase(it++);
          retire_locked(*shard, id, n, expired ? RemovalCause::kExpired : RemovalCause::kExplicit, out);
          ++removed;
        }
      } catch (...) {
        error = std::current_exception();
      }
      deliver(out);
      if (error) break;
    }
    if (removed > 0) after_write(removed * pending_units(EventKind::kRemove));
    if (error) std::rethrow_exception(error);
  }

  void invalidate_all() {
    invalidate_if([](const K&, const V&) { return true; });
  }

  // ---- Loaders -------------------------------------------------------------------------

  /// The three loader flavours share one single-flight mechanism; a key's in-flight
  /// loads are tracked per flavour, since their outcomes differ in type. The fourth slot
  /// is no load: it holds the key's compute() turn (see there).
  enum LoadKind : size_t { kLoadValue = 0, kLoadStatus = 1, kLoadOptional = 2, kCompute = 3 };

  struct Flight {
    std::atomic<bool> done{false};  // set (release) after the outcome below is written
    std::optional<V> value;
    std::exception_ptr error;
    absl::Status status;
    // kCompute only, under the shard lock: whether a write or removal of the key came
    // since compute() last read it.
    bool conflict = false;
    // The thread that leads the load, set by claim_load() before the flight is shared
    // (under the shard lock): a caller on that thread must not wait for it.
    std::thread::id leader;
  };

  /// Whether a Shard::loading slot holds a flight still under way. One that is done may be
  /// left in its slot when the key's Hash or Eq threw as it ended (end_flight(),
  /// end_compute_turn_locked()); it is replaced, not joined.
  static bool in_flight(const std::shared_ptr<Flight>& slot) {
    // acquire: pairs with the release (or seq_cst) store of done that ended the flight.
    return slot && !slot->done.load(std::memory_order_acquire);
  }

  /// Whether waiting for `flight` would wait for the calling thread itself: it leads that
  /// flight further up its stack (a loader loading its own key, or a listener its writes
  /// reach doing so). Callers throw (or fail the key with) self_wait_error() instead.
  static bool would_wait_for_itself(const Flight& flight) {
    return flight.leader == std::this_thread::get_id() && !flight.done.load(std::memory_order_acquire);
  }
  static std::logic_error self_wait_error() {
    return std::logic_error("streamcache: a load of a key this thread is loading (it would wait for itself)");
  }

  /// Returns the cached value, or joins or leads the load of `key`. `run(flight)` is
  /// called on the leader, outside any lock, and must set flight.value on success or
  /// flight.error / flight.status on failure (no value and no error = nullopt).
  ///
  /// Statistics: exactly one hit or one miss per call, as Caffeine counts a lookup. A hit
  /// when the value is found, also if it appeared between the first look and the look
  /// under the shard lock; a miss otherwise, for the leader and for a caller that joins an
  /// in-flight load alike (neither found a value in the cache; Guava counts waiters as
  /// misses too), plus a load success or failure for the leader.
  template <class Run>
  std::shared_ptr<Flight> load(const K& key, LoadKind kind, Run&& run, std::optional<V>& hit) {
    const uint64_t h = hash_key(key);
    hit = lookup<false>(key);
    if (hit) {
      stats_->add(kHits);
      return nullptr;
    }
    // Loading would write the key: from inside its own compute's function, refused here,
    // before a flight that other callers could join fails with it.
    if (ComputingKey::innermost != nullptr) refuse_inside_own_compute(key, h);
    std::shared_ptr<Flight> flight;
    const Claim claim = claim_load(key, h, kind, hit, flight);
    if (claim == Claim::kHit) return nullptr;
    if (claim == Claim::kJoined) {
      if (would_wait_for_itself(*flight)) throw self_wait_error();
      flight->done.wait(false, std::memory_order_acquire);  // acquire: pairs with end_flight()'s release
      return flight;
    }
    try {
      run(*flight);
    } catch (...) {
      flight->value.reset();
      flight->error = std::current_exception();
    }
    finish_load(key, h, kind, *flight);
    return flight;
  }

  /// Cache::get_all(): the values of `keys`, in their order (nullopt where the loader
  /// found nothing). What is cached is a hit; the keys whose kLoadOptional flight is
  /// already in the air are joined; this call leads the loads of the others, all in one
  /// call `load_missing(std::span<const K>)`, which returns (key, value) pairs. Statistics
  /// as load(), per key.
  ///
  /// A thread that leads flights must not wait for one, or it may wait for itself. So
  /// every look-up (which may run maintenance, and so a listener that loads) and every
  /// refusal (see ComputingKey) comes before the first claim; the flights it leads end
  /// before any notification is delivered or maintenance runs; and the flights it joined
  /// are waited for last. Two bulk loads of overlapping keys thus never wait for each
  /// other in a cycle. A joined flight that this thread leads (a loader further up the
  /// stack) fails its key with std::logic_error instead of a wait for itself.
  /// Throws, once every flight it leads has ended: what `load_missing` threw (then the
  /// failure of each of its keys), else the first failure in `keys` order, else the
  /// first extra pair's.
  template <class LoadMissing>
  std::vector<std::optional<V>> load_all(std::span<const K> keys, LoadMissing&& load_missing) {
    static_assert(std::is_invocable_v<LoadMissing&, std::span<const K>>,
                  "get_all()'s loader is called as load_all(std::span<const K> missing_keys)");
    std::vector<std::optional<V>> found(keys.size());
    struct Wait {
      size_t index;
      uint64_t h;
      std::shared_ptr<Flight> flight;
    };
    std::vector<Wait> led, joined;
    std::vector<K> missing;  // led[i]'s key is missing[i]: the span the loader gets
    std::vector<std::pair<K, V>> extra;  // pairs for keys not asked for
    led.reserve(keys.size());
    missing.reserve(keys.size());
    // Every flight we lead must end whatever throws: its waiters would wait forever.
    const auto end_led = [&](std::exception_ptr error) {
      Notifications out;
      int64_t units = 0;
      for (size_t i = 0; i < led.size(); ++i) {
        if (error) {
          led[i].flight->value.reset();
          led[i].flight->error = error;
        }
        end_flight(missing[i], led[i].h, kLoadOptional, *led[i].flight, out, units);
      }
      deliver(out);
      after_write(units);
    };
    for (size_t i = 0; i < keys.size(); ++i) {
      found[i] = lookup<false>(keys[i]);
      if (found[i]) {
        stats_->add(kHits);
      } else if (ComputingKey::innermost != nullptr) {
        refuse_inside_own_compute(keys[i], hash_key(keys[i]));
      }
    }
    // A key whose claim throws (its hash, its copy, or its read when the claim finds it
    // cached: the Expiry hook or V's copy) fails alone, like a refused value: the flights
    // claimed before it are other callers' loads too. The first such key, in `keys` order
    // (the loop's), is the one whose error the call may throw (see first_error below).
    std::exception_ptr claim_error;
    size_t claim_error_at = keys.size();
    for (size_t i = 0; i < keys.size(); ++i) {
      if (found[i]) continue;
      try {
        const uint64_t h = hash_key(keys[i]);
        missing.push_back(keys[i]);  // before the claim: a key copy that throws leaves no flight open
        std::shared_ptr<Flight> flight;
        const Claim claim = claim_load(keys[i], h, kLoadOptional, found[i], flight);
        if (claim == Claim::kLed) {
          led.push_back(Wait{i, h, std::move(flight)});  // reserved: cannot throw
          continue;
        }
        missing.pop_back();
        if (claim == Claim::kJoined) joined.push_back(Wait{i, h, std::move(flight)});
      } catch (...) {
        if (missing.size() > led.size()) missing.pop_back();  // missing[i] is led[i]'s key
        found[i].reset();
        if (!claim_error) {
          claim_error = std::current_exception();
          claim_error_at = i;
        }
      }
    }
    try {
      if (!led.empty()) {
        // led is in `keys` order, not by hash: index it to match the loader's pairs.
        std::vector<size_t> by_hash(led.size());
        for (size_t i = 0; i < by_hash.size(); ++i) by_hash[i] = i;
        std::sort(by_hash.begin(), by_hash.end(), [&](size_t a, size_t b) { return led[a].h < led[b].h; });
        using Loaded = std::invoke_result_t<LoadMissing&, std::span<const K>>;
        // Values are moved only out of what the loader handed over: a container returned
        // by value, or a range yielding values. A reference to, or a view over, storage
        // the loader keeps is copied from.
        constexpr bool kMayMove =
            !std::is_lvalue_reference_v<std::ranges::range_reference_t<Loaded>> ||
            (!std::is_reference_v<Loaded> && !std::ranges::view<std::remove_cvref_t<Loaded>>);
        auto&& loaded = load_missing(std::span<const K>(missing));
        for (auto&& [k, v] : loaded) {
          // Nor through an element that holds its value by reference (a proxy such as
          // std::tuple<const K&, V&> refers to the loader's storage, even as a prvalue).
          constexpr bool kMoveValue = kMayMove && !std::is_reference_v<decltype(v)>;
          const uint64_t h = hash_key(k);
          auto at = std::lower_bound(by_hash.begin(), by_hash.end(), h,
                                     [&](size_t i, uint64_t x) { return led[i].h < x; });
          for (; at != by_hash.end() && led[*at].h == h && !eq_(missing[*at], k); ++at) {
          }
          if (at != by_hash.end() && led[*at].h == h) {
            if constexpr (kMoveValue) {
              led[*at].flight->value = std::move(v);  // a key the loader returned twice: the last wins
            } else {
              led[*at].flight->value = v;
            }
          } else if constexpr (kMoveValue) {
            extra.emplace_back(k, std::move(v));
          } else {
            extra.emplace_back(k, v);
          }
        }
      }
    } catch (...) {
      end_led(std::current_exception());
      throw;
    }
    end_led(nullptr);
    // Cached as Caffeine's getAll() caches them, after the keys asked for, whose outcome
    // does not depend on them; one refused (its weigher threw, say) stops no other.
    std::exception_ptr extra_error;
    for (auto& [k, v] : extra) {
      try {
        insert(std::move(k), std::move(v));
      } catch (...) {
        if (!extra_error) extra_error = std::current_exception();
      }
    }
    std::exception_ptr first_error = claim_error;
    size_t first_error_at = claim_error_at;
    const auto collect = [&](const Wait& w) {
      if (w.flight->error && w.index < first_error_at) {
        first_error = w.flight->error;
        first_error_at = w.index;
      }
      if (w.flight->value) found[w.index] = w.flight->value;
    };
    for (const Wait& w : led) collect(w);
    for (const Wait& w : joined) {
      if (would_wait_for_itself(*w.flight)) {
        if (w.index < first_error_at) {
          first_error = std::make_exception_ptr(self_wait_error());
          first_error_at = w.index;
        }
        continue;
      }
      w.flight->done.wait(false, std::memory_order_acquire);  // acquire: pairs with end_flight()'s release
      collect(w);
    }
    if (first_error) std::rethrow_exception(first_error);
    if (extra_error) std::rethrow_exception(extra_error);
    return found;
  }

  // ---- Compute -------------------------------------------------------------------------

  /// Cache::compute(): an atomic read-modify-write of one key. `decide(current)` runs
  /// outside any lock; its decision is applied, in the critical section of the write or
  /// removal it makes, only if a guard (see NoGuard) finds the key still as it was read;
  /// otherwise the compute reads again and decides again. kNop, and kRemove of an absent
  /// key, change nothing: they take effect at the read. Two ways to tell "still as read":
  ///  1. First, optimistically: no write or removal in the key's shard since the read
  ///     (Shard::writes unchanged) and the same live entry (eviction, expiry and
  ///     invalidate_if() remove without counting; a removed key comes back only by a
  ///     write, which counts). No registration, a shared lock for the read: the common
  ///     case costs a get() and an insert().
  ///  2. If that failed (another write in the shard, possibly of another key, raced it),
  ///     in the key's turn: the kCompute slot of its Shard::loading entry. Computes in
  ///     their turn wait for each other; every write or removal of the key marks the turn
  ///     in conflict (see note_write_during_compute_locked()), so only writes of this key
  ///     make it decide again. The guard that passes ends the turn in its critical section.
  /// So `decide` may run more than once, and plain writes never wait for a compute.
  template <class Decide>
  ComputeResult<V> compute(const K& key, Decide&& decide) {
    // Once the decision took effect, the result only moves (into ComputeResult, out to
    // the caller): a move that threw would report a failure for a change that was made.
    static_assert(std::is_nothrow_move_constructible_v<V>,
                  "compute() and upsert_with() need a value type whose move constructor does not throw");
    const uint64_t h = hash_key(key);
    refuse_inside_own_compute(key, h);
    Shard& s = shard_for(h);
    const auto run = [&](const std::optional<V>& current) {
      const ComputingKey marker(*this, key, h);
      return decide(current);
    };
    {
      std::optional<V> current;
      uint64_t writes = 0;
      const NodeId seen = read_for_compute(s, key, h, current, writes);
      const auto unchanged = [&](NodeId id, bool expired) ABSL_NO_THREAD_SAFETY_ANALYSIS {  // under s.mu
        return s.writes == writes && live_or_none(id, expired) == seen;
      };
      if (auto done = apply_compute(key, h, seen, current, run(current), unchanged)) return *std::move(done);
    }
    const std::shared_ptr<Flight> turn = take_compute_turn(s, key);
    bool turn_cleared = false;
    struct EndTurn {
      CacheCore& core;
      Shard& s;
      const K& key;
      Flight& turn;
      const bool& cleared;
      ~EndTurn() { core.end_compute_turn(s, key, turn, cleared); }
    } end_turn{*this, s, key, *turn, turn_cleared};
    for (;;) {
      std::optional<V> current;
      const NodeId seen = read_in_compute_turn(s, key, h, *turn, current);
      const auto unchanged = [&](NodeId id, bool expired) ABSL_NO_THREAD_SAFETY_ANALYSIS {  // under s.mu
        if (turn->conflict || live_or_none(id, expired) != seen) return false;
        // The turn ends with the decision's effect, before the notifications are
        // delivered: a listener may wait for a thread that waits for this turn.
        end_compute_turn_locked(s, key, *turn);
        turn_cleared = true;
        return true;
      };
      if (auto done = apply_compute(key, h, seen, current, run(current), unchanged)) return *std::move(done);
    }
  }

  // ---- Maintenance ---------------------------------------------------------------------

  void run_pending_tasks() {
    // Called from a listener that maintenance's delivery runs: that maintenance applies
    // what the listener logs once the delivery is over.
    if (!may_run_maintenance()) return;
    // Loop: a listener that writes back into the cache leaves new events behind (bounded,
    // in case it does so for every notification forever). Each round delivers its
    // notifications before the next one, so when this returns every notification of the
    // maintenance it ran was delivered; then it waits for those that other threads'
    // earlier maintenance collected and is still delivering (API.md: every notification
    // for an operation completed before the call is delivered when it returns).
    uint64_t last_pass = 0;
    for (int round = 0; round < 8; ++round) {
      Notifications out;
      maintenance_mu_.lock();
      maintain_locked(out);
      const uint64_t ticket = begin_delivery_locked(out);
      last_pass = passes_;
      maintenance_mu_.unlock();
      deliver_from_maintenance(out, ticket);
      if (pending_units_.load() <= 0) break;  // seq_cst: as in maintain_and_unlock()
    }
    // Passes before ours may still be delivering on other threads (they collected their
    // notifications under the lock before us, and deliver after releasing it).
    deliveries_.wait_through(last_pass);
  }

  size_t shard_count() const { return shards_.size(); }

 private:
  // ---- Types ---------------------------------------------------------------------------

  // The `order` member when there is no write order: a distinct empty type, since two
  // empty members of one type may not share an address (that would add 8 bytes per node).
  struct NoWriteOrder {};

  // Nodes in a shard's write-order list that are not entries (never alive, never in a log,
  // a read buffer or the policy): a HistoryCursor's place, or an epoch marker.
  enum class MarkerKind : uint8_t { kNone, kCursor, kEpoch };

  // At least 8-aligned, for the std::atomic<int64_t> timestamps stored before each node;
  // more when the key or value asks for it.
  struct alignas(std::max({alignof(std::atomic<int64_t>), alignof(K), alignof(V)})) Node {
    Node() {}
    ~Node() {}
    union {
      K key;
    };
    union {
      V value;
    };
    // The two flags live in the policy hook's tail padding (see TinyLfuHook): with 8-byte
    // keys and values a node is 48 bytes, plus the timestamps the configuration uses.
    [[no_unique_address]] TinyLfuHook policy;  // maintenance-owned
    bool alive = false;                     // shard-owned
    MarkerKind marker = MarkerKind::kNone;  // shard-owned: a write-order list node that is no entry
    // The read epoch in which maintenance last applied a read of this entry (0: never).
    // Written by maintenance, read by readers (see applied_this_epoch()).
    std::atomic<uint8_t> read_epoch{0};
    TimerWheelHook timer;  // maintenance-owned
    [[no_unique_address]] typename Ext::NodeExtra extra;                              // shard-owned
    [[no_unique_address]] std::conditional_t<Ext::kWriteOrder, ListHook, NoWriteOrder> order;  // shard-owned
  };
  static_assert(!(std::is_same_v<K, uint64_t> && std::is_same_v<V, uint64_t> &&
                  std::is_same_v<Ext, NoExtension>) ||
                    sizeof(Node) == 48,
                "a uint64_t -> uint64_t node is 48 bytes (the memory bar depends on it)");

  struct Slot {
    NodeId id;
  };

  // A shard's map holds only that shard's ids, so hashing and comparing go straight to the
  // shard's arena: two dependent loads fewer than node() on every probe of a get().
  // SlotHash{}(key) is hash_key(key), which every caller has computed already to pick the
  // shard: lookups pass it in (find(key, h)) instead of hashing the key twice.
  struct SlotHash {
    using is_transparent = void;
    const CacheCore* core;
    const Arena* arena;
    size_t operator()(Slot s) const { return core->hash_key(core->node_in(*arena, s.id).key); }
    size_t operator()(const K& k) const { return core->hash_key(k); }
  };

  struct SlotEq {
    using is_transparent = void;
    const CacheCore* core;
    const Arena* arena;
    bool operator()(Slot a, Slot b) const { return a.id == b.id; }
    bool operator()(Slot a, const K& k) const { return core->eq_(core->node_in(*arena, a.id).key, k); }
    bool operator()(const K& k, Slot a) const { return core->eq_(k, core->node_in(*arena, a.id).key); }
  };

  struct NoWriteHook {
    void operator()(typename Ext::NodeExtra&, const K&, const V&) const {}
  };
  struct NoRemoveHook {
    void operator()(typename Ext::NodeExtra&, const K&, const V&, RemovalCause) const {}
  };

  enum class EventKind : uint8_t { kAdd, kUpdate, kRemove };
  struct WriteEvent {
    NodeId id;
    uint32_t weight;
    uint32_t hash32;
    EventKind kind;
  };

  struct OrderHookOf {
    const CacheCore* core;
    ListHook& operator()(NodeId id) const {
      if constexpr (Ext::kWriteOrder) {
        return core->node(id).order;
      } else {
        std::abort();  // never called: no write order is kept
      }
    }
  };

  struct Shard {
    Shard(const CacheCore* core, uint32_t slots)
        : map(0, SlotHash{core, &arena}, SlotEq{core, &arena}), arena(slots), order(OrderHookOf{core}) {}
    mutable SharedMutex mu;
    absl::flat_hash_set<Slot, SlotHash, SlotEq> map ABSL_GUARDED_BY(mu);
    Arena arena;  // ensure() under mu; node() anywhere for existing ids
    std::vector<uint32_t> free_locals ABSL_GUARDED_BY(mu);
    uint32_t next_local ABSL_GUARDED_BY(mu) = 0;
    std::vector<WriteEvent> log ABSL_GUARDED_BY(mu);
    absl::flat_hash_map<K, std::array<std::shared_ptr<Flight>, 4>, Hash, Eq> loading ABSL_GUARDED_BY(mu);  // by LoadKind
    // write() and remove_with() calls that passed their guard, whether or not they then
    // changed anything (an extra count only makes a compute decide again; see compute()).
    uint64_t writes ABSL_GUARDED_BY(mu) = 0;
    IntrusiveList<OrderHookOf> order ABSL_GUARDED_BY(mu);  // write order (Ext::kWriteOrder only)
    // Ext::kOrderEpochs only (see "Write order and its epoch markers"): the epoch markers
    // in list order, the last one's epoch (so that writes need not touch it), and a marker
    // allocated ahead so that placing a written entry in its epoch cannot fail.
    std::vector<NodeId> epoch_markers ABSL_GUARDED_BY(mu);
    uint32_t epoch ABSL_GUARDED_BY(mu) = 0;
    NodeId spare_marker ABSL_GUARDED_BY(mu) = kNoNode;
  };

  struct Notification {
    // A constructor, so that emplace_back() builds one in place (one move of each part,
    // none that could throw after the vector took the value).
    template <class KK, class VV>
    Notification(KK&& k, VV&& v, RemovalCause c) : key(std::forward<KK>(k)), value(std::forward<VV>(v)), cause(c) {}
    K key;
    V value;
    RemovalCause cause;
  };
  using Notifications = std::vector<Notification>;

  struct PolicyHookOf {
    CacheCore* core;
    TinyLfuHook& operator()(NodeId id) const { return core->node(id).policy; }
  };
  struct WheelHookOf {
    CacheCore* core;
    TimerWheelHook& operator()(NodeId id) const { return core->node(id).timer; }
  };

  enum Stat : size_t {
    kHits, kMisses, kLoadSuccesses, kLoadFailures,
    kEvictionsExpired, kEvictionsSize, kInvalidations, kReplacements, kStatCount
  };

  // A write tries the maintenance lock once this many pending units (see pending_units())
  // have gathered: at once after an add, after a batch of updates and removals otherwise.
  static constexpr int64_t kWriteBatch = 16;
  // Writers stop waiting for a try-lock and block on the maintenance lock once this many
  // units are pending: 256 adds, which bounds how far the size may overshoot under
  // contention.
  static constexpr int64_t kMaxPendingUnits = 256 * kWriteBatch;

  static constexpr std::chrono::milliseconds kMinBiasSweepPeriod{10};
  static constexpr std::chrono::milliseconds kMaxBiasSweepPeriod{1000};

  // ---- Hashing and addressing ------------------------------------------------------------

  uint64_t hash_key(const K& key) const {
    // The user's hash may be weak (std::hash is the identity for integers): mix it, since
    // the shard comes from the top bits and the policy's sketch from the low ones.
    return mix64(static_cast<uint64_t>(hasher_(key)));
  }

  Shard& shard_for(uint64_t h) const { return *shards_[(h >> 56) & (shards_.size() - 1)]; }

  Node& node(NodeId id) const {
    return shards_[codec_.shard_of(id)]->arena.node(codec_.local_of(id));
  }
  /// node(id) for an id known to belong to the shard owning `arena`.
  Node& node_in(const Arena& arena, NodeId id) const { return arena.node(codec_.local_of(id)); }
  std::atomic<int64_t>* times(NodeId id) const {
    return shards_[codec_.shard_of(id)]->arena.slots(codec_.local_of(id));
  }

  static uint64_t policy_hash(uint32_t hash32) {
    return (static_cast<uint64_t>(hash32) * 0x9E3779B97F4A7C15ULL) ^ hash32;
  }
  /// Read deduplication: a hit is not recorded when maintenance has already applied a read
  /// of the same entry in the current read epoch, which lasts a quarter of the cache's
  /// entry count in hits (at least 64). So the policy sees a popular entry about once per
  /// epoch instead of once per read: the frequency sketch saturates at 15 anyway, and
  /// the entry's recency is refreshed at least once per quarter-cache of reads. Measured
  /// (docs/notes/cache_benchmarks.md): every anchors hit ratio within 0.002 of recording
  /// every read; a full-cache epoch lost 2 points on `shift`, so the epoch stays short.
  /// What reads must still do without records: keep maintenance running (get() counts
  /// skipped hits as if they filled a stripe) and tell the timer wheel about a per-entry
  /// deadline brought forward (reschedule_now(), which never relied on the lossy buffer).
  /// Both epochs are hints read with relaxed loads: a stale answer costs one extra or one
  /// missing record.
  ///
  /// An entry the sketch already counts as saturated is stamped kMaxEpochsAhead - 1
  /// epochs ahead (detail/read_epoch.hpp): one more count changes nothing there, and its
  /// recency is refreshed once per cache's worth of hits instead of once per quarter.
  bool applied_this_epoch(const Node& n) const {
    // relaxed: see above; written by drain_reads() and when a node is (re)used.
    return stamp_covers(n.read_epoch.load(std::memory_order_relaxed), read_epoch_.load(std::memory_order_relaxed));
  }
  static constexpr uint64_t kMinReadsPerEpoch = 64;
  static constexpr uint64_t kEpochDivisor = 4;

  static uint64_t read_record(NodeId id, uint64_t h) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(h)) << 32) | (static_cast<uint64_t>(id) + 1);
  }

  // ---- Time ----------------------------------------------------------------------------

  /// The clock, in ns, strictly between kSealed and kNever: an entry without a deadline has
  /// kNever as its deadline, and a clock at its largest time point (a ManualClock advanced
  /// to it, or a user's clock returning time_point::max()) would otherwise expire it.
  int64_t now_ns() const { return std::clamp(clock_->now().time_since_epoch().count(), kSealed + 1, kNever - 1); }
  static Clock::time_point to_time(int64_t ns) { return Clock::time_point(Clock::duration(ns)); }

  /// The earliest of the node's deadlines. relaxed loads: the timestamps are written under
  /// the shard lock (exclusive, or shared for time-to-idle, which only moves forward) and
  /// read either under it or by maintenance, which re-checks under the lock before acting.
  int64_t deadline(NodeId id) const {
    const std::atomic<int64_t>* t = times(id);
    int64_t d = kNever;
    if (ttl_slot_ >= 0) d = std::min(d, t[ttl_slot_].load(std::memory_order_relaxed));
    if (tti_slot_ >= 0) d = std::min(d, t[tti_slot_].load(std::memory_order_relaxed));
    if (custom_slot_ >= 0) d = std::min(d, t[custom_slot_].load(std::memory_order_relaxed));
    return d;
  }
  bool is_expired(NodeId id, int64_t now) const { return expires_ && now >= deadline(id); }

  /// is_expired(), and if so for good: a call that finds an entry expired seals the
  /// deadlines that readers move (time-to-idle, the per-entry one) when they are what
  /// expired it, so that no reader can bring the entry back by extending them. Without the
  /// seal, a reader that read the clock before the deadline and reached the entry after
  /// it (preempted in between) found it live by its own clock and moved time-to-idle on:
  /// an entry that contains_key(), for_each() or get() had found expired was returned
  /// again, with no write, and never reported (found by a review). A reader's extension
  /// and a seal are compare-exchanges of the same word, so one of them comes first: the
  /// seal (the reader then reports the entry absent, on_read_locked()) or the extension
  /// (the deadline is then not passed, and the entry is live for this call too).
  /// Time-to-live is never moved by readers: expired by it is for good already.
  /// Costs nothing on the live path: the seal is attempted only once is_expired() holds.
  bool expired_for_good(NodeId id, int64_t now) const {
    if (!is_expired(id, now)) return false;
    std::atomic<int64_t>* t = times(id);
    // relaxed, here and below: the race is on each word alone (its modification order
    // decides it); what the entry holds is published by the shard lock, as ever.
    if (ttl_slot_ >= 0 && t[ttl_slot_].load(std::memory_order_relaxed) <= now) return true;
    bool expired = false;
    for (const int slot : {tti_slot_, custom_slot_}) {
      if (slot < 0) continue;
      int64_t d = t[slot].load(std::memory_order_relaxed);
      while (d <= now && d != kSealed && !t[slot].compare_exchange_weak(d, kSealed, std::memory_order_relaxed)) {
      }
      expired = expired || d <= now;  // sealed now (d kept its passed value), or before
    }
    return expired;
  }

  std::optional<Clock::duration> remaining(NodeId id, int64_t now) const {
    const int64_t d = times(id)[custom_slot_].load(std::memory_order_relaxed);  // relaxed: under the shard lock
    if (d == kNever) return std::nullopt;
    if (d == kSealed) return Clock::duration::zero();  // sealed by another reader since ours looked
    return Clock::duration(d - now);
  }

  static int64_t deadline_after(int64_t now, std::optional<Clock::duration> d) {
    return d ? saturating_add(now, std::max<int64_t>(d->count(), 0)) : kNever;
  }

  /// Sets the timestamps of a node just written. Under the shard's exclusive lock.
  /// `custom` is the per-entry deadline computed by the caller (it may throw, so it is
  /// computed before anything changes).
  void stamp_write(NodeId id, int64_t now, int64_t custom) {
    std::atomic<int64_t>* t = times(id);
    // relaxed: see deadline().
    if (ttl_slot_ >= 0) t[ttl_slot_].store(saturating_add(now, config_.time_to_live->count()), std::memory_order_relaxed);
    if (tti_slot_ >= 0) t[tti_slot_].store(saturating_add(now, config_.time_to_idle->count()), std::memory_order_relaxed);
    if (custom_slot_ >= 0) t[custom_slot_].store(custom, std::memory_order_relaxed);
  }

  /// A read hit under the shard's shared lock: moves time-to-idle and the per-entry
  /// deadline. The Expiry hook runs first: if it throws, nothing has changed.
  /// Concurrent readers may race here. Time-to-idle only moves forward (a reader whose
  /// clock read is older than another's must not shorten the entry's life, nor move the
  /// deadline before the one the timer wheel has: the wheel would fire late). For the
  /// per-entry deadline any reader's value is a valid outcome; the last one to lower it (in
  /// the deadline's modification order) reschedules the wheel after its exchange, so the
  /// wheel never ends later than the deadline.
  /// kBroughtForward: the per-entry Expiry brought the deadline forward, and the timer
  /// wheel, which has a later one, must be told (reschedule_now()). kFoundSealed: another call
  /// found the entry expired and sealed a deadline (expired_for_good()) since this reader
  /// found it live by its own clock reading: the read reports the entry absent.
  enum class ReadOutcome { kLive, kBroughtForward, kFoundSealed };
  ReadOutcome on_read_locked(NodeId id, Node& n, int64_t now) {
    if (!expires_) return ReadOutcome::kLive;
    std::atomic<int64_t>* t = times(id);
    ReadOutcome outcome = ReadOutcome::kLive;
    if (custom_slot_ >= 0) {
      auto d = config_.expiry->expire_after_read(n.key, n.value, to_time(now), remaining(id, now));
      if (d) {
        const int64_t after = deadline_after(now, d);
        // A compare-exchange, not a load then a store: each reader must compare with the
        // value its own store replaced. With a separate load, a reader could miss that
        // another had raised the deadline (and rescheduled the wheel to it) in between, and
        // leave the wheel later than the deadline it stored (a review's reproducer: expired
        // at 15 s, removed at 2000 s). Never over a seal. relaxed: see deadline().
        int64_t before = t[custom_slot_].load(std::memory_order_relaxed);
        while (before != kSealed && !t[custom_slot_].compare_exchange_weak(before, after, std::memory_order_relaxed)) {
        }
        if (before == kSealed) return ReadOutcome::kFoundSealed;
        if (after < before) outcome = ReadOutcome::kBroughtForward;
      }
    }
    if (tti_slot_ >= 0) {
      std::atomic<int64_t>& idle = t[tti_slot_];
      const int64_t after = saturating_add(now, config_.time_to_idle->count());
      // A max, never a step back, and never over a seal. relaxed: the deadline publishes
      // nothing, and whoever acts on it (maintenance, a writer) holds the shard lock
      // exclusively, which orders our store.
      int64_t current = idle.load(std::memory_order_relaxed);
      while (current < after && current != kSealed &&
             !idle.compare_exchange_weak(current, after, std::memory_order_relaxed)) {
      }
      if (current == kSealed) return ReadOutcome::kFoundSealed;
    }
    return outcome;
  }

  /// A read brought a per-entry deadline forward. The read buffer is lossy, so the wheel
  /// learns it here, under the maintenance lock (blocking: this is rare, a read hook that
  /// shortens the time left), and the entry is removed by the first maintenance after
  /// its new deadline. A stale id only reschedules its next occupant to its own deadline.
  void reschedule_now(NodeId id) {
    if (ThreadMark::in(in_maintenance_, this)) {  // called under maintenance: this thread holds the lock
      maintenance_mu_.assert_held();
      reschedule_if_scheduled(id);
      return;
    }
    WriterLock<Mutex> lock(maintenance_mu_);
    reschedule_if_scheduled(id);
  }

  void reschedule_if_scheduled(NodeId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(maintenance_mu_) {
    if (wheel_->scheduled(id)) wheel_->schedule(id, deadline(id));
  }

  // ---- Compute (see compute()) ----------------------------------------------------------

  static NodeId live_or_none(NodeId id, bool expired) { return id != kNoNode && !expired ? id : kNoNode; }

  /// Reads `key` for a first, optimistic compute: the live entry's id (kNoNode if absent
  /// or expired), its value into `current`, the shard's write count into `writes`.
  NodeId read_for_compute(Shard& s, const K& key, uint64_t h, std::optional<V>& current, uint64_t& writes) {
    const int64_t now = expires_ ? now_ns() : 0;
    ReaderLock lock(s.mu);
    writes = s.writes;
    return copy_live_locked(s, key, h, now, current);
  }

  /// The live entry of `key` (kNoNode if absent or expired at `now`), its value copied
  /// into `current`. The copy may throw: nothing changed.
  NodeId copy_live_locked(Shard& s, const K& key, uint64_t h, int64_t now, std::optional<V>& current)
      ABSL_SHARED_LOCKS_REQUIRED(s.mu) {
    auto it = s.map.find(key, h);
    if (it == s.map.end() || expired_for_good(it->id, now)) return kNoNode;
    current.emplace(node_in(s.arena, it->id).value);
    return it->id;
  }

  /// Applies `op`, decided on `current` (the entry `seen`, or kNoNode), if `guard` passes
  /// in the write's or removal's critical section. nullopt: it did not, decide again.
  template <class Guard>
  std::optional<ComputeResult<V>> apply_compute(const K& key, uint64_t h, NodeId seen, std::optional<V>& current,
                                                ComputeOp<V> op, Guard& guard) {
    using Action = typename ComputeOp<V>::Action;
    switch (op.action()) {
      case Action::kNop:
        return ComputeResult<V>{seen == kNoNode ? ComputeOutcome::kStillAbsent : ComputeOutcome::kUnchanged,
                                std::move(current)};
      case Action::kRemove: {
        if (seen == kNoNode) return ComputeResult<V>{ComputeOutcome::kStillAbsent, std::nullopt};
        std::optional<V> removed = remove_with(key, NoRemoveHook{}, guard);
        if (!removed) return std::nullopt;  // the entry read is no longer there
        return ComputeResult<V>{ComputeOutcome::kRemoved, std::move(removed)};
      }
      case Action::kPut:
        break;
    }
    std::optional<V> result(*op.value());  // a copy to return; may throw: nothing changed
    Notifications out;
    int64_t units = 0;
    bool applied = false;
    try {
      applied = write(K(key), std::move(*op.value()), h, out, units, NoWriteHook{}, guard);
    } catch (...) {
      deliver(out);  // what a failed replacement displaced (see write())
      after_write(units);
      throw;
    }
    if (!applied) return std::nullopt;
    deliver(out);
    after_write(units);
    return ComputeResult<V>{seen == kNoNode ? ComputeOutcome::kInserted : ComputeOutcome::kReplaced, std::move(result)};
  }

  /// Takes `key`'s compute turn, waiting for the turns before it to end.
  std::shared_ptr<Flight> take_compute_turn(Shard& s, const K& key) {
    auto mine = std::make_shared<Flight>();
    for (;;) {
      std::shared_ptr<Flight> busy;
      {
        WriterLock<SharedMutex> lock(s.mu);
        std::shared_ptr<Flight>& slot = s.loading[key][kCompute];
        if (!in_flight(slot)) {
          slot = mine;
          return mine;
        }
        busy = slot;
      }
      busy->done.wait(false);
    }
  }

  /// Ends a turn and wakes the computes waiting for it (they take the shard lock next).
  /// Does not throw (it runs in a destructor too): if the key's Hash or Eq throws, the
  /// turn stays in its slot, done (see in_flight()).
  void end_compute_turn_locked(Shard& s, const K& key, Flight& turn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    try {
      clear_flight_locked(s, key, kCompute);
    } catch (...) {
    }
    turn.done.store(true);
    turn.done.notify_all();
  }

  /// Ends a turn whose decision did not take effect (nop, or an exception); one that did
  /// ended in its guard.
  void end_compute_turn(Shard& s, const K& key, Flight& turn, bool ended) {
    if (ended) return;
    WriterLock<SharedMutex> lock(s.mu);
    end_compute_turn_locked(s, key, turn);
  }

  /// Reads `key` in its compute turn `turn`, as read_for_compute() does, and clears the
  /// turn's conflict mark.
  NodeId read_in_compute_turn(Shard& s, const K& key, uint64_t h, Flight& turn, std::optional<V>& current) {
    const int64_t now = expires_ ? now_ns() : 0;
    WriterLock<SharedMutex> lock(s.mu);  // exclusive: the conflict mark is written under it
    turn.conflict = false;
    return copy_live_locked(s, key, h, now, current);  // if it throws, the turn ends
  }

  /// A write or removal of `key` (a compute's too, if not in its turn): a compute of the
  /// key in its turn, between its read and its effect, must read again.
  void note_write_during_compute_locked(Shard& s, const K& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    auto it = s.loading.find(key);
    if (it != s.loading.end() && it->second[kCompute]) it->second[kCompute]->conflict = true;
  }

  /// The keys whose compute function this thread is running, innermost first: a write,
  /// removal or compute of one of them from inside its function would make that compute
  /// decide forever or wait for itself, so it throws std::logic_error instead (before
  /// anything changes). One thread-local load per write when no compute runs.
  struct ComputingKey {
    ComputingKey(const CacheCore& c, const K& k, uint64_t hash) : core(&c), key(&k), h(hash), outer(innermost) {
      innermost = this;
    }
    ~ComputingKey() { innermost = outer; }
    ComputingKey(const ComputingKey&) = delete;
    ComputingKey& operator=(const ComputingKey&) = delete;
    const CacheCore* core;
    const K* key;
    uint64_t h;
    const ComputingKey* outer;
    static inline thread_local const ComputingKey* innermost = nullptr;

    /// While it lives, the thread runs no compute function as far as the list can tell.
    struct Suspend {
      Suspend() : saved(innermost) { innermost = nullptr; }
      ~Suspend() { innermost = saved; }
      Suspend(const Suspend&) = delete;
      Suspend& operator=(const Suspend&) = delete;
      const ComputingKey* saved;
    };
  };

  void refuse_inside_own_compute(const K& key, uint64_t h) const {
    for (const ComputingKey* c = ComputingKey::innermost; c != nullptr; c = c->outer) {
      if (c->core == this && c->h == h && eq_(*c->key, key)) {
        throw std::logic_error("streamcache: a compute()'s function wrote, removed or computed its own key");
      }
    }
  }

  enum class Claim { kHit, kJoined, kLed };

  /// The look under the shard lock that decides a load: a live value (a hit after all,
  /// put in `hit`: loaded by someone since the caller's first look, and a read like any
  /// other for time-to-idle and the Expiry hook), or the key's flight of `kind` to join,
  /// or a new one the caller leads and must end (finish_load(), end_flight()). Counts
  /// the hit or miss (see load()).
  Claim claim_load(const K& key, uint64_t h, LoadKind kind, std::optional<V>& hit, std::shared_ptr<Flight>& flight) {
    Shard& s = shard_for(h);
    Claim claim = Claim::kHit;
    NodeId brought_forward = kNoNode;
    {
      const int64_t now = expires_ ? now_ns() : 0;
      WriterLock<SharedMutex> lock(s.mu);
      auto it = s.map.find(key, h);
      // Exclusive: no reader extends a deadline meanwhile (on_read_locked() finds none
      // sealed), but the seal keeps readers with older clock readings from doing so later.
      if (it != s.map.end() && !expired_for_good(it->id, now)) {
        Node& n = node(it->id);
        hit.emplace(n.value);
        if (on_read_locked(it->id, n, now) == ReadOutcome::kBroughtForward) brought_forward = it->id;
        stats_->add(kHits);
      } else {
        stats_->add(kMisses);
        auto& slot = s.loading[key][kind];
        if (in_flight(slot)) {
          flight = slot;
          claim = Claim::kJoined;
        } else {
          slot = flight = std::make_shared<Flight>();
          flight->leader = std::this_thread::get_id();
          claim = Claim::kLed;
        }
      }
    }
    if (brought_forward != kNoNode) reschedule_now(brought_forward);  // outside the shard lock
    return claim;
  }

  /// Ends a flight the caller leads (end_flight()), then delivers what its write displaced
  /// and accounts it: only once the flight has ended, since a listener may load the key.
  void finish_load(const K& key, uint64_t h, LoadKind kind, Flight& flight) {
    Notifications out;
    int64_t units = 0;
    end_flight(key, h, kind, flight, out, units);
    deliver(out);
    after_write(units);
  }

  /// Ends a flight the caller leads, whose outcome (value, or error / status, or neither)
  /// is set: caches the value, counts the load, and wakes the waiters. A value the cache
  /// refuses to take (the weigher, an Expiry hook or V's copy threw) becomes the error.
  /// Appends to `out` and adds to `units` what the caller must deliver and account
  /// (after_write()) once it leads no flight any more. Does not throw: the waiters are
  /// always woken.
  void end_flight(const K& key, uint64_t h, LoadKind kind, Flight& flight, Notifications& out, int64_t& units) {
    int64_t written = 0;  // what write() logged, even if it threw (see there)
    if (flight.value) {
      try {
        write(K(key), V(*flight.value), h, out, written);
      } catch (...) {
        flight.value.reset();
        flight.error = std::current_exception();
      }
    }
    units += written;
    stats_->add(flight.value ? kLoadSuccesses : kLoadFailures);
    try {
      Shard& s = shard_for(h);
      WriterLock<SharedMutex> lock(s.mu);
      clear_flight_locked(s, key, kind);
    } catch (...) {
      // The key's Hash or Eq threw: the slot keeps this flight, done (see in_flight()).
    }
    flight.done.store(true, std::memory_order_release);  // release: publishes the outcome to the waiters' acquire
    flight.done.notify_all();
  }

  /// Ends a key's load or compute turn of kind `kind` in Shard::loading.
  void clear_flight_locked(Shard& s, const K& key, LoadKind kind) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    auto it = s.loading.find(key);
    if (it == s.loading.end()) return;
    it->second[kind].reset();
    if (std::all_of(it->second.begin(), it->second.end(), [](const auto& f) { return !f; })) s.loading.erase(it);
  }

  // ---- Write path ----------------------------------------------------------------------

  uint32_t weigh(const K& key, const V& value) const {
    return config_.weigher ? config_.weigher(key, value) : 1;
  }

  /// Inserts or replaces. Notifications for what it displaced are appended to `out`.
  /// Sets `units` to the pending units of the event it logged (see pending_units()), 0 if
  /// none. If it throws, the cache is unchanged, except when replacing a value whose move
  /// assignment threw and then putting the old value back threw too: the entry is then
  /// taken out (old value in `out`, kRemove logged and in `units`); the caller must still
  /// deliver `out` and account `units`.
  /// `on_write(extra, key, value)` runs under the shard lock once the entry is written
  /// (also for a value never kept, with a scratch NodeExtra, followed by the extension's
  /// removed_locked(..., kSize)); it must not throw.
  /// Returns false, changing nothing, if `guard` refuses (see NoGuard). Counts in
  /// Shard::writes and marks a compute of the key in its turn (see compute()).
  template <class OnWrite = NoWriteHook, class Guard = NoGuard>
  bool write(K key, V value, uint64_t h, Notifications& out, int64_t& units, OnWrite&& on_write = {},
             Guard&& guard = {}) {
    static_assert(!Ext::kOrderEpochs ||
                      std::is_convertible_v<std::invoke_result_t<OnWrite&, typename Ext::NodeExtra&, const K&, const V&>,
                                            uint64_t>,
                  "with Ext::kOrderEpochs, write through insert_with() with a hook returning the entry's order key");
    if (ComputingKey::innermost != nullptr) refuse_inside_own_compute(key, h);
    const uint32_t weight = weigh(key, value);  // user code: outside the lock
    const int64_t now = expires_ ? now_ns() : 0;
    Shard& s = shard_for(h);
    const uint64_t max_weight = max_weight_.load(std::memory_order_relaxed);  // relaxed: see max_weight_
    const bool too_heavy = weight > max_weight || max_weight == 0;
    WriterLock<SharedMutex> lock(s.mu);
    units = 0;
    // Before anything changes: room for the event every path below logs once the entry is
    // written (and, with an extension, its seq published), where a failed push_back would
    // leave a written entry unknown to the policy and the call throwing after its effect.
    if (s.log.size() == s.log.capacity()) s.log.reserve(std::max<size_t>(16, 2 * s.log.size()));
    if constexpr (Ext::kOrderEpochs) {
      // Before anything changes: these may throw, placing the entry afterwards must not.
      if (s.spare_marker == kNoNode) s.spare_marker = allocate_locked(s, h);
      if (s.epoch_markers.size() == s.epoch_markers.capacity()) s.epoch_markers.reserve(2 * s.epoch_markers.size() + 2);
    }
    auto it = s.map.find(key, h);
    if constexpr (kGuarded<Guard>) {
      const bool found = it != s.map.end();
      if (!guard(found ? it->id : kNoNode, found && is_expired(it->id, now))) return false;
    }
    if (!s.loading.empty()) note_write_during_compute_locked(s, key);
    ++s.writes;
    if (it != s.map.end()) {
      const NodeId id = it->id;
      Node& n = node(id);
      const bool expired = is_expired(id, now);
      if (too_heavy) {
        // Caffeine's semantics: the old value is replaced, the new one never kept.
        s.map.erase(it);
        retire_locked(s, id, n, expired ? RemovalCause::kExpired : RemovalCause::kReplaced, out);
        units = pending_units(EventKind::kRemove);
      } else {
        int64_t custom = kNever;
        if (custom_slot_ >= 0) {
          custom = expired ? deadline_after(now, config_.expiry->expire_after_create(key, value, to_time(now)))
                           : update_deadline(id, n, value, now);
        }
        const RemovalCause cause = expired ? RemovalCause::kExpired : RemovalCause::kReplaced;
        // Room first: a push_back that failed after taking the old value would lose it.
        if (config_.listener) out.reserve(out.size() + 1);
        if constexpr (std::is_nothrow_move_assignable_v<V>) {
          if (config_.listener) out.emplace_back(n.key, std::move(n.value), cause);
          n.value = std::move(value);
        } else {
          replace_value_locked(s, it, id, n, value, cause, out, units);
        }
        stats_->add(expired ? kEvictionsExpired : kReplacements);
        stamp_write(id, now, custom);
        link_written_locked(s, id, n, /*linked=*/true, on_write);
        s.log.push_back(WriteEvent{id, weight, static_cast<uint32_t>(h), EventKind::kUpdate});
        mark_dirty(id);
        units = pending_units(EventKind::kUpdate);
        return true;
      }
    } else if (!too_heavy) {
      const int64_t custom = custom_slot_ >= 0
          ? deadline_after(now, config_.expiry->expire_after_create(key, value, to_time(now)))
          : kNever;
      const NodeId id = allocate_locked(s, h);
      Node& n = node(id);
      new (&n.key) K(std::move(key));
      try {
        new (&n.value) V(std::move(value));
      } catch (...) {
        n.key.~K();
        s.free_locals.push_back(codec_.local_of(id));
        throw;
      }
      n.alive = true;
      n.read_epoch.store(0, std::memory_order_relaxed);  // relaxed: a hint (see applied_this_epoch()); a reused node must not inherit it
      stamp_write(id, now, custom);
      try {
        s.map.insert(Slot{id});
      } catch (...) {
        destroy_entry(n);
        s.free_locals.push_back(codec_.local_of(id));
        throw;
      }
      link_written_locked(s, id, n, /*linked=*/false, on_write);
      s.log.push_back(WriteEvent{id, weight, static_cast<uint32_t>(h), EventKind::kAdd});
      mark_dirty(id);
      units = pending_units(EventKind::kAdd);
      return true;
    }
    // Heavier than the whole capacity: never kept, reported once as evicted for size.
    typename Ext::NodeExtra scratch{};
    on_write(scratch, static_cast<const K&>(key), static_cast<const V&>(value));
    ext_.removed_locked(scratch, static_cast<const K&>(key), static_cast<const V&>(value), RemovalCause::kSize);
    stats_->add(kEvictionsSize);
    if (config_.listener) out.push_back(Notification{std::move(key), std::move(value), RemovalCause::kSize});
    return true;
  }

  /// write()'s replacement of a live entry's value, for a V whose move assignment may
  /// throw (the old value would be gone into `out`, the entry left with a value in an
  /// unknown state). The old value is moved aside first; if the assignment throws it is
  /// put back and the exception rethrown: the cache is unchanged. If putting it back
  /// throws too, the entry is taken out, its old value reported once with `cause`, `units`
  /// set for the kRemove logged, and the assignment's exception rethrown.
  void replace_value_locked(Shard& s, typename decltype(Shard::map)::iterator it, NodeId id, Node& n, V& value,
                            RemovalCause cause, Notifications& out, int64_t& units)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    // The old value goes aside into its notification (room reserved by the caller) or,
    // without a listener, a local. Either may throw: nothing changed yet.
    std::optional<V> local;
    if (config_.listener) {
      out.emplace_back(n.key, std::move(n.value), cause);
    } else {
      local.emplace(std::move(n.value));
    }
    V& old = config_.listener ? out.back().value : *local;
    try {
      n.value = std::move(value);
    } catch (...) {
      const std::exception_ptr error = std::current_exception();
      n.value.~V();
      try {
        new (&n.value) V(std::move(old));
        if (config_.listener) out.pop_back();  // put back: nothing to report
      } catch (...) {
        // No value left in the node: take the entry out as retire_locked() does; the old
        // value's notification is already in `out`.
        s.map.erase(it);
        if constexpr (Ext::kWriteOrder) unlink_order_locked(s, id);
        count_removal(cause);
        n.alive = false;
        n.key.~K();
        s.log.push_back(WriteEvent{id, 0, 0, EventKind::kRemove});
        mark_dirty(id);
        units = pending_units(EventKind::kRemove);
      }
      std::rethrow_exception(error);
    }
  }

  int64_t update_deadline(NodeId id, Node& n, const V& value, int64_t now) {
    const int64_t current = times(id)[custom_slot_].load(std::memory_order_relaxed);  // relaxed: under the lock
    auto d = config_.expiry->expire_after_update(n.key, value, to_time(now), remaining(id, now));
    return d ? deadline_after(now, d) : current;
  }

  NodeId allocate_locked(Shard& s, uint64_t h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    const uint32_t shard = static_cast<uint32_t>((h >> 56) & (shards_.size() - 1));
    uint32_t local;
    if (!s.free_locals.empty()) {
      local = s.free_locals.back();
      s.free_locals.pop_back();
    } else {
      if (s.next_local > codec_.max_local()) throw std::length_error("streamcache::Cache: shard is full (2^32 entries)");
      local = s.next_local++;
      s.arena.ensure(local);
    }
    return codec_.make(shard, local);
  }

  // ---- Write order and its epoch markers -------------------------------------------------
  //
  // With Ext::kOrderEpochs, entries keep only the low 32 bits of their order key and the
  // list carries the high bits in epoch markers. Invariants (under the shard lock):
  //  E1. Every entry in `order` has an epoch marker before it, and the nearest one holds
  //      the high 32 bits of the entry's order key. (Keys grow along the list: a write
  //      moves its entry to the tail with a key above every other in the shard.)
  //  E2. No epoch marker is directly followed by another: one whose entries are all gone
  //      is freed when the two meet, so the markers a shard holds are about one per epoch
  //      its entries span, plus at most one per cursor marker that sat between two.
  //  E3. `epoch_markers` holds the ids of the list's epoch markers in list order, `epoch`
  //      the last one's epoch, and `spare_marker` a free record (or kNoNode). A write
  //      reserves room for one more marker in both before it changes anything.

  /// Once write() has stored entry `id`: it goes to the tail of the write order (if one is
  /// kept; `linked`: it is in the list already) and `on_write` runs, whose order key then
  /// places it in its epoch (Ext::kOrderEpochs).
  template <class OnWrite>
  void link_written_locked(Shard& s, NodeId id, Node& n, bool linked, OnWrite& on_write)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    if constexpr (Ext::kWriteOrder) {
      if (!linked) {
        s.order.push_back(id);
      } else if (s.order.back() != id) {
        unlink_order_locked(s, id);
        s.order.push_back(id);
      }
    }
    if constexpr (Ext::kOrderEpochs) {
      place_in_epoch_locked(s, id, on_write(n.extra, static_cast<const K&>(n.key), static_cast<const V&>(n.value)));
    } else {
      on_write(n.extra, static_cast<const K&>(n.key), static_cast<const V&>(n.value));
    }
  }

  /// Unlinks `id` (an entry or a cursor marker) from the shard's write order, freeing an
  /// epoch marker that this leaves directly in front of another (E2).
  void unlink_order_locked(Shard& s, NodeId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    if constexpr (!Ext::kOrderEpochs) {
      s.order.remove(id);
    } else {
      const NodeId before = s.order.prev(id);
      const NodeId after = s.order.next(id);
      s.order.remove(id);
      if (before != kNoNode && after != kNoNode && node(before).marker == MarkerKind::kEpoch &&
          node(after).marker == MarkerKind::kEpoch) {
        s.order.remove(before);  // never the last marker: another one follows it
        s.epoch_markers.erase(std::find(s.epoch_markers.begin(), s.epoch_markers.end(), before));  // few (E2)
        free_marker_locked(s, before);
      }
    }
  }

  /// Returns a marker that is out of the list for reuse: it never reached a log, a read
  /// buffer or the policy, so its id is free at once. Cannot fail (callers are removing
  /// entries): if the free list cannot grow, the record stays unused.
  void free_marker_locked(Shard& s, NodeId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    node(id).marker = MarkerKind::kNone;
    if constexpr (Ext::kOrderEpochs) {
      if (s.spare_marker == kNoNode) {
        s.spare_marker = id;
        return;
      }
    }
    try {
      s.free_locals.push_back(codec_.local_of(id));
    } catch (...) {  // std::bad_alloc: one record unused until the cache goes
    }
  }

  /// Keeps E1 for entry `id`, just written and now at the tail, whose order key is `key`.
  /// Cannot fail: a new marker is the one write() allocated ahead.
  void place_in_epoch_locked(Shard& s, NodeId id, uint64_t key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    const auto epoch = static_cast<uint32_t>(key >> 32);
    if (!s.epoch_markers.empty() && s.epoch == epoch) return;
    s.epoch = epoch;
    const NodeId before = s.order.prev(id);
    if (before != kNoNode && !s.epoch_markers.empty() && before == s.epoch_markers.back()) {
      // The last epoch has no entry left, and no cursor stands after its marker (it would
      // be between the two): the marker can change epochs.
      Ext::set_marker_epoch(node(before).extra, epoch);
      return;
    }
    const NodeId m = std::exchange(s.spare_marker, kNoNode);
    node(m).marker = MarkerKind::kEpoch;
    Ext::set_marker_epoch(node(m).extra, epoch);
    s.order.insert_after(before, m);
    s.epoch_markers.push_back(m);  // room reserved by write(): cannot throw
  }

  /// Takes a node out of service after the caller erased it from the map: counts it,
  /// hands its key and value to the listener, destroys them, and logs the removal so
  /// maintenance unlinks and frees the node (invariant 2).
  void retire_locked(Shard& s, NodeId id, Node& n, RemovalCause cause, Notifications& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    if constexpr (Ext::kWriteOrder) unlink_order_locked(s, id);
    count_removal(cause);
    notify(out, std::move(n.key), std::move(n.value), cause);
    destroy_entry(n);
    s.log.push_back(WriteEvent{id, 0, 0, EventKind::kRemove});  // see notify() on exceptions
    mark_dirty(id);
  }

  /// Appends a notification for an entry that already left the map, whose removal must
  /// complete (a half-removed node would stay in the policy with its weight forever). So
  /// it does not throw: if moving (or, for types whose moves may throw, copying) the key or
  /// value, or growing `out`, throws, that one notification is dropped. Types with noexcept
  /// moves lose nothing but to a failed allocation.
  void notify(Notifications& out, K&& key, V&& value, RemovalCause cause) noexcept {
    if (!config_.listener) return;
    try {
      out.emplace_back(std::move_if_noexcept(key), std::move_if_noexcept(value), cause);
    } catch (...) {
    }
  }

  void count_removal(RemovalCause cause) {
    switch (cause) {
      case RemovalCause::kExpired: stats_->add(kEvictionsExpired); break;
      case RemovalCause::kExplicit: stats_->add(kInvalidations); break;
      case RemovalCause::kReplaced: stats_->add(kReplacements); break;
      case RemovalCause::kSize: stats_->add(kEvictionsSize); break;
    }
  }

  static void destroy_entry(Node& n) {
    n.alive = false;
    n.key.~K();
    n.value.~V();
  }

  void mark_dirty(NodeId id) {
    const uint32_t shard = codec_.shard_of(id);
    std::atomic<uint64_t>& word = dirty_[shard / 64];
    const uint64_t bit = uint64_t{1} << (shard % 64);
    // Load first: under load the bit is usually already set, and a plain load does not
    // bounce the line between writers. relaxed: the shard lock orders the log itself;
    // the bit only says "look at this shard".
    if ((word.load(std::memory_order_relaxed) & bit) == 0) word.fetch_or(bit, std::memory_order_relaxed);
  }

  void deliver(Notifications& out) {
    if (!config_.listener) return;
    // A listener is no part of a compute function running on this thread (it may be
    // delivering what the function's own writes evicted): it may write the computed key.
    const typename ComputingKey::Suspend not_computing;
    for (const Notification& n : out) {
      try {
        config_.listener(n.key, n.value, n.cause);
      } catch (...) {
        // A throwing listener must not break the cache or lose other notifications.
      }
    }
    out.clear();
  }

  /// How much a logged event weighs in pending_units_. Maintenance is worth running
  /// as soon as an event may have grown the cache (so that a single-threaded user never
  /// sees it over its bound), but updates and removals shrink nothing that waits: running
  /// maintenance for each of them cost a write two extra shard locks, the maintenance
  /// lock and a clock read (write 100%, 1 thread, a quarter of them adds: 2.8 -> 3.3 M
  /// ops/s, docs/notes/cache_benchmarks.md "Session 6"). So an add, and an update when a
  /// weigher may have made the entry heavier, is a whole batch on its own; any other
  /// event 1/kWriteBatch.
  int64_t pending_units(EventKind kind) const {
    if (kind == EventKind::kAdd || (kind == EventKind::kUpdate && config_.weigher)) return kWriteBatch;
    return 1;
  }

  /// Called after a write logged events worth `units` (pending_units_ sums the units of
  /// the events logged and not yet through a whole maintenance pass, which subtracts them
  /// after its evictions, so the backpressure bound stays true).
  void after_write(int64_t units) {
    if (units == 0) return;  // nothing logged (a value heavier than the whole cache)
    // seq_cst: the increment and the fence below form the store-load handshake with
    // maintain_and_unlock(): either our try-lock succeeds, or the holder sees our units
    // after it unlocks (see there).
    const int64_t pending = pending_units_.fetch_add(units) + units;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    // A listener writing back from maintenance's delivery: the maintenance that delivered
    // drains it once the delivery is over (maintain_and_unlock(), run_pending_tasks()).
    if (!may_run_maintenance()) return;
    if (pending >= kMaxPendingUnits) {
      maintenance_mu_.lock();
      maintain_and_unlock();
    } else if (pending >= kWriteBatch && maintenance_mu_.try_lock()) {
      maintain_and_unlock();
    }
  }

  // ---- Maintenance ---------------------------------------------------------------------

  /// Whether this thread may run this cache's maintenance now: not while it holds the
  /// maintenance lock (in_maintenance_), nor while it delivers maintenance's notifications
  /// (delivering_: the delivering maintenance drains what a listener logs, and running
  /// maintenance from inside a listener could recurse without bound). Called only on slow
  /// paths (a write's after_write(), a read that filled a stripe).
  bool may_run_maintenance() const {
    return !ThreadMark::in(in_maintenance_, this) && !ThreadMark::in(delivering_, this);
  }

  void maintain_and_unlock() ABSL_UNLOCK_FUNCTION(maintenance_mu_) {
    for (int round = 0;; ++round) {
      Notifications out;
      maintain_locked(out);
      const uint64_t ticket = begin_delivery_locked(out);
      maintenance_mu_.unlock();
      // Outside the lock: a listener may wait for a thread that needs the lock.
      deliver_from_maintenance(out, ticket);
      // Events logged by writers whose try-lock failed while we held the lock are seen
      // here (their fetch_add + fence precede their failed try-lock, which precedes our
      // unlock), and so are the events our own listener calls logged during the delivery
      // (after_write() left them to us; they precede this load in program order): pick
      // up a batch's worth rather than strand it until the next write. Bounded, so one
      // unlucky thread does not do everyone's maintenance forever.
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (round >= 2 || pending_units_.load() < kWriteBatch || !maintenance_mu_.try_lock()) return;
    }
  }

  /// One maintenance pass. The notifications for what it evicted or expired are appended
  /// to `out`, for the caller to deliver once it released the lock.
  void maintain_locked(Notifications& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(maintenance_mu_) {
    // A mark in in_maintenance_ means "this thread holds maintenance_mu_" (reschedule_now()
    // relies on it); code under our lock (an extension's hook) may use another cache of this
    // type, whose mark stacks on ours (see ThreadMark).
    const ThreadMark mark(in_maintenance_, this);
    drain_reads();
    drain_writes();
    bias_quiet_shards();
    if (expires_) expire(now_ns(), out);
    evict(out);
    // The applied events leave pending_units_ only now that their adds are evicted down to
    // the bound: released before evict(), they let writers add another 256 adds' worth
    // while this pass still had 256 to evict (a review measured 1514 entries at a bound
    // of 1000 + 256 + writers). seq_cst (default): pairs with the increment in after_write().
    pending_units_.fetch_sub(std::exchange(applied_units_, 0));
    // relaxed: weighted_size() is a statistic. A thread whose run_pending_tasks() ran this
    // pass (or a later one) reads it after taking the maintenance lock, which orders it;
    // from a listener, where run_pending_tasks() does nothing, it may read an older figure.
    weighted_size_.store(policy_->weighted_size(), std::memory_order_relaxed);
  }

  /// Marks this thread as inside a scope of a cache (holding its maintenance lock, or
  /// delivering its maintenance's notifications) for the mark's lifetime. The marks of one
  /// kind form a per-thread stack, since scopes nest across caches of the same type (a
  /// listener of A writes to B, whose listener calls A), and in() looks through all of it:
  /// A is still delivering while B's listener runs.
  class ThreadMark {
   public:
    ThreadMark(const ThreadMark*& top, const CacheCore* cache) : top_(top), outer_(top), cache_(cache) { top_ = this; }
    ~ThreadMark() { top_ = outer_; }
    ThreadMark(const ThreadMark&) = delete;
    ThreadMark& operator=(const ThreadMark&) = delete;

    /// Whether `cache` has a mark on the stack that starts at `top`.
    static bool in(const ThreadMark* top, const CacheCore* cache) {
      for (const ThreadMark* m = top; m != nullptr; m = m->outer_) {
        if (m->cache_ == cache) return true;
      }
      return false;
    }

   private:
    const ThreadMark*& top_;
    const ThreadMark* const outer_;
    const CacheCore* const cache_;
  };

  /// Numbers this pass's delivery, if it has notifications, so that run_pending_tasks()
  /// can wait for it (0: nothing to wait for).
  uint64_t begin_delivery_locked(const Notifications& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(maintenance_mu_) {
    if (out.empty()) return 0;
    const uint64_t ticket = ++passes_;
    return deliveries_.begin(ticket) ? ticket : 0;
  }

  /// Delivers what maintenance collected, without its lock, marking this thread as
  /// delivering for this cache (see may_run_maintenance()). A listener of ours may make
  /// another cache of this type deliver: its mark stacks on ours (see ThreadMark).
  void deliver_from_maintenance(Notifications& out, uint64_t ticket) {
    if (out.empty()) return;
    {
      const ThreadMark mark(delivering_, this);
      deliver(out);
    }
    deliveries_.end(ticket);
  }

  /// Shards no writer locked for a whole sweep period get biased reader locks (see
  /// SharedMutex): their readers then enter without a locked instruction, until the next
  /// writer pays one heavy barrier (~20 us, which the shard's readers wait out too) to
  /// take that away; with expiry, expire() is such a writer even in read-only phases.
  /// Each sweep allows at most one such barrier per shard, so the period adapts: it
  /// doubles (up to 1 s) after a sweep that finds a bias revoked, so that steady trickles
  /// of writes pay at most one barrier per shard per second, and halves (down to 10 ms)
  /// after one that finds none, so that a read-only phase gets its bias soon. Real time,
  /// not the cache's clock: this is about CPU cost, and a ManualClock that never moves
  /// must not stop it.
  void bias_quiet_shards() ABSL_EXCLUSIVE_LOCKS_REQUIRED(maintenance_mu_) {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_bias_sweep_) return;
    bool revoked = false;
    for (const auto& shard : shards_) revoked |= shard->mu.bias_if_quiet().revoked;
    bias_sweep_period_ = revoked ? std::min(2 * bias_sweep_period_, kMaxBiasSweepPeriod)
                                 : std::max(bias_sweep_period_ / 2, kMinBiasSweepPeriod);
    next_bias_sweep_ = now + bias_sweep_period_;
  }

  void drain_reads() ABSL_EXCLUSIVE_LOCKS_REQUIRED(maintenance_mu_) {
    const uint8_t epoch = read_epoch_.load(std::memory_order_relaxed);  // relaxed: only maintenance writes it
    const auto id_of = [](uint64_t rec) { return static_cast<NodeId>((rec & 0xFFFFFFFFu) - 1); };
    const auto hash_of = [](uint64_t rec) { return policy_hash(static_cast<uint32_t>(rec >> 32)); };
    const auto prefetch = [&](uint64_t rec) {
      maintenance_mu_.assert_held();  // for the thread-safety analysis: lambdas are not tracked
      policy_->prefetch_access(id_of(rec), hash_of(rec));
    };
    reads_->drain(prefetch, [&](uint64_t rec) {
      maintenance_mu_.assert_held();  // as above
      const NodeId id = id_of(rec);
      Node& n = node(id);
      // relaxed: only maintenance writes a live node's stamp. A read of this entry was
      // already applied this epoch: this record was made before readers could see that
      // (several readers of a hot entry record it at once). Dropping it keeps the policy
      // at one read per entry per epoch, and rewriting the stamp would cost every reader
      // of the entry a miss on its line for nothing.
      if (stamp_covers(n.read_epoch.load(std::memory_order_relaxed), epoch)) return;
      const uint64_t hash = hash_of(rec);
      // A record made before its node was freed and reused for another key (the retry in
      // get() runs outside the shard lock) is dropped: applied to the new key, it would
      // count a read it never had and, for a saturated old key, stamp it epochs ahead.
      if (policy_->holds(id, hash)) {
        const bool saturated = policy_->on_access(id, hash) >= FrequencySketch::kMaxFrequency;
        // relaxed: a hint for readers, see applied_this_epoch()
        n.read_epoch.store(saturated ? epoch_after(epoch, kMaxEpochsAhead - 1) : epoch, std::memory_order_relaxed);
      }
      // No timer work here: a deadline a read moved later is rescheduled by expire()
      // when the old one fires, and one moved earlier was rescheduled by the reader.
    });
    // The epoch is measured in hits (recorded or not), so that it ends even when
    // deduplication records almost nothing.
    const uint64_t hits = stats_->sum(kHits);
    if (hits - epoch_start_hits_ >= std::max<uint64_t>(kMinReadsPerEpoch, policy_->entry_count() / kEpochDivisor)) {
      epoch_start_hits_ = hits;
      read_epoch_.store(epoch_after(epoch, 1), std::memory_order_relaxed);  // relaxed: a hint, as above
    }
  }

  void drain_writes() ABSL_EXCLUSIVE_LOCKS_REQUIRED(maintenance_mu_) {
    for (size_t w = 0; w < dirty_words_; ++w) {
      if (dirty_[w].load(std::memory_order_relaxed) == 0) continue;  // relaxed: see mark_dirty()
      uint64_t bits = dirty_[w].exchange(0, std::memory_order_relaxed);
      while (bits != 0) {
        const size_t shard = w * 64 + static_cast<size_t>(std::countr_zero(bits));
        bits &= bits - 1;
        swap_log(shard);
        apply_log(shard);
      }
    }
  }

  /// Takes the shard's log and gives the shard back the ids freed since the last swap
  /// (invariant 3: everything logged before those frees is now in our hands).
  void swap_log(size_t shard) ABSL_EXCLUSIVE_LOCKS_REQUIRED(maintenance_mu_) {
    Shard& s = *shards_[shard];
    scratch_log_.clear();
    // Readers never look at the log or the free list: exclude only the other writers.
    WriterOnlyLock lock(s.mu);
    std::swap(scratch_log_, s.log);
    auto& freed = pending_free_[shard];
    s.free_locals.insert(s.free_locals.end(), freed.begin(), freed.end());
    freed.clear();
  }

  void apply_log(size_t shard) ABSL_EXCLUSIVE_LOCKS_REQUIRED(maintenance_mu_) {
    for (const WriteEvent& e : scratch_log_) applied_units_ += pending_units(e.kind);
    for (const WriteEvent& e : scratch_log_) {
      switch (e.kind) {
        case EventKind::kAdd:
          policy_->on_insert(e.id, policy_hash(e.hash32), e.weight);
          if (expires_) wheel_->schedule(e.id, deadline(e.id));
          break;
        case EventKind::kUpdate:
          if (!policy_->contains(e.id)) break;  // evicted before this event was drained
          policy_->on_update(e.id, policy_hash(e.hash32), e.weight);
          if (expires_) wheel_->schedule(e.id, deadline(e.id));
          break;
        case EventKind::kRemove:
          policy_->on_remove(e.id);
          wheel_->deschedule(e.id);
          pending_free_[shard].push_back(codec_.local_of(e.id));
          break;
      }
    }
  }

  void expire(int64_t now, Notifications& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(maintenance_mu_) {
    wheel_->advance(now, [&](NodeId id) {
      maintenance_mu_.assert_held();  // for the thread-safety analysis
      Shard& s = *shards_[codec_.shard_of(id)];
      WriterLock<SharedMutex> lock(s.mu);
      Node& n = node(id);
      if (!n.alive) return;  // removed by a writer; its kRemove event will free it
      if (!is_expired(id, now)) {
        wheel_->schedule(id, deadline(id));  // time-to-idle or a per-entry deadline moved
        return;
      }
      s.map.erase(Slot{id});
      policy_->on_remove(id);
      evict_locked(s, id, n, RemovalCause::kExpired, out);
    });
  }

  void evict(Notifications& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(maintenance_mu_) {
    policy_->evict_if_needed([&](NodeId id) {
      maintenance_mu_.assert_held();  // for the thread-safety analysis
      Shard& s = *shards_[codec_.shard_of(id)];
      WriterLock<SharedMutex> lock(s.mu);
      Node& n = node(id);
      if (!n.alive) return false;  // removed by a writer; its kRemove event will free it
      s.map.erase(Slot{id});
      wheel_->deschedule(id);
      evict_locked(s, id, n, RemovalCause::kSize, out);
      return true;
    });
  }

  /// Maintenance's counterpart of retire_locked(): the node is freed by us, not by a
  /// logged event (invariant 2).
  void evict_locked(Shard& s, NodeId id, Node& n, RemovalCause cause, Notifications& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(maintenance_mu_, s.mu) {
    if constexpr (Ext::kWriteOrder) unlink_order_locked(s, id);
    ext_.removed_locked(n.extra, static_cast<const K&>(n.key), static_cast<const V&>(n.value), cause);
    count_removal(cause);
    notify(out, std::move(n.key), std::move(n.value), cause);
    destroy_entry(n);
    pending_free_[codec_.shard_of(id)].push_back(codec_.local_of(id));
  }

  void validate() const {
    auto negative = [](const std::optional<Clock::duration>& d) { return d && d->count() < 0; };
    if (negative(config_.time_to_live)) throw std::invalid_argument("streamcache::Cache: time_to_live must not be negative");
    if (negative(config_.time_to_idle)) throw std::invalid_argument("streamcache::Cache: time_to_idle must not be negative");
    if (config_.shards != 0 && (!std::has_single_bit(config_.shards) || config_.shards > kMaxShards)) {
      throw std::invalid_argument("streamcache::Cache: shards must be 0 (automatic) or a power of two up to 256");
    }
    if (config_.clock_set && !config_.clock) throw std::invalid_argument("streamcache::Cache: clock must not be null");
  }

  // ---- State ---------------------------------------------------------------------------

  const CacheConfig<K, V> config_;
  Ext ext_;
  std::shared_ptr<Clock> clock_;
  Hash hasher_;
  Eq eq_;
  int ttl_slot_ = -1;
  int tti_slot_ = -1;
  int custom_slot_ = -1;
  bool expires_ = false;
  NodeIdCodec codec_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<std::atomic<uint64_t>[]> dirty_;  // one bit per shard with a non-empty log
  size_t dirty_words_ = 0;
  std::unique_ptr<ReadBuffer> reads_;
  std::unique_ptr<StripedCounters<kStatCount>> stats_;
  std::atomic<uint8_t> read_epoch_{1};  // see applied_this_epoch(); never 0; written once per epoch
  // The bound, for writes to refuse what can never fit (write()); the policy holds its own
  // copy, under the maintenance lock. Relaxed loads and stores: it publishes nothing, and a
  // write that races set_max_weight() may be judged against either bound: an entry the new
  // bound does not admit is then evicted (kSize) by the next maintenance, as any excess is.
  std::atomic<uint64_t> max_weight_{config_.max_weight};

  // Everything above is read by every get() and written (almost) never. What follows is
  // written all the time, by writers or by maintenance, so it starts on lines of its own:
  // sharing a line with the fields above cost every read a miss on whichever core did not
  // run the last maintenance.
  alignas(kCacheLine) std::atomic<int64_t> pending_units_{0};
  // Units of the events this pass applied, released from pending_units_ at its end.
  int64_t applied_units_ ABSL_GUARDED_BY(maintenance_mu_) = 0;
  alignas(kCacheLine) std::atomic<uint64_t> weighted_size_{0};
  uint64_t epoch_start_hits_ ABSL_GUARDED_BY(maintenance_mu_) = 0;
  Mutex maintenance_mu_;
  std::optional<TinyLfuPolicy<PolicyHookOf>> policy_ ABSL_GUARDED_BY(maintenance_mu_);
  std::optional<TimerWheel<WheelHookOf>> wheel_ ABSL_GUARDED_BY(maintenance_mu_);
  std::vector<std::vector<uint32_t>> pending_free_ ABSL_GUARDED_BY(maintenance_mu_);
  std::vector<WriteEvent> scratch_log_ ABSL_GUARDED_BY(maintenance_mu_);
  std::chrono::steady_clock::time_point next_bias_sweep_ ABSL_GUARDED_BY(maintenance_mu_){};
  std::chrono::milliseconds bias_sweep_period_ ABSL_GUARDED_BY(maintenance_mu_) = kMinBiasSweepPeriod;
  uint64_t passes_ ABSL_GUARDED_BY(maintenance_mu_) = 0;  // maintenance passes that had notifications
  DeliveryTracker deliveries_;

  // The caches whose maintenance lock this thread holds, so that code running under it
  // that calls back into such a cache does not take the lock again.
  static inline thread_local const ThreadMark* in_maintenance_ = nullptr;
  // The caches whose maintenance's notifications this thread is delivering, so that a
  // listener calling back into such a cache does not recurse into its maintenance (nor
  // wait, in run_pending_tasks(), for the delivery it is part of).
  static inline thread_local const ThreadMark* delivering_ = nullptr;
  // Hits this thread did not record (see applied_this_epoch()), for get()'s maintenance trigger.
  static inline thread_local uint32_t skipped_reads_ = 0;
};

}  // namespace streamcache::detail
