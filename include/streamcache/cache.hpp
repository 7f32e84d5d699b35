// A concurrent, bounded cache with expiry, admission-filtered eviction and loaders.
#pragma once

#include <absl/hash/hash.h>
#include <absl/status/statusor.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "streamcache/cache_types.hpp"
#include "streamcache/clock.hpp"
#include "streamcache/detail/cache_core.hpp"

namespace streamcache {

template <class K, class V, class Hash = absl::Hash<K>, class Eq = std::equal_to<K>>
class Cache;

/// Configures and builds a Cache. Every setter returns the builder; build() validates
/// and throws std::invalid_argument naming the offending option. One builder may build
/// several independent caches.
template <class K, class V, class Hash = absl::Hash<K>, class Eq = std::equal_to<K>>
class CacheBuilder {
 public:
  /// The size bound: a number of entries, or the total weight when a weigher is set.
  /// 0 keeps nothing (every insert is reported to the listener as kSize). Unbounded
  /// when not called.
  CacheBuilder& max_capacity(uint64_t n) {
    config_.max_weight = n;
    return *this;
  }
  /// Pre-sizes the hash tables for about `n` entries. At most 2^32 minus the number of
  /// shards (the most entries a cache can address).
  CacheBuilder& initial_capacity(size_t n) {
    config_.initial_capacity = n;
    return *this;
  }
  /// Entries expire this long after they were inserted or last replaced.
  CacheBuilder& time_to_live(Clock::duration d) {
    config_.time_to_live = d;
    return *this;
  }
  /// Entries expire this long after they were last read or written.
  CacheBuilder& time_to_idle(Clock::duration d) {
    config_.time_to_idle = d;
    return *this;
  }
  /// Per-entry deadlines; combines with time_to_live / time_to_idle (earliest wins).
  CacheBuilder& expiry(std::shared_ptr<Expiry<K, V>> e) {
    config_.expiry = std::move(e);
    return *this;
  }
  /// Weighs entries for max_capacity. Called on the writing thread, outside any lock.
  /// An entry of weight 0 is never evicted for size; one heavier than max_capacity is
  /// never kept.
  CacheBuilder& weigher(std::function<uint32_t(const K&, const V&)> w) {
    config_.weigher = std::move(w);
    return *this;
  }
  /// Called exactly once for every entry that leaves the cache, with the cause; never
  /// under a lock of the cache, so it may call back into it. Removals by a caller's own
  /// operation (replace, remove, invalidate) are reported on that thread before the
  /// operation returns; evictions and expirations by whichever thread runs maintenance,
  /// right after it released the maintenance lock. Exceptions it throws are swallowed:
  /// the cache and the other notifications are unaffected. It must not wait for a thread
  /// inside run_pending_tasks() or set_max_capacity(), which wait for this delivery: for
  /// instance by joining a get_with() whose loader calls run_pending_tasks().
  CacheBuilder& eviction_listener(std::function<void(const K&, const V&, RemovalCause)> l) {
    config_.listener = std::move(l);
    return *this;
  }
  /// The time source (default Clock::system()). Must not be null.
  CacheBuilder& clock(std::shared_ptr<Clock> c) {
    config_.clock = std::move(c);
    config_.clock_set = true;
    return *this;
  }
  /// Number of map shards: a power of two up to 256, or 0 for automatic (16 per core,
  /// between 16 and 64). More shards mean less lock contention between writers of
  /// different keys and a few hundred bytes more per shard.
  CacheBuilder& shards(size_t n) {
    config_.shards = n;
    return *this;
  }

  /// Builds a cache; throws std::invalid_argument for an invalid option.
  Cache<K, V, Hash, Eq> build() const { return Cache<K, V, Hash, Eq>(config_); }

