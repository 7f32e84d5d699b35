// The cache's size-eviction policy: W-TinyLFU with an adaptive window (Caffeine's design).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "streamcache/detail/frequency_sketch.hpp"
#include "streamcache/detail/intrusive_list.hpp"
#include "streamcache/detail/prefetch.hpp"

namespace streamcache::detail {

/// The policy's knobs. The defaults are what we measured best over all the anchor traces
/// (docs/notes/policy.md); Caffeine's values are noted where ours differ.
struct TinyLfuTuning {
  double initial_window = 0.01;      // window share at start
  double main_protected = 0.80;      // protected share of the main space
  double step_percent = 0;           // hill climber's first stride, share of the capacity (0: off)
  double step_grow = 1.5;            // stride factor after a move that did not hurt
  double step_shrink = 0.5;          // stride factor after a move that hurt (and is reversed)
  double min_step_percent = 0.005;   // stride bounds, shares of the capacity
  double max_step_percent = 0.25;
  double restart_threshold = 0.05;   // a hit-rate change this large restarts the step size
  double sample_factor = 12;         // hill-climber period, requests per unit of capacity (Caffeine: 10)
  uint32_t aging_factor = 12;        // sketch ages after this many increments per entry (Caffeine: 10)
  /// A candidate at least this popular that loses to a victim is still admitted with
  /// probability 1/128 (Caffeine: 6, its defence against an attacker who keeps a victim hot by
  /// hash flooding). 16 = never, our default: on the loop trace it cost 9 points of hit ratio.
  uint32_t admit_random_threshold = 16;
  /// Shadow guard (guard_against_shadows()): two sampled shadows, a pure LRU and W-TinyLFU with
  /// the initial window, replay the requests. When one beats the policy on the same requests by
  /// more than guard_margin of them, and by guard_z standard deviations, twice in a row, the
  /// window moves towards it: +guard_grow of the main space (LRU won), or -guard_shrink of the
  /// window's growth (W-TinyLFU won). guard_margin 0 disables the guard.
  double guard_margin = 0.005;
  double guard_z = 3;
  double guard_grow = 0.5;
  double guard_shrink = 0.5;
  /// Entries per shadow (at least 1/32 of the cache's, at most all); also the number of sampled
  /// requests per guard period.
  uint32_t guard_entries = 1024;
};

/// Per-entry state the policy keeps inside the cache's node: 17 bytes of data. The cache
/// declares it [[no_unique_address]], so the node's next small members sit in its 3 bytes
/// of tail padding (the default member initializers make it non-POD, which is what lets
/// the Itanium ABI reuse that padding).
struct TinyLfuHook {
  static constexpr uint8_t kNone = 0;       // not in the policy
  static constexpr uint8_t kWindow = 1;     // admission window (LRU)
  static constexpr uint8_t kProbation = 2;  // main space, seen once in main
  static constexpr uint8_t kProtected = 3;  // main space, hit again while in main

  ListHook links;
  uint32_t weight = 0;
  uint32_t fingerprint = 0;  // FrequencySketch::fingerprint of the key's hash: eviction compares them
  uint8_t region = kNone;
};
static_assert(sizeof(TinyLfuHook) <= 20, "the hook lives in every cache node");

/// A sampled miniature of the cache that replays its requests under a fixed window share: the
/// policy runs two, at the two ends of the recency/frequency balance (a pure LRU, and W-TinyLFU
/// with the initial 1% window), and moves its own window towards whichever of them beats it.
///
/// Sampling is spatial (SHARDS, Waldspurger et al., FAST '15): the policy replays a key iff its
/// fingerprint falls in a fixed fraction `rate` of the hash space, and the shadow holds `rate` x
/// the cache's weight, so its hit ratio estimates a full-size cache's on the same requests.
/// Admission duels use the policy's own sketch (a key's popularity does not depend on what the
/// cache holds), so a shadow costs only its entries: 24 bytes each plus its index.
///
/// Our own because it holds 4-byte fingerprints instead of keys, over recycled node slots;
/// absl::flat_hash_map is the index. O(1) amortized per request, like the policy.
class ShadowCache {
 public:
  ShadowCache() = default;
  ShadowCache(const ShadowCache&) = delete;  // the lists point into this object's nodes_
  ShadowCache& operator=(const ShadowCache&) = delete;

  /// Empties the shadow and sizes it. `window_share` 1 = LRU; otherwise a window of that share
  /// in front of an SLRU main space (80% protected) with TinyLFU admission.
  void init(uint64_t capacity, double window_share) {
    clear();
    capacity_ = std::max<uint64_t>(capacity, 1);
    window_max_ = window_share >= 1 ? capacity_ : std::max<uint64_t>(1, static_cast<uint64_t>(window_share * static_cast<double>(capacity_)));
    protected_max_ = (capacity_ - window_max_) * 4 / 5;
  }
  bool full() const { return weight_ >= capacity_; }
  uint64_t weight() const { return weight_; }

