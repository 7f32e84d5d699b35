// A reference model of streamcache::Cache for the differential fuzzer: a std::map of
// entries with their deadlines, written for clarity rather than speed.
//
// The model is single-threaded and follows the contract in docs (API.md, section Cache):
//  - an entry is expired once now >= the earliest of its TTL, TTI and per-entry deadlines;
//  - get() returns the latest value of a live entry, and moves TTI and the per-entry
//    deadline (expire_after_read);
//  - replace / remove / invalidate* report kReplaced / kExplicit, or kExpired when the
//    entry had expired; an entry never kept (capacity 0, heavier than the capacity) is
//    reported once as kSize.
// Which entry the cache evicts for size, and when maintenance removes an expired entry,
// are the cache's choice. The model therefore holds what "may be present": it applies
// an operation's own effects, and then accepts the cache's maintenance notifications
// (kSize, kExpired) one by one when they are justified, removing those entries.
#pragma once

#include <streamcache/cache_types.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cache_fuzz {

using streamcache::RemovalCause;

/// A deadline that never comes; also what a saturated deadline becomes, so that a
/// per-entry deadline this far away counts as "none" (remaining = nullopt).
inline constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

inline int64_t saturating_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? kNever : std::numeric_limits<int64_t>::min();
  return r;
}

/// now + max(d, 0), or kNever without a duration. A negative duration means "already
/// due", as the cache treats it.
inline int64_t deadline_after(int64_t now, std::optional<int64_t> d) {
  return d ? saturating_add(now, std::max<int64_t>(*d, 0)) : kNever;
}

inline uint64_t mix(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t h = a * 0x9E3779B97F4A7C15ULL ^ b * 0xC2B2AE3D27D4EB4FULL ^ c * 0x165667B19E3779F9ULL;
  h ^= h >> 31;
  h *= 0xBF58476D1CE4E5B9ULL;
  h ^= h >> 29;
  return h;
}

inline const char* cause_name(RemovalCause c) {
  switch (c) {
    case RemovalCause::kExpired: return "kExpired";
    case RemovalCause::kExplicit: return "kExplicit";
    case RemovalCause::kReplaced: return "kReplaced";
    case RemovalCause::kSize: return "kSize";
  }
  return "?";
}

/// The weigher and the Expiry hooks, as pure functions of (key, value id, now,
/// remaining): the fuzzer's Cache calls them through its weigher / Expiry, and the
/// model calls them to predict deadlines. Durations are in nanoseconds; `unit` scales
/// them so that one input explores one range of the timer wheel.
struct Scenario {
  int64_t unit = 1'000'000;

  uint32_t weight(int key, uint32_t vid) const {
    // 0 (never evicted for size) and 16 (heavier than any bounded capacity we build).
    static constexpr uint32_t kWeights[8] = {1, 2, 1, 0, 3, 1, 4, 16};
    return kWeights[mix(static_cast<uint64_t>(key), vid, 7) % 8];
  }

  std::optional<int64_t> after_create(int key, uint32_t vid, int64_t now) const {
    const uint64_t h = mix(static_cast<uint64_t>(key), vid, static_cast<uint64_t>(now) ^ 1);
    switch (h % 8) {
      case 0:
      case 1: return std::nullopt;                             // no per-entry deadline
      case 2: return 0;                                        // due at once
      case 3: return std::numeric_limits<int64_t>::max();      // saturates: never
      case 4: return -unit;                                    // negative: due at once
      default: return static_cast<int64_t>(1 + (h >> 8) % 12) * unit;
    }
  }

  std::optional<int64_t> after_read(int key, uint32_t vid, int64_t now, std::optional<int64_t> remaining) const {
    const uint64_t h = mix(static_cast<uint64_t>(key), vid, static_cast<uint64_t>(now) ^ 2);
    switch (h % 6) {
      case 0:
      case 1:
      case 2: return std::nullopt;                             // keep the deadline
      case 3: return remaining ? std::optional<int64_t>(saturating_add(*remaining, unit)) : std::nullopt;
      case 4: return static_cast<int64_t>(1 + (h >> 8) % 4) * unit;
      default: return 0;                                       // this read was the last
    }
  }

  std::optional<int64_t> after_update(int key, uint32_t vid, int64_t now, std::optional<int64_t> remaining) const {
    const uint64_t h = mix(static_cast<uint64_t>(key), vid, static_cast<uint64_t>(now) ^ 3);
    switch (h % 6) {
      case 0:
      case 1: return std::nullopt;                             // keep the deadline
      case 2: return remaining ? remaining : std::optional<int64_t>(5 * unit);
      case 3: return 0;
      case 4: return static_cast<int64_t>(1 + (h >> 8) % 8) * unit;
      default: return int64_t{100} * 365 * 24 * 3600 * 1'000'000'000;  // 100 years
    }
  }
};

enum class Hook { kCreate, kRead, kUpdate };

/// One call of an Expiry hook, as the cache made it or as the model expects it.
struct HookCall {
  Hook hook;
  int key;
  uint32_t vid;
  int64_t now;
  std::optional<int64_t> remaining;
  bool operator==(const HookCall&) const = default;
};