 private:
  detail::CacheConfig<K, V> config_;
};

/// A concurrent cache bounded by entry count or weight, with time-to-live,
/// time-to-idle and per-entry expiry, W-TinyLFU eviction, single-flight loaders and an
/// eviction listener. Every member is safe to call from any thread.
///
/// Consistency: the map is strongly consistent (a get() that starts after an insert()
/// returned sees it, unless evicted or expired since). Eviction and the listener's
/// kSize / kExpired notifications are applied in batches by "maintenance", which runs
/// amortized on reads and writes and on run_pending_tasks(); between two maintenance
/// runs the size may exceed max_capacity by the writes not yet applied (at most 256
/// pending adds before writers start doing maintenance themselves; a single thread never
/// sees it exceeded). Updates and removals are applied in batches of 16 at most. An
/// expired entry is invisible at once and removed by the next maintenance.
///
/// Memory ordering: everything a thread did before insert(k, v) returned
/// happens-before anything done after a get(k) on another thread returns that value.
template <class K, class V, class Hash, class Eq>
class Cache {
  using Core = detail::CacheCore<K, V, Hash, Eq>;

 public:
  static CacheBuilder<K, V, Hash, Eq> builder() { return {}; }

  Cache(Cache&&) noexcept = default;
  Cache& operator=(Cache&&) noexcept = default;
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;

  /// The value for `key`, or nullopt. Never returns an expired entry. Counts a hit or
  /// a miss, and a read for time-to-idle and the eviction policy.
  std::optional<V> get(const K& key) { return core_->get(key); }

  /// Whether `key` is present and not expired; not counted as a read.
  bool contains_key(const K& key) const { return core_->contains_key(key); }

  /// Inserts, or replaces (the old value is reported as kReplaced, or kExpired if it
  /// had expired).
  void insert(K key, V value) { core_->insert(std::move(key), std::move(value)); }

  /// The cached value, or the value `init()` returns, which is then cached. Concurrent
  /// calls for the same absent key run `init` once; the others wait and receive its
  /// value. If `init` throws, every waiter gets the exception, nothing is cached and the
  /// next call tries again. `init` runs outside any lock and may use the cache for other
  /// keys. A load of a key that this thread is already loading (from `init`, or from a
  /// listener that `init`'s own writes reach) would wait for itself: it throws
  /// std::logic_error instead.
  template <class F>
  V get_with(const K& key, F&& init) {
    std::optional<V> hit;
    auto flight = core_->load(key, Core::kLoadValue, [&](typename Core::Flight& f) { f.value.emplace(init()); }, hit);
    if (hit) return std::move(*hit);
    if (flight->error) std::rethrow_exception(flight->error);
    return *flight->value;
  }

  /// Like get_with, for loaders that fail with a status: `init()` returns
  /// absl::StatusOr<V>; an error is returned to every waiter and nothing is cached.
  template <class F>
  absl::StatusOr<V> try_get_with(const K& key, F&& init) {
    std::optional<V> hit;
    auto flight = core_->load(key, Core::kLoadStatus, [&](typename Core::Flight& f) {
      absl::StatusOr<V> r = init();
      if (r.ok()) {
        f.value.emplace(*std::move(r));
      } else {
        f.status = r.status();
      }
    }, hit);
    if (hit) return std::move(*hit);
    if (flight->error) std::rethrow_exception(flight->error);
    if (!flight->value) return flight->status;
    return *flight->value;
  }

  /// Like get_with, for loaders that may find nothing: `init()` returns
  /// std::optional<V>; nullopt is returned to every waiter and nothing is cached.
  template <class F>
  std::optional<V> optionally_get_with(const K& key, F&& init) {
    std::optional<V> hit;
    auto flight = core_->load(key, Core::kLoadOptional, [&](typename Core::Flight& f) {
      std::optional<V> r = init();
      if (r) f.value.emplace(std::move(*r));
    }, hit);
    if (hit) return hit;
    if (flight->error) std::rethrow_exception(flight->error);
    return flight->value;
  }

