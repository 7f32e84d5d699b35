// The caches the Cache benchmarks compare against, and the one adapter interface through
// which every implementation (ours included) is driven, so that a benchmark body or the
// memory tool never special-cases an implementation.
//
// Adapter interface (uint64_t -> uint64_t, what the anchors measure):
//   static constexpr const char* kName;
//   explicit Adapter(uint64_t max_entries);
//   std::optional<uint64_t> get(uint64_t key);   // never inserts
//   void put(uint64_t key, uint64_t value);      // upsert
//   uint64_t increment(uint64_t key);            // atomic read-modify-write: +1 (0 if absent)
//   void settle();                               // finish buffered work (our maintenance)
//   uint64_t size();                             // entries held after settle()
#pragma once

#include <oneapi/tbb/concurrent_hash_map.h>

#include <chrono>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

#include "streamcache/cache.hpp"

namespace streamcache::bench {

/// The textbook thread-safe LRU: one std::mutex around a std::unordered_map from key to
/// a position in a std::list kept in recency order. A get moves the entry to the front;
/// a put upserts and evicts from the back when over the bound. This is what a cache
/// without a concurrent design costs; every operation, reads included, is serialized.
template <class K, class V>
class MutexLruCache {
 public:
  explicit MutexLruCache(size_t max_entries) : max_entries_(max_entries) { map_.reserve(max_entries + 1); }

  std::optional<V> get(const K& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    order_.splice(order_.begin(), order_, it->second);
    return it->second->second;
  }

  void put(const K& key, const V& value) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) {
      it->second->second = value;
      order_.splice(order_.begin(), order_, it->second);
      return;
    }
    order_.emplace_front(key, value);
    map_.emplace(key, order_.begin());
    if (map_.size() > max_entries_) {
      map_.erase(order_.back().first);
      order_.pop_back();
    }
  }

  /// put(key, f(current value or nullopt)) in one critical section; returns what it put.
  template <class F>
  V update(const K& key, F&& f) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) {
      V& value = it->second->second;
      value = f(std::optional<V>(value));
      order_.splice(order_.begin(), order_, it->second);
      return value;
    }
    order_.emplace_front(key, f(std::optional<V>()));
    map_.emplace(key, order_.begin());
    const V put = order_.front().second;
    if (map_.size() > max_entries_) {
      map_.erase(order_.back().first);
      order_.pop_back();
    }
    return put;
  }

  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return map_.size();
  }

 private:
  using Order = std::list<std::pair<K, V>>;
  const size_t max_entries_;
  std::mutex mu_;
  Order order_;                                                // front = most recent
  std::unordered_map<K, typename Order::iterator> map_;        // key -> its place in order_
};

// ---- Adapters --------------------------------------------------------------------------

/// Which expiry a streamcache::Cache is built with; the hour is long enough that nothing
/// expires during a run, so what shows is the bookkeeping cost (timestamps, timer wheel).
enum class Expiry { kNone, kTtl, kTtlTti };

template <Expiry kExpiry>
class StreamcacheAdapter {
 public:
  static constexpr const char* kName = kExpiry == Expiry::kNone  ? "streamcache"
                                       : kExpiry == Expiry::kTtl ? "streamcache+ttl"
                                                                 : "streamcache+ttl+tti";

  explicit StreamcacheAdapter(uint64_t max_entries) : cache_(build(max_entries)) {}

  std::optional<uint64_t> get(uint64_t key) { return cache_.get(key); }
  void put(uint64_t key, uint64_t value) { cache_.insert(key, value); }
  uint64_t increment(uint64_t key) {
    return cache_.upsert_with(key, [](const std::optional<uint64_t>& n) { return n.value_or(0) + 1; });
  }
  void settle() { cache_.run_pending_tasks(); }
  uint64_t size() { return cache_.entry_count(); }

 private:
  static Cache<uint64_t, uint64_t> build(uint64_t max_entries) {
    auto builder = Cache<uint64_t, uint64_t>::builder();
    builder.max_capacity(max_entries);
    if constexpr (kExpiry != Expiry::kNone) builder.time_to_live(std::chrono::hours(1));
    if constexpr (kExpiry == Expiry::kTtlTti) builder.time_to_idle(std::chrono::hours(1));
    return builder.build();
  }

  Cache<uint64_t, uint64_t> cache_;
};

/// tbb::concurrent_hash_map as its documentation shows it: const_accessor for lookups
/// (a shared bucket lock), insert with an accessor for upserts and read-modify-writes
/// (exclusive, held while the element changes). It has no bound and no eviction, so it is
/// the ceiling a concurrent map sets, not a cache.
class TbbMapAdapter {
 public:
  static constexpr const char* kName = "tbb_concurrent_hash_map";

  explicit TbbMapAdapter(uint64_t max_entries) : map_(static_cast<size_t>(max_entries)) {}

  std::optional<uint64_t> get(uint64_t key) {
    Map::const_accessor acc;
    if (!map_.find(acc, key)) return std::nullopt;
    return acc->second;
  }
  void put(uint64_t key, uint64_t value) {
    Map::accessor acc;
    map_.insert(acc, key);
    acc->second = value;
  }
  uint64_t increment(uint64_t key) {
    Map::accessor acc;
    if (map_.insert(acc, key)) acc->second = 0;  // a new element's value is value-initialised; say so
    return ++acc->second;
  }
  void settle() {}
  uint64_t size() { return map_.size(); }

 private:
  using Map = tbb::concurrent_hash_map<uint64_t, uint64_t>;
  Map map_;
};

class MutexLruAdapter {
 public:
  static constexpr const char* kName = "mutex_lru";

  explicit MutexLruAdapter(uint64_t max_entries) : lru_(static_cast<size_t>(max_entries)) {}

  std::optional<uint64_t> get(uint64_t key) { return lru_.get(key); }
  void put(uint64_t key, uint64_t value) { lru_.put(key, value); }
  uint64_t increment(uint64_t key) {
    return lru_.update(key, [](const std::optional<uint64_t>& n) { return n.value_or(0) + 1; });
  }
  void settle() {}
  uint64_t size() { return lru_.size(); }

 private:
  MutexLruCache<uint64_t, uint64_t> lru_;
};

}  // namespace streamcache::bench