  /// Forgets every entry and frees their memory.
  void clear() {
    // Assigned new objects, not swapped: the lists keep pointing at this nodes_. (`= {}`
    // would pick the initializer_list overload, which keeps the old capacity.)
    nodes_ = std::vector<Node>();
    free_ = std::vector<NodeId>();
    index_ = absl::flat_hash_map<uint32_t, NodeId>();
    for (auto& list : lists_) list = IntrusiveList<LinksOf>{LinksOf{&nodes_}};
    std::fill(std::begin(region_weight_), std::end(region_weight_), 0);
    weight_ = 0;
  }

  /// One sampled request; returns whether the shadow hit. `frequency(fp)` -> sketch estimate.
  template <class Frequency>
  bool access(uint32_t fp, uint32_t weight, const Frequency& frequency) {
    if (auto it = index_.find(fp); it != index_.end()) {
      touch(it->second);
      return true;
    }
    if (weight > capacity_) return false;
    NodeId id;
    if (!free_.empty()) {
      id = free_.back();
      free_.pop_back();
    } else {
      id = static_cast<NodeId>(nodes_.size());
      nodes_.emplace_back();
    }
    nodes_[id].fingerprint = fp;
    nodes_[id].weight = weight;
    index_.emplace(fp, id);
    link(id, kWindow);
    weight_ += weight;
    // Window overflow becomes a candidate that duels probation's (else protected's) LRU victim.
    while (region_weight_[kWindow] > window_max_) {
      const NodeId candidate = lists_[kWindow].front();
      unlink(candidate);
      link(candidate, kProbation);
      if (weight_ <= capacity_) continue;
      NodeId victim = lists_[kProbation].front();
      if (victim == candidate) victim = lists_[kProbation].next(victim);
      if (victim == kNoNode) victim = lists_[kProtected].front();
      const bool admit = victim != kNoNode &&
                         frequency(nodes_[candidate].fingerprint) > frequency(nodes_[victim].fingerprint);
      evict(admit ? victim : candidate);
    }
    while (weight_ > capacity_) {  // weighted entries: make room from main, then the window
      NodeId victim = lists_[kProbation].front();
      if (victim == kNoNode) victim = lists_[kProtected].front();
      if (victim == kNoNode) victim = lists_[kWindow].front();
      evict(victim);
    }
    return false;
  }

 private:
  static constexpr uint8_t kWindow = 0;
  static constexpr uint8_t kProbation = 1;
  static constexpr uint8_t kProtected = 2;

  struct Node {
    uint32_t fingerprint = 0;
    uint32_t weight = 0;
    ListHook links;
    uint8_t region = kWindow;
  };
  struct LinksOf {
    std::vector<Node>* nodes;
    ListHook& operator()(NodeId id) const { return (*nodes)[id].links; }
  };

  void link(NodeId id, uint8_t region) {
    nodes_[id].region = region;
    lists_[region].push_back(id);
    region_weight_[region] += nodes_[id].weight;
  }
  void unlink(NodeId id) {
    lists_[nodes_[id].region].remove(id);
    region_weight_[nodes_[id].region] -= nodes_[id].weight;
  }
  void evict(NodeId id) {
    unlink(id);
    weight_ -= nodes_[id].weight;
    index_.erase(nodes_[id].fingerprint);
    free_.push_back(id);
  }
  void touch(NodeId id) {
    const uint8_t region = nodes_[id].region;
    if (region != kProbation) {
      lists_[region].move_to_back(id);
      return;
    }
    unlink(id);
    link(id, kProtected);
    while (region_weight_[kProtected] > protected_max_) {
      const NodeId demoted = lists_[kProtected].front();
      unlink(demoted);
      link(demoted, kProbation);
    }
  }

