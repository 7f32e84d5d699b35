// The vocabulary of the cache: removal causes, per-entry expiry, statistics, its policy,
// compute().
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

#include "streamcache/clock.hpp"

namespace streamcache {

/// Why an entry left the cache, as told to the eviction listener.
enum class RemovalCause {
  kExpired,   ///< its time-to-live, time-to-idle or per-entry deadline passed
  kExplicit,  ///< remove(), invalidate(), invalidate_if() or invalidate_all()
  kReplaced,  ///< insert() or a loader wrote a new value for its key
  kSize,      ///< evicted to respect max_capacity (or never kept: heavier than the capacity)
};

/// Per-entry expiry, like Moka's `Expiry` trait and Caffeine's `Expiry`. Each hook
/// returns how long the entry may live from `now`, or nullopt:
///  - for create, nullopt means "no per-entry deadline" (time_to_live and
///    time_to_idle, if configured, still apply);
///  - for read and update, nullopt means "keep the current per-entry deadline".
/// `remaining` is the current per-entry deadline minus `now`, nullopt when there is none.
///
/// The hooks run on the thread doing the operation while it holds the key's shard
/// lock: they must be thread-safe, fast, and must not call back into the cache. A hook
/// that throws makes the operation throw, and the cache is left unchanged.
template <class K, class V>
class Expiry {
 public:
  virtual ~Expiry() = default;

  virtual std::optional<Clock::duration> expire_after_create(const K& /*key*/, const V& /*value*/,
                                                             Clock::time_point /*now*/) {
    return std::nullopt;
  }
  virtual std::optional<Clock::duration> expire_after_read(const K& /*key*/, const V& /*value*/,
                                                           Clock::time_point /*now*/,
                                                           std::optional<Clock::duration> /*remaining*/) {
    return std::nullopt;
  }
  virtual std::optional<Clock::duration> expire_after_update(const K& /*key*/, const V& /*value*/,
                                                             Clock::time_point /*now*/,
                                                             std::optional<Clock::duration> /*remaining*/) {
    return std::nullopt;
  }
};

/// A snapshot of a cache's counters. The removal counters match the causes the eviction
/// listener is told: replacements = kReplaced, invalidations = kExplicit,
/// evictions_expired = kExpired, evictions_size = kSize.
struct CacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t load_successes = 0;
  uint64_t load_failures = 0;  ///< a loader that threw, returned an error status or nullopt
  uint64_t evictions_expired = 0;
  uint64_t evictions_size = 0;
  uint64_t invalidations = 0;
  uint64_t replacements = 0;

  /// hits / (hits + misses); 0 when there was no lookup.
  double hit_rate() const {
    const uint64_t lookups = hits + misses;
    return lookups == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(lookups);
  }
};

/// How a cache is configured, as of the call (Moka's `Policy`, Caffeine's `policy()`):
/// what the builder set, with max_capacity as changed by set_max_capacity() and the shard
/// count as chosen when it was automatic.
struct CachePolicy {
  std::optional<uint64_t> max_capacity;  ///< entries, or total weight with a weigher; nullopt: unbounded
  bool weighted = false;                 ///< a weigher is set: max_capacity bounds the total weight
  std::optional<Clock::duration> time_to_live;
  std::optional<Clock::duration> time_to_idle;
  bool per_entry_expiry = false;  ///< an Expiry is set
  size_t shards = 0;
};

/// What a compute() function decides for its key, given the current value: keep things
/// as they are, put a value (insert or replace), or remove the entry. Moka's
/// `compute::Op`; Caffeine's compute() says the same with a value or null.
template <class V>
class ComputeOp {
 public:
  enum class Action : uint8_t { kNop, kPut, kRemove };

  static ComputeOp nop() { return ComputeOp(Action::kNop, std::nullopt); }
  static ComputeOp put(V value) { return ComputeOp(Action::kPut, std::move(value)); }
  static ComputeOp remove() { return ComputeOp(Action::kRemove, std::nullopt); }

  Action action() const { return action_; }
  /// kPut: the value to write.
  std::optional<V>& value() { return value_; }

 private:
  ComputeOp(Action action, std::optional<V> value) : action_(action), value_(std::move(value)) {}
  Action action_;
  std::optional<V> value_;
};

/// What compute() did.
enum class ComputeOutcome : uint8_t {
  kInserted,     ///< the key was absent and now has the value put
  kReplaced,     ///< the key's value was replaced (the old one reported as kReplaced)
  kRemoved,      ///< the entry was removed (reported as kExplicit)
  kUnchanged,    ///< the key was present and the function chose kNop
  kStillAbsent,  ///< the key was absent and stays so (kNop or kRemove on an absent key)
};

/// compute()'s outcome and the value that goes with it: the value now cached (kInserted,
/// kReplaced, kUnchanged), the value removed (kRemoved), or nullopt (kStillAbsent). A put
/// heavier than the whole capacity is written as insert() writes it: kInserted or
/// kReplaced, but never kept, and reported to the listener as kSize at once.
template <class V>
struct ComputeResult {
  ComputeOutcome outcome;
  std::optional<V> value;
};

}  // namespace streamcache