  /// The values of `keys`, in their order, the missing ones loaded in one call
  /// (Caffeine's getAll() with a bulk loader, for a loader that fetches many keys at once
  /// more cheaply than one at a time). `load_all(std::span<const K> missing)` gets the
  /// keys that are neither cached nor being loaded already, and returns (key, value)
  /// pairs: a std::vector<std::pair<K, V>>, a map, or any range of pairs. Their values
  /// are cached and returned (moved out of a container returned by value; copied from a
  /// reference or a view). A key it leaves out is nullopt and nothing is cached for it
  /// (as with optionally_get_with). A pair for a key it was not asked for is cached too.
  /// Single-flight with optionally_get_with() and other get_all() calls: a key one of
  /// them is loading is waited for, not loaded again, and is not passed to `load_all`.
  /// This call waits only after its own loads ended, so bulk loads of overlapping keys
  /// never wait for each other in a cycle. If `load_all` throws, every caller waiting
  /// for one of its keys gets the exception, nothing it returned is cached, and the
  /// exception propagates. Otherwise a value the cache refuses (the weigher threw, say)
  /// fails its key, or its extra pair, alone: the call throws, after everything else
  /// was cached, the first failure in `keys` order, else the first extra pair's.
  /// `load_all` runs outside any lock and may use the cache for other keys; a key this
  /// thread is already loading (one it was given, say) fails with std::logic_error
  /// instead of waiting for itself, as in get_with().
  /// Statistics: a hit or a miss per key, and a load success or failure per key loaded.
  template <class F>
  std::vector<std::optional<V>> get_all(std::span<const K> keys, F&& load_all) {
    return core_->load_all(keys, std::forward<F>(load_all));
  }

  /// get_all() for a braced list of keys: `cache.get_all({1, 2, 3}, load)`.
  template <class F>
  std::vector<std::optional<V>> get_all(std::initializer_list<K> keys, F&& load_all) {
    return core_->load_all(std::span<const K>(keys.begin(), keys.size()), std::forward<F>(load_all));
  }

  /// Atomically reads and changes one key (Caffeine's compute(), Moka's
  /// `and_compute_with`). `f(current)` gets the key's value (nullopt when absent or
  /// expired) and returns a ComputeOp: put(v) inserts or replaces, remove() removes,
  /// nop() leaves it. Atomic with respect to every other operation on the key: `f` runs
  /// outside any lock, and its decision takes effect only if nothing changed the key
  /// meanwhile (no write, removal, eviction or expiry, another compute's included);
  /// otherwise `f` runs again on the new value. So `f` may run more than once, and plain
  /// writes never wait for it. (A compute that lost such a race waits for the key's other
  /// racing computes instead of racing them again.)
  /// Returns what happened and the value cached (or removed). A put is a write like
  /// insert() (kReplaced for the old value, expire_after_create or _update, time-to-live
  /// and time-to-idle restart); a remove is reported as kExplicit. A compute counts no
  /// hit or miss and its read is no read for time-to-idle or the eviction policy.
  /// If `f` throws, nothing changes and the exception propagates. V's move constructor
  /// must not throw (checked at compile time): once the change is made, the result only
  /// moves. `f` may read the cache and write other keys; writing, removing, loading or
  /// computing its own key from inside it throws std::logic_error (before anything
  /// changes) instead of looping or waiting for itself. `f` must not wait for another
  /// thread that computes the same key, and two computes whose functions compute each
  /// other's keys may wait for each other forever, as two nested locks taken in opposite
  /// orders would (a compute that lost a race waits for the key's turn).
  template <class F>
  ComputeResult<V> compute(const K& key, F&& f) {
    return core_->compute(key, std::forward<F>(f));
  }

  /// compute() that always puts: `f(current)` returns the new value, which is returned
  /// (Moka's `and_upsert_with`). For a counter: `upsert_with(k, [](auto& n) { return
  /// n.value_or(0) + 1; })`.
  template <class F>
  V upsert_with(const K& key, F&& f) {
    return *core_->compute(key, [&](const std::optional<V>& current) { return ComputeOp<V>::put(f(current)); }).value;
  }

  /// Removes `key`, returning its value (nullopt if absent or expired). Reported as
  /// kExplicit (kExpired if it had expired).
  std::optional<V> remove(const K& key) { return core_->remove(key); }