  std::vector<Node> nodes_;
  std::vector<NodeId> free_;
  absl::flat_hash_map<uint32_t, NodeId> index_;
  IntrusiveList<LinksOf> lists_[3] = {IntrusiveList<LinksOf>{LinksOf{&nodes_}}, IntrusiveList<LinksOf>{LinksOf{&nodes_}},
                                      IntrusiveList<LinksOf>{LinksOf{&nodes_}}};
  uint64_t region_weight_[3] = {};
  uint64_t capacity_ = 1;
  uint64_t window_max_ = 1;
  uint64_t protected_max_ = 0;
  uint64_t weight_ = 0;
};

/// W-TinyLFU (Einziger, Friedman, Manes: "TinyLFU: A Highly Efficient Cache Admission Policy"),
/// with Caffeine's segments and an adaptive window:
///
/// - A new entry enters the *window*, an LRU holding a small share of the capacity. What falls
///   out of the window becomes a *candidate* for the main space, an SLRU of *probation* and
///   *protected* (80% of main) segments. When the cache is over capacity, the candidate is
///   compared with the probation segment's LRU *victim* by their FrequencySketch estimates, and
///   the less popular one is evicted. A probation entry that is hit moves to protected;
///   protected overflow is demoted back to probation's MRU end.
/// - The window's share adapts (guard_against_shadows()): two sampled ShadowCaches, a pure LRU
///   and W-TinyLFU with the initial 1% window, replay the same requests. When one of them beats
///   the policy on those requests, significantly and twice in a row, the window moves towards
///   it: towards LRU by half of the main space, or back towards 1% by half of its growth. The
///   comparison is paired (same requests), so the workload's own variations cancel; and it is
///   empirical, so a cliff (a loop longer than the cache, where a larger window never pays until
///   it holds the whole loop) does not tempt it. The window may take all but one unit of the
///   cache: a workload whose hottest keys keep dying needs a pure LRU.
/// - Caffeine 2.7+'s hill climber (Rprop stride: x1.5 after a good move, x0.5 after a bad one)
///   is kept behind TinyLfuTuning::step_percent, off by default: comparing consecutive periods
///   was too noisy to be worth it (docs/notes/policy.md).
///
/// Invariants (checked by check_invariants(), which the tests call after random operations):
/// - every contained node is in exactly the list its `region` names; region == kNone otherwise;
/// - window_weight() + probation_weight() + protected_weight() == weighted_size(), each being
///   the sum of the weights of its list's nodes, and entry_count() the total number of nodes;
/// - window_maximum() + protected_maximum() <= max_weight().
/// protected_weight() may exceed protected_maximum() between calls: demotion is deferred to
/// evict_if_needed() (as Caffeine defers it to the end of a maintenance cycle).
///
/// Not thread-safe: the cache applies buffered reads and writes under its maintenance lock.
/// Every operation is O(1) amortized.
template <class HookOf>  // HookOf: cheap copyable callable NodeId -> TinyLfuHook&
class TinyLfuPolicy {
 public:
  /// Entries moved between segments per call, so that one call stays bounded; the rest of a
  /// large window resize is carried over to the next call.
  static constexpr int kQueueTransferThreshold = 1000;
  /// The shadows' smallest sampling rate: at most 1/32 of the entries each, so both together
  /// cost about 2.5 bytes per cache entry (a 20-byte node plus ~20 bytes of index and free list
  /// per shadow entry) in a large cache. A small cache pays for 2 x 1024 shadow entries at most.
  static constexpr double kMinSampleRate = 1.0 / 32;

  TinyLfuPolicy(uint64_t max_weight, HookOf hook_of, const TinyLfuTuning& tuning = {})
      : tuning_(tuning),
        hook_of_(hook_of),
        window_(LinksOf{hook_of}),
        probation_(LinksOf{hook_of}),
        protected_(LinksOf{hook_of}) {
    sketch_.set_aging_factor(tuning_.aging_factor);
    size_regions(max_weight, tuning_.initial_window);
  }

  /// A new maximum (Caffeine's setMaximum). The window keeps the share of the cache the
  /// adaptation gave it (Caffeine starts over from 1%: a workload that needed a large window
  /// would lose hits until the shadows had learned it again); the adaptation's samples and
  /// scores, measured at the old size, start over, and the shadows are emptied (they
  /// restart at the new size once the cache is half full, as the sketch does). Nothing is
  /// evicted here: the next evict_if_needed() brings the weighted size within the new
  /// maximum. The sketch is allocated if the cache is already half full, as on_insert()
  /// does; it never shrinks (Caffeine's doesn't either).
  void set_max_weight(uint64_t max_weight) {
    if (max_weight == max_weight_) return;
    size_regions(max_weight, window_share_);
    hits_in_sample_ = misses_in_sample_ = 0;
    previous_hit_rate_ = 0;
    direction_ = -1;
    adjustment_ = 0;
    shadows_ready_ = false;
    lru_shadow_.clear();
    lfu_shadow_.clear();
    lru_ = lfu_ = ShadowScore{};
    guard_requests_ = 0;
    if (sketch_.initialized()) {
      set_sample_period();
    } else {
      ensure_sketch_once_half_full();
    }
  }

  TinyLfuPolicy(const TinyLfuPolicy&) = delete;
  TinyLfuPolicy& operator=(const TinyLfuPolicy&) = delete;

  /// A new entry: it enters the window's MRU end. A node already in the policy is treated as
  /// on_update().
  void on_insert(NodeId id, uint64_t hash, uint32_t weight) {
    if (contains(id)) {
      on_update(id, hash, weight);
      return;
    }
    TinyLfuHook& hook = hook_of_(id);
    hook.weight = weight;
    hook.region = TinyLfuHook::kWindow;
    window_.push_back(id);
    window_weight_ += weight;
    weighted_size_ += weight;
    ++entry_count_;
    set_fingerprint(id, hash);
    // The sketch grows with the entry count (weighted entries: the count is not known up front).
    if (!sketch_.initialized()) {
      ensure_sketch_once_half_full();
    } else if (entry_count_ > sketch_.capacity() && sketch_.capacity() < FrequencySketch::kMaxCapacity) {
      sketch_.ensure_capacity(std::min(max_weight_, 4 * entry_count_));
    }
    sketch_.increment(hash);
    ++misses_in_sample_;
    shadow_request(fingerprint_of(id), weight, false);
  }

