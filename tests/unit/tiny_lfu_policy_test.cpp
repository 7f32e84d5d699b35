#include "streamcache/detail/tiny_lfu_policy.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "common/policy_replay.hpp"
#include "common/traces.hpp"

namespace streamcache::detail {
namespace {

uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// The cache's side, reduced to an arena of hooks; ids are arena indices.
struct Arena {
  std::vector<TinyLfuHook> hooks = std::vector<TinyLfuHook>(4096);
};
struct HookOf {
  Arena* arena;
  TinyLfuHook& operator()(NodeId id) const { return arena->hooks[id]; }
};

class TinyLfuPolicyTest : public ::testing::Test {
 protected:
  using Policy = TinyLfuPolicy<HookOf>;

  std::vector<NodeId> evict(Policy& policy) {
    std::vector<NodeId> evicted;
    policy.evict_if_needed([&](NodeId id) {
      EXPECT_TRUE(policy.contains(id)) << "the node is unlinked only after the callback";
      EXPECT_NE(arena_.hooks[id].weight, 0u) << "weightless entries are never chosen";
      evicted.push_back(id);
      return true;
    });
    return evicted;
  }
  void insert(Policy& policy, NodeId id, uint32_t weight = 1) {
    policy.on_insert(id, mix(id), weight);
    evict(policy);
  }