/// One listener notification: the entry is identified by its key and its value id
/// (every value the fuzzer writes is unique).
struct Removal {
  int key;
  uint32_t vid;
  RemovalCause cause;
  bool operator==(const Removal&) const = default;
};

inline std::string to_string(const Removal& r) {
  return "(k" + std::to_string(r.key) + ", v" + std::to_string(r.vid) + ", " + cause_name(r.cause) + ")";
}

inline std::string to_string(const HookCall& c) {
  static constexpr const char* kNames[] = {"create", "read", "update"};
  std::string s = std::string(kNames[static_cast<int>(c.hook)]) + "(k" + std::to_string(c.key) + ", v" +
                  std::to_string(c.vid) + ", now=" + std::to_string(c.now) + ", remaining=";
  return s + (c.remaining ? std::to_string(*c.remaining) : std::string("none")) + ")";
}

struct ModelConfig {
  std::optional<uint64_t> capacity;  // nullopt: unbounded
  bool weigher = false;              // weights from Scenario::weight, else 1 per entry
  std::optional<int64_t> ttl;        // nanoseconds
  std::optional<int64_t> tti;
  bool expiry = false;               // per-entry deadlines from the Scenario hooks
};

class CacheModel {
 public:
  struct Entry {
    uint32_t vid = 0;
    uint32_t weight = 0;
    int64_t ttl_deadline = kNever;
    int64_t tti_deadline = kNever;
    int64_t custom_deadline = kNever;
  };

  CacheModel(ModelConfig config, Scenario scenario, int64_t now)
      : config_(config), scenario_(scenario), now_(now) {}

  void set_now(int64_t now) { now_ = now; }
  /// set_max_capacity(): later writes and evictions are judged by the new bound.
  void set_capacity(std::optional<uint64_t> capacity) { config_.capacity = capacity; }
  int64_t now() const { return now_; }
  const ModelConfig& config() const { return config_; }
  const std::map<int, Entry>& entries() const { return entries_; }

  bool expired(const Entry& e) const {
    return now_ >= std::min({e.ttl_deadline, e.tti_deadline, e.custom_deadline});
  }

  uint64_t total_weight() const {
    uint64_t w = 0;
    for (const auto& [key, e] : entries_) w += e.weight;
    return w;
  }

  // ---- Operations: each returns what the cache must return, and queues the removals
  // the operation itself must report and the Expiry calls it must make.

  bool contains_key(int key) const {
    auto it = entries_.find(key);
    return it != entries_.end() && !expired(it->second);
  }

  /// The live value, as compute() reads it: no hit or miss, no read for expiry.
  std::optional<uint32_t> peek(int key) const {
    auto it = entries_.find(key);
    if (it == entries_.end() || expired(it->second)) return std::nullopt;
    return it->second.vid;
  }

  std::optional<uint32_t> get(int key) {
    auto it = entries_.find(key);
    if (it == entries_.end() || expired(it->second)) {
      ++misses_;
      return std::nullopt;
    }
    ++hits_;
    Entry& e = it->second;
    if (config_.tti) e.tti_deadline = saturating_add(now_, *config_.tti);
    if (config_.expiry) {
      const auto d = call(Hook::kRead, key, e.vid, remaining(e));
      if (d) e.custom_deadline = deadline_after(now_, d);
    }
    return e.vid;
  }