  /// Starts loading what on_access(id, hash) reads first (the entry's hook and its
  /// sketch counters), for a caller about to apply a batch of accesses.
  void prefetch_access(NodeId id, uint64_t hash) const {
    prefetch_for_write(&hook_of_(id));
    sketch_.prefetch(hash);
  }

  /// True when `id` is in the policy for the key whose hash is `hash` (not for a key that
  /// held the same node before it was freed and reused): the fingerprints match.
  bool holds(NodeId id, uint64_t hash) const {
    return contains(id) && hook_of_(id).fingerprint == static_cast<uint32_t>(FrequencySketch::fingerprint(hash));
  }

  /// A read hit: counts towards the key's popularity and refreshes its recency. Returns
  /// the key's estimated frequency afterwards (0 for an id not in the policy).
  uint32_t on_access(NodeId id, uint64_t hash) {
    if (!contains(id)) return 0;
    const uint32_t estimate = sketch_.increment(hash);
    touch(id);
    ++hits_in_sample_;
    shadow_request(static_cast<uint32_t>(FrequencySketch::fingerprint(hash)), hook_of_(id).weight, true);
    return estimate;
  }

  /// The value was replaced: an access plus a weight change.
  void on_update(NodeId id, uint64_t hash, uint32_t new_weight) {
    if (!contains(id)) return;
    TinyLfuHook& hook = hook_of_(id);
    const uint32_t old_weight = hook.weight;
    hook.weight = new_weight;
    region_weight(hook.region) += new_weight;
    region_weight(hook.region) -= old_weight;
    weighted_size_ += new_weight;
    weighted_size_ -= old_weight;
    set_fingerprint(id, hash);
    sketch_.increment(hash);
    touch(id);
  }

  /// Removed by the cache (explicitly, or expired).
  void on_remove(NodeId id) {
    if (!contains(id)) return;
    unlink(id);
  }

  bool contains(NodeId id) const { return hook_of_(id).region != TinyLfuHook::kNone; }

  /// Moves the window's overflow into probation, then, while weighted_size() > max_weight(),
  /// evicts the loser of each candidate-versus-victim duel. For each one calls evict(id) -> bool
  /// (true: the cache removed it; false: it was already gone) and then unlinks the node, in
  /// both cases. Entries of weight 0 are never chosen. Finally it performs the deferred
  /// protected-segment demotion and the window adaptation. Call it after every batch of
  /// operations applied to the policy. `evict` must not call back into the policy.
  template <class Evict>
  void evict_if_needed(Evict&& evict) {
    const NodeId first_candidate = evict_from_window();
    if (weighted_size_ > max_weight_) evict_from_main(first_candidate, evict);
    climb();
  }

  uint64_t weighted_size() const { return weighted_size_; }
  uint64_t max_weight() const { return max_weight_; }
  uint64_t entry_count() const { return entry_count_; }

  // Introspection, for tests, benchmarks and docs.
  uint64_t window_weight() const { return window_weight_; }
  uint64_t probation_weight() const { return probation_weight_; }
  uint64_t protected_weight() const { return protected_weight_; }
  uint64_t window_maximum() const { return window_max_; }
  uint64_t protected_maximum() const { return protected_max_; }
  const FrequencySketch& sketch() const { return sketch_; }
  /// The sampled requests' weight each shadow holds (the LRU one's; both hold alike).
  uint64_t shadow_weight() const { return lru_shadow_.weight(); }
  /// The estimated popularity of a key, 0..15.
  uint32_t frequency(uint64_t hash) const { return sketch_.frequency(hash); }

  /// Walks every list and checks the invariants listed in the class comment; O(entries).
  bool check_invariants() const {
    uint64_t count = 0;
    const auto check_list = [&](const List& list, uint8_t region, uint64_t weight) {
      uint64_t sum = 0;
      uint64_t n = 0;
      NodeId prev = kNoNode;
      for (NodeId id = list.front(); id != kNoNode; id = list.next(id)) {
        const TinyLfuHook& hook = hook_of_(id);
        if (hook.region != region || hook.links.prev != prev) return false;
        sum += hook.weight;
        prev = id;
        if (++n > list.size()) return false;
      }
      count += n;
      return n == list.size() && prev == list.back() && sum == weight;
    };
    return check_list(window_, TinyLfuHook::kWindow, window_weight_) &&
           check_list(probation_, TinyLfuHook::kProbation, probation_weight_) &&
           check_list(protected_, TinyLfuHook::kProtected, protected_weight_) &&
           count == entry_count_ &&
           window_weight_ + probation_weight_ + protected_weight_ == weighted_size_ &&
           window_max_ + protected_max_ <= max_weight_;
  }

