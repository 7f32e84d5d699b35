// Trace replay for hit-ratio measurements: every implementation sits behind the same
// `double replay(const std::vector<uint64_t>& trace, uint64_t size)` signature, so a new
// column (the concurrent Cache, say) is one more ReplayColumn.
//
// Replay model (as in ../shared/anchors.md): for each key, get; on a miss, insert.
// Hit ratio = hits / accesses, cold misses included.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "streamcache/cache.hpp"
#include "streamcache/detail/hash_mix.hpp"
#include "streamcache/detail/intrusive_list.hpp"
#include "streamcache/detail/tiny_lfu_policy.hpp"

namespace streamcache::bench {

using ReplayFn = double (*)(const std::vector<uint64_t>& trace, uint64_t size);

struct ReplayColumn {
  const char* name;
  ReplayFn replay;
};

/// A fixed, well-mixed 64-bit hash (murmur3's finalizer). Deterministic on purpose: absl::Hash is
/// seeded per process, which would make replays differ (slightly) from run to run.
inline uint64_t replay_hash(uint64_t key) { return streamcache::detail::mix64(key); }

/// The hash functor of the Cache column: replay_hash, so that the cache's shards, ids and sketch
/// counters (hence its hit ratio) are the same in every run, unlike with absl::Hash.
struct FixedHash {
  size_t operator()(uint64_t key) const { return static_cast<size_t>(replay_hash(key)); }
};

/// Exact LRU: the baseline column.
inline double replay_lru(const std::vector<uint64_t>& trace, uint64_t size) {
  if (trace.empty()) return 0;
  struct Node {
    uint64_t key;
    detail::ListHook links;
  };
  std::vector<Node> nodes;
  absl::flat_hash_map<uint64_t, detail::NodeId> index;
  auto links_of = [&nodes](detail::NodeId id) -> detail::ListHook& { return nodes[id].links; };
  detail::IntrusiveList<decltype(links_of)> order(links_of);
  uint64_t hits = 0;
  for (const uint64_t key : trace) {
    if (auto it = index.find(key); it != index.end()) {
      ++hits;
      order.move_to_back(it->second);
      continue;
    }
    if (size == 0) continue;
    detail::NodeId id;
    if (index.size() < size) {
      id = static_cast<detail::NodeId>(nodes.size());
      nodes.push_back(Node{key, {}});
    } else {  // full: reuse the least recently used node
      id = order.pop_front();
      index.erase(nodes[id].key);
      nodes[id].key = key;
    }
    index.emplace(key, id);
    order.push_back(id);
  }
  return static_cast<double>(hits) / static_cast<double>(trace.size());
}

/// A single-threaded stand-in for the concurrent Cache that drives TinyLfuPolicy the way the
/// cache does: nodes in an arena addressed by NodeId (freed ids are reused), a map key -> id,
/// on_access for a hit, on_insert for a miss followed by evict_if_needed() (the cache runs its
/// maintenance after writes). Unit weights, so `size` is the entry capacity.
class PolicySimulator {
 public:
  struct Node {
    uint64_t key = 0;
    detail::TinyLfuHook hook;
  };
  struct HookOf {
    std::vector<Node>* nodes;
    detail::TinyLfuHook& operator()(detail::NodeId id) const { return (*nodes)[id].hook; }
  };

  explicit PolicySimulator(uint64_t size, const detail::TinyLfuTuning& tuning = {})
      : policy_(size, HookOf{&nodes_}, tuning) {}
  PolicySimulator(const PolicySimulator&) = delete;
  PolicySimulator& operator=(const PolicySimulator&) = delete;

  /// One access of the replay model; returns whether it hit.
  bool access(uint64_t key) {
    const uint64_t hash = replay_hash(key);
    if (auto it = index_.find(key); it != index_.end()) {
      policy_.on_access(it->second, hash);
      return true;
    }
    if (policy_.max_weight() == 0) return false;  // the cache keeps nothing
    detail::NodeId id;
    if (!free_.empty()) {
      id = free_.back();
      free_.pop_back();
    } else {
      id = static_cast<detail::NodeId>(nodes_.size());
      // The policy holds a pointer to the vector, not to its elements: growing is fine.
      nodes_.emplace_back();
    }
    nodes_[id].key = key;
    index_.emplace(key, id);
    policy_.on_insert(id, hash, 1);
    evict();
    return false;
  }

  /// A new size, as Cache::set_max_capacity() applies it: the policy's, then an eviction.
  void resize(uint64_t size) {
    policy_.set_max_weight(size);
    evict();
  }

  const detail::TinyLfuPolicy<HookOf>& policy() const { return policy_; }
  size_t size() const { return index_.size(); }

 private:
  void evict() {
    policy_.evict_if_needed([this](detail::NodeId victim) {
      index_.erase(nodes_[victim].key);
      free_.push_back(victim);
      return true;
    });
  }

  std::vector<Node> nodes_;
  std::vector<detail::NodeId> free_;
  absl::flat_hash_map<uint64_t, detail::NodeId> index_;
  detail::TinyLfuPolicy<HookOf> policy_;
};

inline double replay_tiny_lfu(const std::vector<uint64_t>& trace, uint64_t size) {
  if (trace.empty()) return 0;
  PolicySimulator sim(size);
  uint64_t hits = 0;
  for (const uint64_t key : trace) hits += sim.access(key) ? 1 : 0;
  return static_cast<double>(hits) / static_cast<double>(trace.size());
}

/// The real concurrent Cache, single-threaded: get; on a miss, insert. Its policy sees reads
/// in batches (a read stripe holds 32 records; maintenance runs after every insert and when a
/// stripe fills), as it does in production.
inline double replay_cache(const std::vector<uint64_t>& trace, uint64_t size) {
  if (trace.empty()) return 0;
  auto cache = Cache<uint64_t, uint64_t, FixedHash>::builder().max_capacity(size).build();
  uint64_t hits = 0;
  for (const uint64_t key : trace) {
    if (cache.get(key)) {
      ++hits;
    } else {
      cache.insert(key, key);
    }
  }
  return static_cast<double>(hits) / static_cast<double>(trace.size());
}

}  // namespace streamcache::bench