  Arena arena_;
};

TEST_F(TinyLfuPolicyTest, NewEntryEntersTheWindow) {
  Policy policy(100, HookOf{&arena_});
  EXPECT_EQ(policy.window_maximum(), 1u);  // 1% of 100
  EXPECT_EQ(policy.protected_maximum(), 79u);  // 80% of the 99 of main
  policy.on_insert(0, mix(0), 1);
  EXPECT_TRUE(policy.contains(0));
  EXPECT_EQ(arena_.hooks[0].region, TinyLfuHook::kWindow);
  EXPECT_EQ(policy.window_weight(), 1u);
  EXPECT_EQ(policy.entry_count(), 1u);
}

// Capacity 10: window 1, main 9 (protected up to 7). After 10 inserts probation holds 0..8,
// the window 9. Ids 0..3 are read (the sketch exists from the 5th insert on, so this gives
// them the same count of 1 as 4..9) and move to protected: probation is 4..8.
class DuelTest : public TinyLfuPolicyTest {
 protected:
  void fill(Policy& policy) {
    for (NodeId id = 0; id < 10; ++id) {
      insert(policy, id);
    }
    for (NodeId id = 0; id < 4; ++id) policy.on_access(id, mix(id));
    ASSERT_EQ(arena_.hooks[9].region, TinyLfuHook::kWindow);
    ASSERT_EQ(arena_.hooks[4].region, TinyLfuHook::kProbation);
    ASSERT_EQ(arena_.hooks[0].region, TinyLfuHook::kProtected);
  }
};

TEST_F(DuelTest, CandidateNoMorePopularThanVictimIsRejected) {
  Policy policy(10, HookOf{&arena_});
  fill(policy);
  policy.on_insert(10, mix(10), 1);
  // 9 leaves the window as the candidate; it ties with probation's LRU victim 4 and loses.
  EXPECT_EQ(evict(policy), std::vector<NodeId>{9});
  EXPECT_FALSE(policy.contains(9));
  EXPECT_TRUE(policy.contains(4));
  EXPECT_EQ(policy.weighted_size(), 10u);
  EXPECT_TRUE(policy.check_invariants());
}

TEST_F(DuelTest, MorePopularCandidateEvictsTheVictim) {
  Policy policy(10, HookOf{&arena_});
  fill(policy);
  policy.on_access(9, mix(9));
  policy.on_access(9, mix(9));
  policy.on_insert(10, mix(10), 1);
  EXPECT_EQ(evict(policy), std::vector<NodeId>{4});
  EXPECT_TRUE(policy.contains(9));
  EXPECT_EQ(arena_.hooks[9].region, TinyLfuHook::kProbation);
  EXPECT_TRUE(policy.check_invariants());
}

TEST_F(TinyLfuPolicyTest, ProbationHitIsPromotedAndOverflowDemotedAtMaintenance) {
  Policy policy(10, HookOf{&arena_});
  for (NodeId id = 0; id < 10; ++id) insert(policy, id);
  for (NodeId id = 0; id < 9; ++id) policy.on_access(id, mix(id));  // all of probation
  EXPECT_EQ(policy.protected_weight(), 9u);  // over its maximum of 7 until maintenance
  evict(policy);
  EXPECT_EQ(policy.protected_weight(), 7u);
  // The least recently promoted ones went back to probation.
  EXPECT_EQ(arena_.hooks[0].region, TinyLfuHook::kProbation);
  EXPECT_EQ(arena_.hooks[1].region, TinyLfuHook::kProbation);
  EXPECT_EQ(arena_.hooks[2].region, TinyLfuHook::kProtected);
  EXPECT_TRUE(policy.check_invariants());
}

TEST_F(TinyLfuPolicyTest, WeightsAreSummedAndEvictedUntilWithinMax) {
  Policy policy(10, HookOf{&arena_});
  insert(policy, 0, 4);
  insert(policy, 1, 4);
  EXPECT_EQ(policy.weighted_size(), 8u);
  policy.on_insert(2, mix(2), 4);
  const std::vector<NodeId> evicted = evict(policy);
  EXPECT_EQ(evicted.size(), 1u);
  EXPECT_EQ(policy.weighted_size(), 8u);
  EXPECT_EQ(policy.entry_count(), 2u);
  EXPECT_TRUE(policy.check_invariants());
}

TEST_F(TinyLfuPolicyTest, WeightlessEntryIsNeverChosen) {
  Policy policy(2, HookOf{&arena_});
  insert(policy, 0, 0);
  for (NodeId id = 1; id < 200; ++id) {
    insert(policy, id, 1);
    ASSERT_LE(policy.weighted_size(), 2u);
    ASSERT_TRUE(policy.contains(0));
  }
  EXPECT_EQ(policy.entry_count(), 3u);
  EXPECT_TRUE(policy.check_invariants());
}

TEST_F(TinyLfuPolicyTest, EvictReturningFalseStillUnlinksTheNode) {
  Policy policy(3, HookOf{&arena_});
  for (NodeId id = 0; id < 3; ++id) insert(policy, id);
  policy.on_insert(3, mix(3), 1);
  NodeId chosen = kNoNode;
  policy.evict_if_needed([&](NodeId id) {
    chosen = id;
    return false;  // the cache had already dropped it
  });
  ASSERT_NE(chosen, kNoNode);
  EXPECT_FALSE(policy.contains(chosen));
  EXPECT_EQ(arena_.hooks[chosen].region, TinyLfuHook::kNone);
  EXPECT_EQ(policy.weighted_size(), 3u);
  EXPECT_TRUE(policy.check_invariants());
}

TEST_F(TinyLfuPolicyTest, UpdateChangesTheWeightAndCanForceEviction) {
  Policy policy(10, HookOf{&arena_});
  for (NodeId id = 0; id < 5; ++id) insert(policy, id, 2);
  EXPECT_EQ(policy.weighted_size(), 10u);
  policy.on_update(2, mix(2), 5);
  EXPECT_EQ(policy.weighted_size(), 13u);
  EXPECT_EQ(arena_.hooks[2].weight, 5u);
  EXPECT_TRUE(policy.check_invariants());
  evict(policy);
  EXPECT_LE(policy.weighted_size(), 10u);
  policy.on_update(99, mix(99), 7);  // not in the policy: ignored
  policy.on_access(99, mix(99));
  policy.on_remove(99);
  EXPECT_FALSE(policy.contains(99));
  EXPECT_TRUE(policy.check_invariants());
}

TEST_F(TinyLfuPolicyTest, EntryUpdatedHeavierThanTheMaximumIsEvicted) {
  Policy policy(10, HookOf{&arena_});
  for (NodeId id = 0; id < 4; ++id) insert(policy, id, 1);
  policy.on_update(3, mix(3), 11);
  evict(policy);
  EXPECT_FALSE(policy.contains(3));
  EXPECT_LE(policy.weighted_size(), 10u);
  EXPECT_TRUE(policy.check_invariants());
}

TEST_F(TinyLfuPolicyTest, RemoveUnlinksFromAnyRegion) {
  Policy policy(10, HookOf{&arena_});
  for (NodeId id = 0; id < 10; ++id) insert(policy, id);
  policy.on_access(0, mix(0));  // protected
  policy.on_remove(0);          // protected
  policy.on_remove(5);          // probation
  policy.on_remove(9);          // window
  EXPECT_EQ(policy.entry_count(), 7u);
  EXPECT_EQ(policy.weighted_size(), 7u);
  EXPECT_EQ(policy.window_weight() + policy.probation_weight() + policy.protected_weight(), 7u);
  EXPECT_TRUE(policy.check_invariants());
}

TEST_F(TinyLfuPolicyTest, ZeroCapacityKeepsOnlyWeightlessEntries) {
  Policy policy(0, HookOf{&arena_});
  insert(policy, 0, 0);
  insert(policy, 1, 0);
  EXPECT_EQ(policy.entry_count(), 2u);
  EXPECT_FALSE(policy.sketch().initialized());
  EXPECT_TRUE(policy.check_invariants());
}

TEST_F(TinyLfuPolicyTest, UnboundedPolicyNeverAllocatesTheSketchNorEvicts) {
  Policy policy(UINT64_MAX, HookOf{&arena_});
  for (NodeId id = 0; id < 1000; ++id) insert(policy, id, 1'000'000);
  EXPECT_EQ(policy.entry_count(), 1000u);
  EXPECT_FALSE(policy.sketch().initialized());
  EXPECT_TRUE(policy.check_invariants());
}

// Random operations against a shadow model (id -> weight): sizes, counts and the per-region
// sums must agree at every step, and eviction must bring the total within the maximum.
TEST_F(TinyLfuPolicyTest, RegionSizesStayConsistentUnderRandomOperations) {
  for (const uint64_t max_weight : {1u, 7u, 64u, 300u}) {
    Arena arena;
    Policy policy(max_weight, HookOf{&arena});
    std::map<NodeId, uint32_t> shadow;
    std::mt19937_64 rng(max_weight);
    for (int step = 0; step < 20000; ++step) {
      const NodeId id = static_cast<NodeId>(rng() % 512);
      const uint64_t hash = mix(id % 97);  // repeated hashes: popular keys
      const auto weight = static_cast<uint32_t>(rng() % 4 == 0 ? 0 : 1 + rng() % std::min<uint64_t>(max_weight, 5));
      switch (rng() % 6) {
        case 0:
        case 1:
          if (!policy.contains(id)) {
            policy.on_insert(id, hash, weight);
            shadow[id] = weight;
          }
          break;
        case 2:
          policy.on_access(id, hash);
          break;
        case 3:
          policy.on_update(id, hash, weight);
          if (shadow.count(id) != 0) shadow[id] = weight;
          break;
        case 4:
          policy.on_remove(id);
          shadow.erase(id);
          break;
        default:
          policy.evict_if_needed([&](NodeId victim) {
            EXPECT_EQ(shadow.count(victim), 1u);
            EXPECT_NE(shadow[victim], 0u);
            shadow.erase(victim);
            return rng() % 2 == 0;
          });
          EXPECT_LE(policy.weighted_size(), max_weight);
          break;
      }
      uint64_t total = 0;
      for (const auto& [node, w] : shadow) total += w;
      ASSERT_EQ(policy.entry_count(), shadow.size()) << "step " << step;
      ASSERT_EQ(policy.weighted_size(), total) << "step " << step;
      ASSERT_TRUE(policy.check_invariants()) << "step " << step;
    }
  }
}

// set_max_weight() between random operations: after each, the next eviction brings the
// policy within the new maximum, and the invariants hold throughout (0 and unbounded too).
TEST_F(TinyLfuPolicyTest, ResizesBetweenRandomOperationsKeepTheRegionsConsistent) {
  Policy policy(64, HookOf{&arena_});
  std::map<NodeId, uint32_t> shadow;
  std::mt19937_64 rng(7);
  const uint64_t sizes[] = {0, 1, 2, 5, 64, 300, 1000, UINT64_MAX};
  for (int step = 0; step < 40000; ++step) {
    const NodeId id = static_cast<NodeId>(rng() % 1024);
    const uint64_t hash = mix(id % 97);
    const auto weight = static_cast<uint32_t>(rng() % 8 == 0 ? 0 : 1 + rng() % 4);
    switch (rng() % 8) {
      case 0:
      case 1:
      case 2:
        if (!policy.contains(id)) {
          policy.on_insert(id, hash, weight);
          shadow[id] = weight;
        }
        break;
      case 3:
        policy.on_access(id, hash);
        break;
      case 4:
        policy.on_remove(id);
        shadow.erase(id);
        break;
      case 5:
        if (rng() % 16 == 0) policy.set_max_weight(sizes[rng() % std::size(sizes)]);
        break;
      default:
        policy.evict_if_needed([&](NodeId victim) {
          EXPECT_EQ(shadow.erase(victim), 1u);
          return true;
        });
        ASSERT_LE(policy.weighted_size(), policy.max_weight()) << "step " << step;
        break;
    }
    ASSERT_EQ(policy.entry_count(), shadow.size()) << "step " << step;
    ASSERT_TRUE(policy.check_invariants()) << "step " << step;
  }
}

TEST(TinyLfuPolicyResize, AResizedCacheHitsAsOftenAsOneBuiltAtTheNewSize) {
  // A zipf workload long enough for both to settle: after the resize, the policy must do as
  // well as one that had the new size from the start, growing and shrinking (hit ratios
  // over the last 400000 requests).
  const auto trace = bench::generate_trace("zipf --s 0.9 --n 200000 --length 900000 --seed 3");
  for (const auto& [from, to] : {std::pair<uint64_t, uint64_t>{500, 4000}, {16000, 4000}}) {
    bench::PolicySimulator resized(from);
    bench::PolicySimulator built(to);
    uint64_t resized_hits = 0;
    uint64_t built_hits = 0;
    for (size_t i = 0; i < trace.size(); ++i) {
      if (i == 300000) resized.resize(to);
      const bool r = resized.access(trace[i]);
      const bool b = built.access(trace[i]);
      if (i >= 500000) {
        resized_hits += r ? 1 : 0;
        built_hits += b ? 1 : 0;
      }
    }
    EXPECT_EQ(resized.size(), to);
    // No worse by more than a point. (Shrunk, it does better: its sketch, sized for the
    // larger cache and aged less often, holds more history.)
    EXPECT_GE(resized_hits + 4000, built_hits) << from << " -> " << to;
    EXPECT_TRUE(resized.policy().check_invariants());
  }
}

TEST(TinyLfuPolicyResize, TheWindowKeepsTheShareItAdaptedTo) {
  const auto trace = bench::generate_trace("shift --length 1000000");
  bench::PolicySimulator sim(2000);
  for (const uint64_t key : trace) sim.access(key);
  const double share = static_cast<double>(sim.policy().window_maximum()) / 2000.0;
  ASSERT_GT(share, 0.25);  // the recency-biased trace grew it (WindowGrowsOnARecencyBiasedTrace)
  sim.resize(4000);
  EXPECT_NEAR(static_cast<double>(sim.policy().window_maximum()) / 4000.0, share, 0.001);
  sim.resize(100);
  EXPECT_NEAR(static_cast<double>(sim.policy().window_maximum()) / 100.0, share, 0.01);
  EXPECT_EQ(sim.size(), 100u);
  EXPECT_TRUE(sim.policy().check_invariants());
}

TEST(TinyLfuPolicyResize, ARoundTripThroughATinySizeKeepsTheWindowTheAdaptationChose) {
  // At 1, 2 or 10 entries the window is 1 entry by rounding, a share the adaptation never
  // chose: back at 10000 the window is its initial 1% again, not 100%, 50% or 10%.
  const auto trace = bench::generate_trace("zipf --s 0.9 --n 200000 --length 200000 --seed 5");
  for (const uint64_t tiny : {1u, 2u, 10u}) {
    bench::PolicySimulator sim(10000);
    for (const uint64_t key : trace) sim.access(key);
    ASSERT_EQ(sim.policy().window_maximum(), 100u) << "the zipf trace keeps the window at 1%";
    sim.resize(tiny);
    sim.resize(10000);
    EXPECT_EQ(sim.policy().window_maximum(), 100u) << "via " << tiny;
  }
}

TEST(TinyLfuPolicyResize, AWindowAdaptedBackToItsLowestAtATinySizeComesBackAtTheInitialShare) {
  // At 10 entries the guard grows the window on a recency phase, then shrinks it back to
  // 1 entry on a loop a little larger than the cache: 1 of 10 is the rounded-up 1%, so back
  // at 10000 the window is 100, not 1000.
  bench::PolicySimulator sim(10000);
  sim.resize(10);
  uint64_t grown = 0;
  for (uint64_t i = 0; i < 200000; ++i) {  // key i at i, i + 3 and i + 6
    sim.access(i);
    if (i >= 3) sim.access(i - 3);
    if (i >= 6) sim.access(i - 6);
    grown = std::max(grown, sim.policy().window_maximum());
  }
  ASSERT_GT(grown, 1u) << "the recency phase must grow the window";
  for (int round = 0; round < 20000; ++round) {
    for (uint64_t k = 0; k < 13; ++k) sim.access(1000000 + k);
  }
  ASSERT_EQ(sim.policy().window_maximum(), 1u) << "the loop must shrink it back";
  sim.resize(10000);
  EXPECT_EQ(sim.policy().window_maximum(), 100u);
}

TEST(TinyLfuPolicyResize, TheShadowsRestartEmptyAtTheNewSize) {
  const auto trace = bench::generate_trace("zipf --s 0.9 --n 200000 --length 300000 --seed 5");
  bench::PolicySimulator sim(40000);
  for (size_t i = 0; i < trace.size() / 2; ++i) sim.access(trace[i]);
  // 40000 entries sampled at 1/32: the shadows hold 1250 each.
  ASSERT_EQ(sim.policy().shadow_weight(), 40000u / 32);
  sim.resize(4000);
  EXPECT_EQ(sim.policy().shadow_weight(), 0u);
  for (size_t i = trace.size() / 2; i < trace.size(); ++i) sim.access(trace[i]);
  EXPECT_EQ(sim.policy().shadow_weight(), 1024u) << "at 4000, 1024 per shadow (guard_entries)";
}

TEST(TinyLfuPolicyResize, ACacheResizedToUnboundedStopsShadowing) {
  // The shadows would be sized for an unbounded cache: they would keep every sampled key.
  bench::PolicySimulator sim(1000);
  for (uint64_t key = 0; key < 5000; ++key) sim.access(key);
  ASSERT_GT(sim.policy().shadow_weight(), 0u);
  sim.resize(UINT64_MAX);
  for (uint64_t key = 100000; key < 300000; ++key) sim.access(key);
  EXPECT_EQ(sim.policy().shadow_weight(), 0u);
  EXPECT_EQ(sim.size(), 5000u - 4000u + 200000u);  // keeps the 1000 it had, and every new key
}

TEST(TinyLfuPolicyResize, ACacheBuiltEmptyAllocatesItsSketchOnceResizedBelowTwiceItsContents) {
  Arena arena;
  TinyLfuPolicy<HookOf> policy(UINT64_MAX, HookOf{&arena});
  for (NodeId id = 0; id < 100; ++id) policy.on_insert(id, mix(id), 1);
  EXPECT_FALSE(policy.sketch().initialized());
  policy.set_max_weight(150);  // already more than half full
  EXPECT_TRUE(policy.sketch().initialized());
  EXPECT_TRUE(policy.check_invariants());
}

TEST(TinyLfuPolicyAdaptation, WindowGrowsOnARecencyBiasedTrace) {
  const auto trace = bench::generate_trace("shift --length 1000000");
  bench::PolicySimulator sim(2000);
  for (const uint64_t key : trace) sim.access(key);
  // Starts at 1% (20): the hot set moves, so the LRU shadow wins and the window grows.
  EXPECT_GT(sim.policy().window_maximum(), 2000u / 4);
  EXPECT_TRUE(sim.policy().check_invariants());
}

TEST(TinyLfuPolicyAdaptation, WindowCanTakeNearlyTheWholeCache) {
  // shift at 5000: only LRU-like behaviour keeps up, so the window must grow past protected's
  // share into probation's (Caffeine's climber stops at 80%).
  const auto trace = bench::generate_trace("shift --length 300000");
  bench::PolicySimulator sim(5000);
  for (const uint64_t key : trace) sim.access(key);
  EXPECT_GT(sim.policy().window_maximum(), 5000u * 9 / 10);
  EXPECT_TRUE(sim.policy().check_invariants());
}

TEST(TinyLfuPolicyAdaptation, WindowStaysSmallOnALoop) {
  const auto trace = bench::generate_trace("loop --k 5000 --length 500000");
  bench::PolicySimulator sim(4500);
  for (const uint64_t key : trace) sim.access(key);
  // A loop longer than the cache: every window slot is a wasted slot.
  EXPECT_LT(sim.policy().window_maximum(), 4500u / 10);
  EXPECT_TRUE(sim.policy().check_invariants());
}

TEST(TinyLfuPolicyAdaptation, WindowShrinksBackWhenTheWorkloadTurnsFrequencyBiased) {
  // A recency phase grows the window; a static Zipf phase after it must give the space back to
  // the main region (the 1%-window shadow beats the grown window there).
  auto trace = bench::generate_trace("shift --length 200000");
  const auto zipf = bench::generate_trace("zipf --s 0.99 --n 1048576 --length 600000 --seed 1");
  trace.insert(trace.end(), zipf.begin(), zipf.end());
  bench::PolicySimulator sim(2000);
  uint64_t peak = 0;
  for (size_t i = 0; i < trace.size(); ++i) {
    sim.access(trace[i]);
    if (i < 200000) peak = std::max(peak, sim.policy().window_maximum());
  }
  EXPECT_GT(peak, 2000u / 4);
  EXPECT_LT(sim.policy().window_maximum(), 2000u / 10);
  EXPECT_TRUE(sim.policy().check_invariants());
}

TEST(TinyLfuPolicyAdaptation, RegionSizesStayConsistentWhileTheWindowMoves) {
  // The hill climber (off by default) and the shadow guard both resize the regions; with small
  // periods they do so often. Invariants must hold after every maintenance call.
  TinyLfuTuning tuning;
  tuning.step_percent = 0.0625;
  tuning.sample_factor = 2;
  tuning.guard_entries = 64;
  const auto trace = bench::generate_trace("shift --length 200000 --n 2000 --drift 500 --phase-len 4000");
  bench::PolicySimulator sim(300, tuning);
  uint64_t moves = 0;
  uint64_t last_window = sim.policy().window_maximum();
  for (size_t i = 0; i < trace.size(); ++i) {
    sim.access(trace[i]);
    if (sim.policy().window_maximum() != last_window) {
      ++moves;
      last_window = sim.policy().window_maximum();
    }
    if (i % 97 == 0) {
      ASSERT_TRUE(sim.policy().check_invariants()) << "access " << i;
    }
    ASSERT_LE(sim.policy().weighted_size(), 300u);
  }
  EXPECT_GT(moves, 10u);
}

TEST(ShadowCacheTest, LruModeIsAnExactLru) {
  // All keys sampled, window share 1: the shadow must hit exactly when an LRU does.
  const auto trace = bench::generate_trace("zipf --s 0.9 --n 5000 --length 50000 --seed 7");
  ShadowCache shadow;
  shadow.init(300, 1.0);
  uint64_t hits = 0;
  for (const uint64_t key : trace) {
    hits += shadow.access(static_cast<uint32_t>(key), 1, [](uint32_t) { return 0u; }) ? 1 : 0;
  }
  EXPECT_EQ(static_cast<double>(hits) / static_cast<double>(trace.size()), bench::replay_lru(trace, 300));
}

TEST(ShadowCacheTest, TinyLfuModeAdmitsOnlyMorePopularCandidates) {
  ShadowCache shadow;
  shadow.init(100, 0.01);  // window 1, main 99
  const auto popular = [](uint32_t fp) { return fp < 1000 ? 5u : 1u; };
  for (uint32_t fp = 0; fp < 100; ++fp) shadow.access(fp, 1, popular);  // fill with popular keys
  EXPECT_TRUE(shadow.full());
  for (uint32_t fp = 5000; fp < 5100; ++fp) shadow.access(fp, 1, popular);  // unpopular scan
  uint64_t hits = 0;
  for (uint32_t fp = 0; fp < 99; ++fp) hits += shadow.access(fp, 1, popular) ? 1 : 0;
  // All but the one in the window when the scan began (it had to duel) survive the scan.
  EXPECT_GE(hits, 98u);
}

}  // namespace
}  // namespace streamcache::detail