 private:
  /// Adapts HookOf (NodeId -> TinyLfuHook&) to what IntrusiveList wants (NodeId -> ListHook&).
  struct LinksOf {
    HookOf hook_of;
    ListHook& operator()(NodeId id) const { return hook_of(id).links; }
  };
  using List = IntrusiveList<LinksOf>;

  /// A shadow's score against the policy over the current guard period.
  struct ShadowScore {
    uint64_t own_only = 0;     // sampled requests only the policy hit
    uint64_t shadow_only = 0;  // sampled requests only the shadow hit
    int streak = 0;            // consecutive periods in which the shadow won
  };

  /// floor(fraction * x), saturating at x (fraction <= 1) or UINT64_MAX: a double cast of a value
  /// near 2^64 would be undefined behaviour.
  static uint64_t scale(double fraction, uint64_t x) {
    const double scaled = std::floor(std::max(fraction, 0.0) * static_cast<double>(x));
    if (scaled >= 18446744073709551616.0) return UINT64_MAX;
    const auto result = static_cast<uint64_t>(scaled);
    return fraction <= 1 ? std::min(result, x) : result;
  }

  /// The regions' maxima for a cache of `max_weight`: the window at `window_share` of it (at
  /// least the initial share, at most all but one unit), rounded up, protected at its share
  /// of the rest. A share is applied as max - floor((1 - share) * max), which cannot
  /// overflow 64 bits.
  void size_regions(uint64_t max_weight, double window_share) {
    window_share_ = window_share;
    max_weight_ = max_weight;
    initial_window_max_ = max_weight - scale(1 - tuning_.initial_window, max_weight);
    window_max_ = std::max(initial_window_max_, max_weight - scale(1 - window_share, max_weight));
    if (max_weight > 1) window_max_ = std::min(window_max_, max_weight - 1);  // as increase_window() leaves it
    protected_max_ = scale(tuning_.main_protected, max_weight - window_max_);
    step_size_ = tuning_.step_percent * static_cast<double>(max_weight_);
  }

  /// The sketch is allocated once the cache is half full (Caffeine's rule): a cache that never
  /// fills, such as an unbounded one, never pays for it. It is sized by entries, not weight.
  bool half_full() const { return weighted_size_ >= max_weight_ / 2 + max_weight_ % 2 && max_weight_ > 0; }

  void ensure_sketch_once_half_full() {
    if (half_full()) {
      sketch_.ensure_capacity(std::min(max_weight_, std::max<uint64_t>(2 * entry_count_, 1)));
      set_sample_period();
    }
  }

  void set_sample_period() {
    sample_period_ = std::max<uint64_t>(1, scale(tuning_.sample_factor, std::min(max_weight_, 2 * entry_count_)));
  }

  uint64_t& region_weight(uint8_t region) {
    switch (region) {
      case TinyLfuHook::kWindow:
        return window_weight_;
      case TinyLfuHook::kProbation:
        return probation_weight_;
      default:
        return protected_weight_;
    }
  }
  List& region_list(uint8_t region) {
    switch (region) {
      case TinyLfuHook::kWindow:
        return window_;
      case TinyLfuHook::kProbation:
        return probation_;
      default:
        return protected_;
    }
  }

  void set_fingerprint(NodeId id, uint64_t hash) {
    hook_of_(id).fingerprint = static_cast<uint32_t>(FrequencySketch::fingerprint(hash));
  }
  uint32_t fingerprint_of(NodeId id) const { return hook_of_(id).fingerprint; }

  /// Recency update on a hit: window and protected entries move to their MRU end; a probation
  /// entry is promoted to protected (the overflow is demoted later, in climb()).
  // Out of line on purpose: g++ 12 inlines it into the cache's read-drain loop once the
  // fingerprint lives in the hook, and reads got 20% slower (read 100%, 1 thread, measured
  // A/B; the loop's register allocation suffers).
  [[gnu::noinline]] void touch(NodeId id) {
    TinyLfuHook& hook = hook_of_(id);
    switch (hook.region) {
      case TinyLfuHook::kWindow:
        window_.move_to_back(id);
        break;
      case TinyLfuHook::kProbation:
        if (hook.weight > protected_max_) {
          probation_.move_to_back(id);  // would not fit in protected at all
        } else {
          probation_.remove(id);
          probation_weight_ -= hook.weight;
          protected_.push_back(id);
          protected_weight_ += hook.weight;
          hook.region = TinyLfuHook::kProtected;
        }
        break;
      default:
        protected_.move_to_back(id);
        break;
    }
  }

  void unlink(NodeId id) {
    TinyLfuHook& hook = hook_of_(id);
    region_list(hook.region).remove(id);
    region_weight(hook.region) -= hook.weight;
    weighted_size_ -= hook.weight;
    --entry_count_;
    hook.region = TinyLfuHook::kNone;
  }

  void move(NodeId id, uint8_t to) {
    TinyLfuHook& hook = hook_of_(id);
    region_list(hook.region).remove(id);
    region_weight(hook.region) -= hook.weight;
    region_list(to).push_back(id);
    region_weight(to) += hook.weight;
    hook.region = to;
  }