  /// remove() without the result.
  void invalidate(const K& key) { core_->remove(key); }

  /// Removes every entry. In-flight loads still insert their values when they finish.
  void invalidate_all() { core_->invalidate_all(); }

  /// Removes every entry for which `pred(key, value)` is true. `pred` runs under a
  /// shard's lock and must not call into the cache.
  template <class Pred>
  void invalidate_if(Pred&& pred) { core_->invalidate_if(std::forward<Pred>(pred)); }

  /// Calls `f(key, value)` for the entries present (and not expired), shard by shard.
  /// Weakly consistent: concurrent writes may or may not be seen. Each shard is copied
  /// under its lock and visited outside it, so `f` may use the cache.
  template <class F>
  void for_each(F&& f) const { core_->for_each(std::forward<F>(f)); }

  /// Entries in the map, including expired ones not yet removed by maintenance; exact
  /// after run_pending_tasks() when no other thread writes.
  uint64_t entry_count() const { return core_->entry_count(); }

  /// Total weight as of the last maintenance (entries, when there is no weigher).
  uint64_t weighted_size() const { return core_->weighted_size(); }

  /// Applies all buffered reads and writes, expires, evicts, and delivers the resulting
  /// notifications before returning; it also waits for notifications that other threads'
  /// earlier maintenance collected and is still delivering. So when it returns, every
  /// notification for an operation completed before the call has been delivered. A no-op
  /// when called from the eviction listener during maintenance's delivery: that
  /// maintenance applies what the listener did once the delivery is over. (A listener
  /// must therefore not wait for a thread that is inside run_pending_tasks(), or inside
  /// set_max_capacity(), which runs it.)
  void run_pending_tasks() { core_->run_pending_tasks(); }

  CacheStats stats() const { return core_->stats(); }

  /// The configuration in force: max_capacity (nullopt when unbounded), whether it counts
  /// weights, time_to_live, time_to_idle, whether an Expiry is set, the shard count.
  CachePolicy policy() const {
    const detail::CacheConfig<K, V>& config = core_->config();
    CachePolicy p;
    if (const uint64_t max = core_->max_weight(); max != detail::kUnboundedWeight) p.max_capacity = max;
    p.weighted = static_cast<bool>(config.weigher);
    p.time_to_live = config.time_to_live;
    p.time_to_idle = config.time_to_idle;
    p.per_entry_expiry = config.expiry != nullptr;
    p.shards = core_->shard_count();
    return p;
  }

  /// Changes the bound at run time (Caffeine's `policy().eviction().setMaximum()`): entries,
  /// or total weight with a weigher; UINT64_MAX is unbounded; any cache may be resized, one
  /// built unbounded too. 0 refuses every later write (kSize) and evicts every entry but
  /// those of weight 0, which size eviction never takes.
  ///
  /// Shrinking evicts the excess (kSize) as the policy chooses: when the call returns, what
  /// was written before it is within the new bound and the notifications are delivered, as
  /// after run_pending_tasks() (so a listener must not wait for a thread inside this call
  /// either). Called from a listener during maintenance's delivery, the bound changes at once
  /// and that maintenance evicts the excess once its delivery is over (within its limit of
  /// passes: a listener that shrinks the bound again at every delivery leaves the last
  /// excess for later). Writes made while it runs are bounded as usual (see the class
  /// comment). The admission window keeps the share of the cache the policy's adaptation
  /// has given it.
  ///
  /// Memory: evicted keys and values are destroyed (what they own is freed), but the nodes
  /// that held them and the hash tables stay at the largest count they reached, reused and
  /// never returned: sizeof(K) + sizeof(V) plus about 60 bytes per entry of that peak.
  void set_max_capacity(uint64_t n) { core_->set_max_weight(n); }

 private:
  friend class CacheBuilder<K, V, Hash, Eq>;
  explicit Cache(const detail::CacheConfig<K, V>& config) : core_(std::make_unique<Core>(config)) {}

  std::unique_ptr<Core> core_;
};

}  // namespace streamcache