  void insert(int key, uint32_t vid) {
    const uint32_t weight = config_.weigher ? scenario_.weight(key, vid) : 1;
    const bool never_kept = config_.capacity && (*config_.capacity == 0 || weight > *config_.capacity);
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      Entry& old = it->second;
      const bool was_expired = expired(old);
      if (never_kept) {  // the old value is replaced, the new one not kept
        expect(key, old.vid, was_expired ? RemovalCause::kExpired : RemovalCause::kReplaced);
        entries_.erase(it);
        expect(key, vid, RemovalCause::kSize);
        return;
      }
      int64_t custom = kNever;
      if (config_.expiry) {
        if (was_expired) {  // an expired entry's replacement is a new entry
          custom = deadline_after(now_, call(Hook::kCreate, key, vid, std::nullopt));
        } else {
          const auto d = call(Hook::kUpdate, key, vid, remaining(old));
          custom = d ? deadline_after(now_, d) : old.custom_deadline;
        }
      }
      expect(key, old.vid, was_expired ? RemovalCause::kExpired : RemovalCause::kReplaced);
      old = written(vid, weight, custom);
      return;
    }
    if (never_kept) {
      expect(key, vid, RemovalCause::kSize);
      return;
    }
    const int64_t custom = config_.expiry ? deadline_after(now_, call(Hook::kCreate, key, vid, std::nullopt)) : kNever;
    entries_[key] = written(vid, weight, custom);
  }

  /// get_with and friends: the lookup, then (on a miss) the loader's outcome.
  void load_succeeded(int key, uint32_t vid) {
    ++load_successes_;
    insert(key, vid);
  }
  void load_failed() { ++load_failures_; }

  std::optional<uint32_t> remove(int key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return std::nullopt;
    const Entry e = it->second;
    entries_.erase(it);
    if (expired(e)) {
      expect(key, e.vid, RemovalCause::kExpired);
      return std::nullopt;
    }
    expect(key, e.vid, RemovalCause::kExplicit);
    return e.vid;
  }

  template <class Pred>  // pred(key, vid) -> bool, asked about live entries only
  void invalidate_if(Pred pred) {
    for (auto it = entries_.begin(); it != entries_.end();) {
      const bool was_expired = expired(it->second);
      if (!was_expired && !pred(it->first, it->second.vid)) {
        ++it;
        continue;
      }
      expect(it->first, it->second.vid, was_expired ? RemovalCause::kExpired : RemovalCause::kExplicit);
      it = entries_.erase(it);
    }
  }

  void invalidate_all() {
    invalidate_if([](int, uint32_t) { return true; });
  }

  // ---- Maintenance --------------------------------------------------------------------

  /// A notification the operation did not cause itself: maintenance expired or evicted
  /// an entry. Returns an empty string when the contract allows it (and removes the
  /// entry), else what is wrong.
  std::string accept_maintenance(const Removal& r) {
    auto it = entries_.find(r.key);
    if (it == entries_.end() || it->second.vid != r.vid) {
      return "reported " + to_string(r) + " but that value is not in the cache (already reported, or never kept)";
    }
    switch (r.cause) {
      case RemovalCause::kExpired:
        if (!expired(it->second)) return to_string(r) + ": the entry has not expired (" + deadlines(it->second) + ")";
        break;
      case RemovalCause::kSize:
        if (!config_.capacity) return to_string(r) + ": evicted for size from an unbounded cache";
        if (total_weight() <= *config_.capacity) {
          return to_string(r) + ": evicted for size while the total weight " + std::to_string(total_weight()) +
                 " is within the capacity " + std::to_string(*config_.capacity);
        }
        if (it->second.weight == 0) return to_string(r) + ": an entry of weight 0 was evicted for size";
        break;
      case RemovalCause::kExplicit:
      case RemovalCause::kReplaced:
        return to_string(r) + ": no operation of this step removes or replaces this entry";
    }
    entries_.erase(it);
    return {};
  }

  /// What must hold once run_pending_tasks() has returned; empty when it does.
  std::string check_after_maintenance() const {
    for (const auto& [key, e] : entries_) {
      if (expired(e)) return "k" + std::to_string(key) + " v" + std::to_string(e.vid) + " expired (" + deadlines(e) +
                             ") but was not removed by run_pending_tasks()";
    }
    if (config_.capacity && total_weight() > *config_.capacity) {
      return "total weight " + std::to_string(total_weight()) + " exceeds the capacity " +
             std::to_string(*config_.capacity) + " after run_pending_tasks()";
    }
    return {};
  }

  std::vector<Removal> take_expected_removals() { return std::exchange(expected_removals_, {}); }
  std::vector<HookCall> take_expected_hooks() { return std::exchange(expected_hooks_, {}); }

  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }
  uint64_t load_successes() const { return load_successes_; }
  uint64_t load_failures() const { return load_failures_; }

  std::string deadlines(const Entry& e) const {
    auto show = [&](int64_t d) { return d == kNever ? std::string("never") : std::to_string(d - now_); };
    return "now+: ttl " + show(e.ttl_deadline) + ", tti " + show(e.tti_deadline) + ", custom " + show(e.custom_deadline);
  }

 private:
  Entry written(uint32_t vid, uint32_t weight, int64_t custom) const {
    Entry e;
    e.vid = vid;
    e.weight = weight;
    if (config_.ttl) e.ttl_deadline = saturating_add(now_, *config_.ttl);
    if (config_.tti) e.tti_deadline = saturating_add(now_, *config_.tti);
    e.custom_deadline = custom;
    return e;
  }

  std::optional<int64_t> remaining(const Entry& e) const {
    if (e.custom_deadline == kNever) return std::nullopt;
    return e.custom_deadline - now_;
  }

  std::optional<int64_t> call(Hook hook, int key, uint32_t vid, std::optional<int64_t> rem) {
    expected_hooks_.push_back(HookCall{hook, key, vid, now_, rem});
    switch (hook) {
      case Hook::kCreate: return scenario_.after_create(key, vid, now_);
      case Hook::kRead: return scenario_.after_read(key, vid, now_, rem);
      case Hook::kUpdate: return scenario_.after_update(key, vid, now_, rem);
    }
    return std::nullopt;
  }

  void expect(int key, uint32_t vid, RemovalCause cause) { expected_removals_.push_back(Removal{key, vid, cause}); }

  ModelConfig config_;
  Scenario scenario_;
  int64_t now_;
  std::map<int, Entry> entries_;
  std::vector<Removal> expected_removals_;
  std::vector<HookCall> expected_hooks_;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  uint64_t load_successes_ = 0;
  uint64_t load_failures_ = 0;
};

}  // namespace cache_fuzz