  /// Moves the window's LRU entries into probation's MRU end until the window fits its share;
  /// returns the first one moved (the first candidate), or kNoNode.
  NodeId evict_from_window() {
    NodeId first = kNoNode;
    NodeId id = window_.front();
    while (window_weight_ > window_max_ && id != kNoNode) {
      const NodeId next = window_.next(id);
      if (hook_of_(id).weight != 0) {  // weightless entries cannot make room: leave them be
        move(id, TinyLfuHook::kProbation);
        if (first == kNoNode) first = id;
      }
      id = next;
    }
    return first;
  }

  template <class Evict>
  void evict_one(NodeId id, Evict& evict) {
    static_cast<void>(evict(id));  // either way the node leaves the policy
    unlink(id);
  }

  /// Caffeine's evictFromMain: `candidate` walks forward from the first entry that left the
  /// window (then the window itself), `victim` walks forward from probation's LRU end (then
  /// protected's, then the window's); each duel evicts the less frequent of the two.
  template <class Evict>
  void evict_from_main(NodeId candidate, Evict& evict) {
    uint8_t victim_queue = TinyLfuHook::kProbation;
    uint8_t candidate_queue = TinyLfuHook::kProbation;
    NodeId victim = probation_.front();
    while (weighted_size_ > max_weight_) {
      if (candidate == kNoNode && candidate_queue == TinyLfuHook::kProbation) {
        candidate = window_.front();  // more candidates: the window itself
        candidate_queue = TinyLfuHook::kWindow;
      }
      if (candidate == kNoNode && victim == kNoNode) {
        if (victim_queue == TinyLfuHook::kProbation) {
          victim = protected_.front();
          victim_queue = TinyLfuHook::kProtected;
          continue;
        }
        if (victim_queue == TinyLfuHook::kProtected) {
          victim = window_.front();
          victim_queue = TinyLfuHook::kWindow;
          continue;
        }
        break;  // only weightless entries left: cannot happen while weighted_size_ > 0
      }
      if (victim != kNoNode && hook_of_(victim).weight == 0) {
        victim = next_of(victim);
        continue;
      }
      if (candidate != kNoNode && hook_of_(candidate).weight == 0) {
        candidate = next_of(candidate);
        continue;
      }
      if (victim == kNoNode || candidate == kNoNode) {  // only one left: it goes
        NodeId& only = victim == kNoNode ? candidate : victim;
        const NodeId evicted = only;
        only = next_of(only);
        evict_one(evicted, evict);
        continue;
      }
      if (candidate == victim) {
        victim = next_of(victim);
        evict_one(candidate, evict);
        candidate = kNoNode;
        continue;
      }
      if (hook_of_(candidate).weight > max_weight_) {  // could never fit (after an update)
        const NodeId evicted = candidate;
        candidate = next_of(candidate);
        evict_one(evicted, evict);
        continue;
      }
      if (admit(fingerprint_of(candidate), fingerprint_of(victim))) {
        const NodeId evicted = victim;
        victim = next_of(victim);
        evict_one(evicted, evict);
        candidate = next_of(candidate);
      } else {
        const NodeId evicted = candidate;
        candidate = next_of(candidate);
        evict_one(evicted, evict);
      }
    }
  }

  NodeId next_of(NodeId id) const { return hook_of_(id).links.next; }

  bool admit(uint32_t candidate_fp, uint32_t victim_fp) {
    const uint32_t victim_freq = sketch_.frequency(victim_fp);
    const uint32_t candidate_freq = sketch_.frequency(candidate_fp);
    if (candidate_freq > victim_freq) return true;
    if (candidate_freq >= tuning_.admit_random_threshold) return (next_random() & 127) == 0;
    return false;
  }

  /// xorshift64: deterministic, so that replays (and tests) are reproducible.
  uint64_t next_random() {
    random_ ^= random_ << 13;
    random_ ^= random_ >> 7;
    random_ ^= random_ << 17;
    return random_;
  }

  /// Replays a request on both shadows if its key is sampled, counting the disagreements.
  void shadow_request(uint32_t fp, uint32_t weight, bool hit) {
    if (tuning_.guard_margin <= 0 || !sketch_.initialized()) return;
    if (!shadows_ready_) {
      // Only a cache that is filling up is worth shadowing: sized for a bound it never
      // nears (one resized to unbounded), a shadow would keep every sampled key forever.
      if (!half_full()) return;
      // Sampling rate: ~guard_entries entries per shadow, at least kMinSampleRate of the cache.
      const double rate = std::clamp(static_cast<double>(tuning_.guard_entries) /
                                         static_cast<double>(std::max<uint64_t>(max_weight_, 1)),
                                     kMinSampleRate, 1.0);
      sample_threshold_ = static_cast<uint32_t>(std::ceil(rate * 65536.0));
      const uint64_t capacity = scale(rate, max_weight_);
      lru_shadow_.init(capacity, 1.0);
      lfu_shadow_.init(capacity, tuning_.initial_window);
      guard_period_ = std::max<uint64_t>(tuning_.guard_entries, 256);
      shadows_ready_ = true;
    }
    // A multiplicative hash independent of the sketch's block choice.
    if (((fp * 0x9E3779B1U) >> 16) >= sample_threshold_) return;
    const auto frequency = [this](uint32_t f) { return sketch_.frequency(f); };
    const bool lru_hit = lru_shadow_.access(fp, weight, frequency);
    const bool lfu_hit = lfu_shadow_.access(fp, weight, frequency);
    if (!lru_shadow_.full() || !lfu_shadow_.full()) return;  // all three warm up first
    ++guard_requests_;
    // Only the requests where a shadow and the policy disagree carry information (a paired
    // sign test).
    if (hit != lru_hit) ++(lru_hit ? lru_.shadow_only : lru_.own_only);
    if (hit != lfu_hit) ++(lfu_hit ? lfu_.shadow_only : lfu_.own_only);
  }

  /// Whether a shadow beat the policy over the period by the margin and by guard_z standard
  /// deviations of the sign test (under "no difference" each disagreement is a fair coin), twice
  /// in a row (not a transient, such as the sketch warming up). Returns its lead, or 0.
  double shadow_lead(ShadowScore& score) const {
    const double gap = static_cast<double>(score.shadow_only) - static_cast<double>(score.own_only);
    const double disagreements = static_cast<double>(score.shadow_only + score.own_only);
    const bool won = gap > tuning_.guard_margin * static_cast<double>(guard_requests_) &&
                     gap > tuning_.guard_z * std::sqrt(disagreements);
    score.streak = won ? score.streak + 1 : 0;
    score.shadow_only = score.own_only = 0;
    return score.streak >= 2 ? gap : 0;
  }

  /// Once per guard period: if the LRU shadow beat us, recency is worth more than our admission
  /// filter: grow the window by guard_grow of the main space at once. If the 1%-window
  /// shadow beat us, frequency is worth more than our (grown) window: give back half of the
  /// growth. The hill climber, if enabled, fine-tunes in between.
  void guard_against_shadows() {
    if (guard_requests_ < guard_period_) return;
    const double lru_lead = shadow_lead(lru_);
    const double lfu_lead = shadow_lead(lfu_);
    guard_requests_ = 0;
    if (lru_lead > 0 && lru_lead >= lfu_lead) {
      const uint64_t main = max_weight_ - window_max_;
      adjustment_ = std::max(adjustment_, static_cast<int64_t>(std::max(scale(tuning_.guard_grow, main), uint64_t{1})));
      direction_ = 1;
    } else if (lfu_lead > 0 && window_max_ > initial_window_max_) {
      const uint64_t excess = window_max_ - initial_window_max_;
      adjustment_ = std::min(adjustment_, -static_cast<int64_t>(std::max(scale(tuning_.guard_shrink, excess), uint64_t{1})));
      direction_ = -1;
    } else {
      return;
    }
    // The climber's current sample straddles the jump: start a fresh one.
    hits_in_sample_ = misses_in_sample_ = 0;
    previous_hit_rate_ = 0;
  }

  /// The end of a maintenance cycle: adapt the window, then demote protected overflow.
  void climb() {
    if (tuning_.step_percent > 0) determine_adjustment();
    guard_against_shadows();
    demote_from_protected();
    if (adjustment_ > 0) {
      increase_window();
    } else if (adjustment_ < 0) {
      decrease_window();
    }
  }

  /// Once per sample period: compares the period's hit rate with the previous one. If it did
  /// not get worse, the window keeps moving the same way with a longer stride (x step_grow);
  /// if it got worse, the move is reversed with a shorter stride (x step_shrink). A change of
  /// restart_threshold or more (the workload itself changed) restarts from the initial stride.
  void determine_adjustment() {
    if (!sketch_.initialized()) {  // not yet half full: nothing to learn from
      previous_hit_rate_ = 0;
      hits_in_sample_ = misses_in_sample_ = 0;
      return;
    }
    const uint64_t requests = hits_in_sample_ + misses_in_sample_;
    if (requests < sample_period_) return;
    const double hit_rate = static_cast<double>(hits_in_sample_) / static_cast<double>(requests);
    const double change = hit_rate - previous_hit_rate_;
    const double capacity = static_cast<double>(max_weight_);
    if (change < 0) {
      direction_ = -direction_;
      step_size_ *= tuning_.step_shrink;
    } else {
      step_size_ *= tuning_.step_grow;
    }
    if (std::abs(change) >= tuning_.restart_threshold) step_size_ = tuning_.step_percent * capacity;
    step_size_ = std::clamp(step_size_, tuning_.min_step_percent * capacity, tuning_.max_step_percent * capacity);
    previous_hit_rate_ = hit_rate;
    adjustment_ = static_cast<int64_t>(direction_ * step_size_);
    hits_in_sample_ = misses_in_sample_ = 0;
  }

  void demote_from_protected() {
    for (int i = 0; protected_weight_ > protected_max_ && i < kQueueTransferThreshold; ++i) {
      const NodeId id = protected_.front();
      if (id == kNoNode) break;
      move(id, TinyLfuHook::kProbation);
    }
  }

  /// Grows the window by up to adjustment_, moving main's LRU entries (probation first) into the
  /// window's MRU end. The capacity comes from protected first (as in Caffeine), then from
  /// probation, so the window can reach all but one unit of the cache (pure LRU, for workloads
  /// where recency is all that counts; Caffeine stops when protected is empty).
  void increase_window() {
    const uint64_t main = max_weight_ - window_max_;
    if (main <= 1) return;
    uint64_t quota = std::min(static_cast<uint64_t>(adjustment_), main - 1);
    const uint64_t from_protected = std::min(quota, protected_max_);
    protected_max_ -= from_protected;
    window_max_ += quota;
    demote_from_protected();
    for (int i = 0; i < kQueueTransferThreshold; ++i) {
      NodeId id = probation_.front();
      if (id == kNoNode || quota < hook_of_(id).weight) id = protected_.front();
      if (id == kNoNode) break;
      const uint32_t weight = hook_of_(id).weight;
      if (quota < weight) break;
      quota -= weight;
      move(id, TinyLfuHook::kWindow);
    }
    // Whatever could not be moved yet goes back (to protected first) and is retried next call.
    protected_max_ += std::min(quota, from_protected);
    window_max_ -= quota;
    adjustment_ = static_cast<int64_t>(quota);
    note_window_share();
  }

  /// Shrinks the window by up to -adjustment_ (keeping at least 1), moving its LRU entries into
  /// probation.
  void decrease_window() {
    if (window_max_ <= 1) return;
    uint64_t quota = std::min(static_cast<uint64_t>(-adjustment_), window_max_ - 1);
    window_max_ -= quota;
    // Protected gets the space back, up to its share of the main space (after a window that had
    // eaten into probation, probation needs its share back too).
    protected_max_ = std::max(protected_max_, std::min(protected_max_ + quota, scale(tuning_.main_protected, max_weight_ - window_max_)));
    for (int i = 0; i < kQueueTransferThreshold; ++i) {
      const NodeId id = window_.front();
      if (id == kNoNode) break;
      const uint32_t weight = hook_of_(id).weight;
      if (quota < weight) break;
      quota -= weight;
      move(id, TinyLfuHook::kProbation);
    }
    window_max_ += quota;
    protected_max_ = std::min(protected_max_, max_weight_ - window_max_);
    adjustment_ = -static_cast<int64_t>(quota);
    note_window_share();
  }

  /// What a resize keeps (set_max_weight()): the share the adaptation has moved the window
  /// to, counted from the initial window, so that the rounding of a small size (a window of
  /// 1 in a cache of 10 is the rounded-up 1%, not 10%) is never carried to a larger one.
  void note_window_share() {
    window_share_ = tuning_.initial_window;
    if (max_weight_ != 0 && window_max_ > initial_window_max_) {
      window_share_ += static_cast<double>(window_max_ - initial_window_max_) / static_cast<double>(max_weight_);
    }
  }

  TinyLfuTuning tuning_;
  HookOf hook_of_;
  List window_;
  List probation_;
  List protected_;
  FrequencySketch sketch_;

  uint64_t max_weight_ = 0;
  double window_share_ = 0;  // see note_window_share()
  uint64_t window_max_ = 0;
  uint64_t initial_window_max_ = 0;
  uint64_t protected_max_ = 0;
  uint64_t weighted_size_ = 0;
  uint64_t window_weight_ = 0;
  uint64_t probation_weight_ = 0;
  uint64_t protected_weight_ = 0;
  uint64_t entry_count_ = 0;

  // Hill climber state (one sample period = sketch_.sample_size() requests).
  uint64_t hits_in_sample_ = 0;
  uint64_t misses_in_sample_ = 0;
  double previous_hit_rate_ = 0;
  double step_size_ = 0;   // the stride of the next move, in weight units
  double direction_ = -1;  // +1 grows the window; the first move shrinks it, as in Caffeine
  uint64_t sample_period_ = UINT64_MAX;
  int64_t adjustment_ = 0;  // > 0: grow the window by this much; < 0: shrink it

  uint64_t random_ = 0x9E3779B97F4A7C15ULL;

  // Shadow guard (see guard_against_shadows()).
  ShadowCache lru_shadow_;
  ShadowCache lfu_shadow_;
  bool shadows_ready_ = false;
  uint32_t sample_threshold_ = 0;       // a fingerprint is sampled iff its 16-bit mix is below
  uint64_t guard_period_ = UINT64_MAX;  // sampled requests per comparison
  uint64_t guard_requests_ = 0;
  ShadowScore lru_;
  ShadowScore lfu_;
};

}  // namespace streamcache::detail
