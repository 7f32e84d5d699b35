#include "streamcache/detail/timer_wheel.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace streamcache::detail {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

constexpr int64_t kNs = 1;
constexpr int64_t kUs = 1'000;
constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSecond = 1'000 * kMs;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kYear = 365 * kDay;
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
// Where ManualClock starts: one hour after the epoch.
constexpr int64_t kStart = kHour;

struct ArenaHooks {
  std::vector<TimerWheelHook>* arena;
  TimerWheelHook& operator()(NodeId id) const { return (*arena)[id]; }
};
using Wheel = TimerWheel<ArenaHooks>;

int64_t tick(int level, int64_t t) { return t >> Wheel::shift(level); }

// Plays the cache's part: keeps each node's real deadline (the wheel does not)
// and, when the wheel hands a node over, expires it if due or schedules it
// again at its deadline. Checks the wheel's promises on every hand-over.
class FakeCache {
 public:
  explicit FakeCache(size_t nodes, int64_t now = kStart)
      : hooks_(nodes), deadline_(nodes, 0), live_(nodes, false), scheduled_at_(nodes, 0), coarse_passes_(nodes, 0),
        finest_passes_(nodes, 0), wheel_(ArenaHooks{&hooks_}, now) {}
  FakeCache(const FakeCache&) = delete;
  FakeCache& operator=(const FakeCache&) = delete;

  void schedule(NodeId id, int64_t deadline) {
    deadline_[id] = deadline;
    live_[id] = true;
    scheduled_at_[id] = wheel_.now();
    coarse_passes_[id] = 0;
    wheel_.schedule(id, deadline);
  }
  void deschedule(NodeId id) {
    live_[id] = false;
    wheel_.deschedule(id);
  }

  // The nodes expired by this advance, in hand-over order. `also`, if given,
  // runs inside on_due after the node is dealt with (to interfere).
  template <class Also>
  std::vector<NodeId> advance(int64_t now, Also&& also) {
    std::vector<NodeId> expired;
    wheel_.advance(now, [&](NodeId id) {
      EXPECT_FALSE(wheel_.scheduled(id));
      EXPECT_TRUE(live_[id]) << "node " << id << " handed over but not scheduled";
      const int64_t deadline = deadline_[id];
      if (deadline <= now) {
        expired.push_back(id);
        live_[id] = false;
      } else {
        // Early hand-over. Outside the current finest bucket it is a cascade:
        // at most one per level below the top, plus one per overflow lap.
        if (tick(0, now) < tick(0, deadline)) {
          ++coarse_passes_[id];
          EXPECT_LE(coarse_passes_[id],
                    (Wheel::kLevels - 1) + (tick(Wheel::kLevels, now) - tick(Wheel::kLevels, scheduled_at_[id])))
              << "node " << id << " deadline " << deadline << " now " << now;
        } else {
          ++finest_passes_[id];
        }
        wheel_.schedule(id, deadline);
      }
      also(id);
    });
    return expired;
  }
  std::vector<NodeId> advance(int64_t now) {
    return advance(now, [](NodeId) {});
  }

  Wheel& wheel() { return wheel_; }
  bool live(NodeId id) const { return live_[id]; }
  int coarse_passes(NodeId id) const { return coarse_passes_[id]; }
  int finest_passes(NodeId id) const { return finest_passes_[id]; }

 private:
  std::vector<TimerWheelHook> hooks_;
  std::vector<int64_t> deadline_;
  std::vector<bool> live_;  // scheduled, as far as the cache knows
  std::vector<int64_t> scheduled_at_;
  std::vector<int> coarse_passes_;
  std::vector<int> finest_passes_;
  Wheel wheel_;
};

// Deadlines at every scale, including both sides of each level's bucket and
// level boundaries (relative to an aligned and an unaligned start).
std::vector<int64_t> offsets_at_every_scale() {
  std::vector<int64_t> offsets = {1 * kNs,      999 * kNs,  1 * kUs,     1 * kMs,     2 * kMs,
                                  63 * kMs,     64 * kMs,   67 * kMs,    1 * kSecond, 4 * kSecond,
                                  5 * kSecond,  1 * kMinute, 5 * kMinute, 1 * kHour,   5 * kHour,
                                  1 * kDay,     13 * kDay,  14 * kDay,   1 * kYear,   2 * kYear,
                                  3 * kYear,    10 * kYear, 100 * kYear, 250 * kYear};
  for (int level = 0; level <= Wheel::kLevels; ++level) {
    for (int64_t buckets : {1, 2, 63, 64, 65}) {
      const int64_t span = int64_t{1} << Wheel::shift(level);
      if (buckets * span > 250 * kYear) continue;
      offsets.push_back(buckets * span - 1);
      offsets.push_back(buckets * span);
      offsets.push_back(buckets * span + 1);
    }
  }
  return offsets;
}

std::vector<int64_t> starts() {
  return {kStart, int64_t{1} << 40 /* aligned on levels 0-3 */, kStart + 123'456'789'012,
          0, -kYear};
}

TEST(TimerWheel, HandsOverAtDeadlineNotBeforeAtEveryScale) {
  for (const int64_t start : starts()) {
    for (const int64_t offset : offsets_at_every_scale()) {
      const int64_t d = start + offset;
      SCOPED_TRACE("start " + std::to_string(start) + " offset " + std::to_string(offset));
      FakeCache cache(1, start);
      cache.schedule(0, d);
      EXPECT_EQ(cache.wheel().size(), 1u);
      EXPECT_THAT(cache.advance(d - 1), IsEmpty());
      EXPECT_TRUE(cache.wheel().scheduled(0));
      EXPECT_THAT(cache.advance(d), ElementsAre(0u));
      EXPECT_FALSE(cache.wheel().scheduled(0));
      EXPECT_EQ(cache.wheel().size(), 0u);
    }
  }
}

// Time walks towards the deadline in doubling steps, so the node cascades
// through every level it was placed above level 0.
TEST(TimerWheel, HandsOverAtDeadlineAfterCascadingThroughLevels) {
  for (const int64_t start : starts()) {
    for (const int64_t offset : offsets_at_every_scale()) {
      const int64_t d = start + offset;
      SCOPED_TRACE("start " + std::to_string(start) + " offset " + std::to_string(offset));
      FakeCache cache(1, start);
      cache.schedule(0, d);
      for (int bit = 0; bit < 63 && (int64_t{1} << bit) < offset - 1; ++bit) {
        const int64_t step = int64_t{1} << bit;
        ASSERT_THAT(cache.advance(start + step), IsEmpty()) << "step " << step;
        ASSERT_TRUE(cache.wheel().scheduled(0));
      }
      EXPECT_THAT(cache.advance(d - 1), IsEmpty());
      EXPECT_THAT(cache.advance(d), ElementsAre(0u));
      EXPECT_LE(cache.coarse_passes(0), Wheel::kLevels - 1 + tick(Wheel::kLevels, d) - tick(Wheel::kLevels, start));
    }
  }
}

TEST(TimerWheel, HandsOverDeadlinesNearInt64Max) {
  for (const int64_t d : {kMax - 1, kMax}) {
    FakeCache cache(1);
    cache.schedule(0, d);
    EXPECT_THAT(cache.advance(kStart + 200 * kYear), IsEmpty());
    EXPECT_THAT(cache.advance(d - 1), IsEmpty());
    EXPECT_THAT(cache.advance(d), ElementsAre(0u));
  }
}

TEST(TimerWheel, PastDeadlinesGoToTheNextAdvance) {
  FakeCache cache(5);
  EXPECT_THAT(cache.advance(kStart + 5 * kSecond), IsEmpty());
  const int64_t now = cache.wheel().now();
  cache.schedule(0, now);
  cache.schedule(1, now - 1);
  cache.schedule(2, now - 3 * kSecond);
  cache.schedule(3, now - 10 * kYear);
  cache.schedule(4, kMin);
  // Same time again: the wheel's time does not move, the due nodes still go, in
  // deadline order.
  EXPECT_THAT(cache.advance(now), ElementsAre(4u, 3u, 2u, 1u, 0u));
  EXPECT_EQ(cache.wheel().size(), 0u);
}

TEST(TimerWheel, NodeInCurrentFinestTickIsHandedOverOnlyWhenDue) {
  const int64_t aligned = int64_t{1} << 40;
  FakeCache cache(1, aligned);
  const int64_t d = aligned + (int64_t{1} << Wheel::kFinestShift) - 1;  // last ns of the current tick
  cache.schedule(0, d);
  EXPECT_THAT(cache.advance(aligned + 10), IsEmpty());
  EXPECT_THAT(cache.advance(d - 1), IsEmpty());
  EXPECT_EQ(cache.finest_passes(0), 0);
  EXPECT_THAT(cache.advance(d), ElementsAre(0u));
}

// Found by a review: the current finest bucket was handed over whole on every
// advance, so n entries written within one tick, with maintenance after each,
// cost O(n^2) hand-overs (20000 inserts with a 100 us time-to-live, 10 s).
TEST(TimerWheel, AdvancesWithinOneTickHandOverEachNodeOnceAtItsDeadline) {
  constexpr NodeId kNodes = 2000;
  const int64_t aligned = int64_t{1} << 40;
  FakeCache cache(kNodes, aligned);
  std::mt19937_64 rng(11);
  std::vector<int64_t> deadlines(kNodes);
  int64_t now = aligned;
  for (NodeId id = 0; id < kNodes; ++id) {
    // Within the current tick, in no particular order, each scheduled between two
    // advances to the same time (a stopped clock).
    deadlines[id] = aligned + 1 + static_cast<int64_t>(rng() % ((int64_t{1} << Wheel::kFinestShift) - 2));
    cache.schedule(id, deadlines[id]);
    EXPECT_THAT(cache.advance(now), IsEmpty());
  }
  std::vector<NodeId> handed;
  for (int step = 1; step <= 100; ++step) {
    now = aligned + step * ((int64_t{1} << Wheel::kFinestShift) / 100);
    for (NodeId id : cache.advance(now)) handed.push_back(id);
  }
  for (NodeId id : cache.advance(aligned + (int64_t{1} << Wheel::kFinestShift))) handed.push_back(id);
  EXPECT_EQ(handed.size(), size_t{kNodes});
  for (size_t i = 1; i < handed.size(); ++i) {
    ASSERT_LE(deadlines[handed[i - 1]], deadlines[handed[i]]) << "hand-over " << i << " out of deadline order";
  }
  for (NodeId id = 0; id < kNodes; ++id) EXPECT_EQ(cache.finest_passes(id), 0) << id;
}

TEST(TimerWheel, NodeMovedEarlierWithinTheCurrentTickIsHandedOverOnlyAtItsNewDeadline) {
  const int64_t aligned = int64_t{1} << 40;
  FakeCache cache(2, aligned);
  cache.schedule(0, aligned + 300);
  cache.schedule(0, aligned + 100);  // its entry at 300 is no longer live
  cache.schedule(1, aligned + 200);
  cache.deschedule(1);               // likewise, and the node is gone
  EXPECT_THAT(cache.advance(aligned + 99), IsEmpty());
  EXPECT_THAT(cache.advance(aligned + 250), ElementsAre(0u));
  EXPECT_FALSE(cache.live(1));
  EXPECT_THAT(cache.advance(aligned + 300), IsEmpty());
  EXPECT_EQ(cache.finest_passes(0), 0);
  EXPECT_EQ(cache.wheel().size(), 0u);
}

// Found by a second review: every schedule into the heap pushed an entry, and entries left
// only when due, so rescheduling while the clock stood still grew the heap without bound
// (2M rewrites of one key with a 100 us time-to-live, 32 MB).
TEST(TimerWheel, RescheduleInTheCurrentTickKeepsTheHeapWithinItsNodes) {
  constexpr NodeId kNodes = 64;
  const int64_t aligned = int64_t{1} << 40;
  FakeCache cache(kNodes, aligned);
  const size_t bound = 2 * kNodes + Wheel::kHeapKeptCapacity;
  for (int round = 0; round < 20000; ++round) {
    const NodeId id = static_cast<NodeId>(round % kNodes);
    switch (round % 3) {
      case 0:  // the same deadline again (a rewrite on a stopped clock)
        cache.schedule(id, aligned + 1000);
        break;
      case 1:  // an earlier one: a new entry
        cache.schedule(id, aligned + 1000 - round % 997);
        break;
      default:  // out and back in
        if (cache.live(id)) cache.deschedule(id);
        cache.schedule(id, aligned + 500);
        break;
    }
    ASSERT_LE(cache.wheel().heap_entries(), bound) << "round " << round;
  }
  EXPECT_THAT(cache.advance(aligned + 2000).size(), kNodes);
  EXPECT_EQ(cache.wheel().size(), 0u);
  EXPECT_EQ(cache.wheel().heap_entries(), 0u);
}

TEST(TimerWheel, NodeScheduledLaterWithinTheHeapIsHandedOverOnceEarlyThenAtItsDeadline) {
  const int64_t aligned = int64_t{1} << 40;
  FakeCache cache(1, aligned);
  cache.schedule(0, aligned + 100);
  cache.schedule(0, aligned + 300);  // keeps its entry at 100
  EXPECT_EQ(cache.wheel().heap_entries(), 1u);
  EXPECT_THAT(cache.advance(aligned + 100), IsEmpty());  // early: rescheduled at 300
  EXPECT_EQ(cache.finest_passes(0), 1);
  EXPECT_THAT(cache.advance(aligned + 299), IsEmpty());
  EXPECT_THAT(cache.advance(aligned + 300), ElementsAre(0u));
}

TEST(TimerWheel, SchedulingAgainMovesTheNode) {
  FakeCache cache(3);
  cache.schedule(0, kStart + 10 * kSecond);
  cache.schedule(0, kStart + 2 * kSecond);  // earlier
  cache.schedule(1, kStart + 1 * kSecond);
  cache.schedule(1, kStart + 1 * kHour);  // later
  cache.schedule(2, kStart + 5 * kMs);
  cache.schedule(2, kStart + 5 * kMs + 1);  // same bucket
  EXPECT_EQ(cache.wheel().size(), 3u);
  EXPECT_THAT(cache.advance(kStart + 5 * kMs + 1), ElementsAre(2u));
  EXPECT_THAT(cache.advance(kStart + 2 * kSecond), ElementsAre(0u));  // 2 s
  EXPECT_THAT(cache.advance(kStart + 59 * kMinute), IsEmpty());       // 59 min
  EXPECT_THAT(cache.advance(kStart + 1 * kHour), ElementsAre(1u));    // 1 h
  EXPECT_EQ(cache.wheel().size(), 0u);
}

TEST(TimerWheel, DescheduledNodeIsNeverHandedOver) {
  FakeCache cache(4);
  cache.schedule(0, kStart + 1 * kSecond);
  cache.schedule(1, kStart + 1 * kSecond);
  cache.schedule(2, kStart + 1 * kSecond);
  cache.deschedule(1);
  cache.deschedule(1);  // twice: no-op
  cache.deschedule(3);  // never scheduled: no-op
  EXPECT_FALSE(cache.wheel().scheduled(1));
  EXPECT_EQ(cache.wheel().size(), 2u);
  EXPECT_THAT(cache.advance(kStart + 1 * kYear), ElementsAre(0u, 2u));
  EXPECT_EQ(cache.wheel().size(), 0u);
}

TEST(TimerWheel, OnDueMayScheduleAndDescheduleAnyNode) {
  std::vector<TimerWheelHook> hooks(5);
  Wheel wheel(ArenaHooks{&hooks}, kStart);
  const int64_t d = kStart + 1 * kSecond;
  for (NodeId id = 0; id < 4; ++id) wheel.schedule(id, d);
  std::vector<NodeId> handed;
  wheel.advance(d, [&](NodeId id) {
    handed.push_back(id);
    if (id == 0) {
      wheel.deschedule(1);                 // still waiting to be handed over
      wheel.schedule(2, d + 1 * kSecond);  // likewise: moved away instead
      wheel.schedule(0, d + 5 * kMs);      // itself, to a later time
      wheel.schedule(4, d + 1);            // a node not scheduled before
    }
  });
  EXPECT_THAT(handed, ElementsAre(0u, 3u));
  EXPECT_TRUE(wheel.scheduled(0));
  EXPECT_FALSE(wheel.scheduled(1));
  EXPECT_TRUE(wheel.scheduled(2));
  EXPECT_FALSE(wheel.scheduled(3));
  EXPECT_TRUE(wheel.scheduled(4));
  EXPECT_EQ(wheel.size(), 3u);

  handed.clear();
  wheel.advance(d + 5 * kMs, [&](NodeId id) { handed.push_back(id); });
  EXPECT_THAT(handed, ElementsAre(4u, 0u));  // deadline order across the two buckets
  handed.clear();
  wheel.advance(d + 1 * kSecond, [&](NodeId id) { handed.push_back(id); });
  EXPECT_THAT(handed, ElementsAre(2u));
}

TEST(TimerWheel, RescheduleIntoBucketBeingDrainedDoesNotLoop) {
  std::vector<TimerWheelHook> hooks(1);
  Wheel wheel(ArenaHooks{&hooks}, kStart);
  wheel.schedule(0, kStart);
  int calls = 0;
  // Rescheduling at a deadline already due lands in the current bucket; it
  // goes to the next advance rather than back into this one.
  wheel.advance(kStart, [&](NodeId id) {
    ++calls;
    wheel.schedule(id, kStart);
  });
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(wheel.scheduled(0));
  wheel.advance(kStart, [&](NodeId) { ++calls; });
  EXPECT_EQ(calls, 2);
  EXPECT_FALSE(wheel.scheduled(0));
}

TEST(TimerWheel, AdvancingBackwardsIsNoOp) {
  FakeCache cache(1);
  EXPECT_THAT(cache.advance(kStart + 10 * kSecond), IsEmpty());
  cache.schedule(0, kStart + 11 * kSecond);
  EXPECT_THAT(cache.advance(kStart + 1 * kSecond), IsEmpty());
  EXPECT_EQ(cache.wheel().now(), kStart + 10 * kSecond);
  EXPECT_THAT(cache.advance(kStart + 11 * kSecond), ElementsAre(0u));
}

TEST(TimerWheel, ThrowingOnDueLeavesTheRestForTheNextAdvance) {
  FakeCache cache(3);
  for (NodeId id = 0; id < 3; ++id) cache.schedule(id, kStart + 1 * kSecond);
  std::vector<NodeId> seen;
  EXPECT_THROW(cache.advance(kStart + 1 * kSecond,
                             [&](NodeId id) {
                               seen.push_back(id);
                               throw std::runtime_error("listener failed");
                             }),
               std::runtime_error);
  EXPECT_THAT(seen, ElementsAre(0u));
  EXPECT_EQ(cache.wheel().size(), 2u);
  EXPECT_TRUE(cache.wheel().scheduled(1));
  cache.deschedule(2);  // still unlinks correctly from where it waits
  EXPECT_THAT(cache.advance(kStart + 1 * kSecond), ElementsAre(1u));
  EXPECT_EQ(cache.wheel().size(), 0u);
}

TEST(TimerWheel, LargeJumpHandsOverEverythingDueInOneCall) {
  const std::vector<int64_t> offsets = offsets_at_every_scale();
  FakeCache cache(offsets.size());
  std::vector<NodeId> due;
  for (NodeId id = 0; id < offsets.size(); ++id) {
    cache.schedule(id, kStart + offsets[id]);
    if (offsets[id] <= kYear) due.push_back(id);
  }
  EXPECT_THAT(cache.advance(kStart + kYear), UnorderedElementsAreArray(due));  // a year in one call
  EXPECT_EQ(cache.wheel().size(), offsets.size() - due.size());
  for (NodeId id = 0; id < offsets.size(); ++id) {
    EXPECT_EQ(cache.wheel().scheduled(id), offsets[id] > kYear) << offsets[id];
  }
  EXPECT_EQ(cache.advance(kStart + 280 * kYear).size(), offsets.size() - due.size());
  EXPECT_EQ(cache.wheel().size(), 0u);
}

TEST(TimerWheel, ClearDeschedulesEverything) {
  FakeCache cache(3);
  cache.schedule(0, kStart + 1 * kMs);
  cache.schedule(1, kStart + 1 * kDay);
  cache.schedule(2, kStart + 10 * kYear);
  cache.wheel().clear();
  EXPECT_EQ(cache.wheel().size(), 0u);
  for (NodeId id = 0; id < 3; ++id) EXPECT_FALSE(cache.wheel().scheduled(id));
  std::vector<NodeId> handed;
  cache.wheel().advance(kStart + 20 * kYear, [&](NodeId id) { handed.push_back(id); });
  EXPECT_THAT(handed, IsEmpty());
  cache.schedule(1, kStart + 21 * kYear);  // hooks are reusable
  EXPECT_THAT(cache.advance(kStart + 21 * kYear), ElementsAre(1u));
}

// A random offset whose magnitude is spread evenly over powers of two up to
// 2^max_bits, so every level gets its share.
int64_t log_uniform(std::mt19937_64& rng, int max_bits) {
  const int bits = std::uniform_int_distribution<int>(0, max_bits)(rng);
  return static_cast<int64_t>(rng() & ((uint64_t{1} << bits) - 1));
}

TEST(TimerWheel, MatchesReferenceModelUnderRandomOperations) {
  constexpr NodeId kNodes = 512;
  constexpr int kOps = 40'000;
  std::mt19937_64 rng(20240611);
  FakeCache cache(kNodes);
  std::multimap<int64_t, NodeId> model;  // deadline -> node
  std::vector<std::multimap<int64_t, NodeId>::iterator> where(kNodes, model.end());
  auto model_erase = [&](NodeId id) {
    if (where[id] != model.end()) model.erase(std::exchange(where[id], model.end()));
  };
  auto model_schedule = [&](NodeId id, int64_t deadline) {
    model_erase(id);
    where[id] = model.emplace(deadline, id);
  };
  auto random_deadline = [&](int64_t now) {
    const int roll = std::uniform_int_distribution<int>(0, 99)(rng);
    if (roll < 5) return now - log_uniform(rng, 40);  // already past
    if (roll < 8) return now + log_uniform(rng, 62);  // anything up to ~146 years
    return now + log_uniform(rng, 45);                // up to ~10 hours
  };

  int64_t now = kStart;
  size_t handed_total = 0;
  for (int op = 0; op < kOps; ++op) {
    const int roll = std::uniform_int_distribution<int>(0, 99)(rng);
    const auto id = static_cast<NodeId>(rng() % kNodes);
    if (roll < 50) {
      const int64_t deadline = random_deadline(now);
      cache.schedule(id, deadline);
      model_schedule(id, deadline);
    } else if (roll < 60) {
      cache.deschedule(id);
      model_erase(id);
    } else {
      // Mostly < 1 min, sometimes up to ~1.6 years; now stays below 2^61 so
      // that now + 2^62 (the farthest deadline) does not overflow.
      const int64_t step = roll < 99 ? log_uniform(rng, 36) : log_uniform(rng, 55);
      if (now + step < (int64_t{1} << 61)) now += step;
      std::set<NodeId> expected;
      for (auto it = model.begin(); it != model.end() && it->first <= now; ++it) expected.insert(it->second);
      // Interfere from inside on_due now and then, as an eviction listener
      // touching other entries might.
      std::set<NodeId> handed_so_far;
      const auto expired = cache.advance(now, [&](NodeId handed) {
        ++handed_total;
        handed_so_far.insert(handed);
        if (!cache.live(handed)) model_erase(handed);
        if (rng() % 16 != 0) return;
        const auto other = static_cast<NodeId>(rng() % kNodes);
        // Touching a node before the wheel reached it takes it out of this
        // advance; one already expired stays expired.
        if (handed_so_far.count(other) == 0) expected.erase(other);
        if (rng() % 2 == 0) {
          cache.deschedule(other);
          model_erase(other);
        } else {
          const int64_t deadline = now + 1 + log_uniform(rng, 40);
          cache.schedule(other, deadline);
          model_schedule(other, deadline);
        }
      });
      ASSERT_EQ(std::set<NodeId>(expired.begin(), expired.end()), expected) << "op " << op;
      ASSERT_EQ(expired.size(), expected.size()) << "a node was expired twice";
      ASSERT_TRUE(model.empty() || model.begin()->first > now) << "op " << op;
    }
    ASSERT_EQ(cache.wheel().size(), model.size()) << "op " << op;
  }
  for (NodeId id = 0; id < kNodes; ++id) {
    EXPECT_EQ(cache.wheel().scheduled(id), where[id] != model.end()) << id;
  }
  EXPECT_GT(handed_total, 1000u);  // the run exercised the wheel
}

TEST(TimerWheel, CascadesAtMostOncePerLevelAndFinestPassesAreBounded) {
  // Deadlines up to ~2 years (below the overflow), time moving in steps of one
  // finest tick or more: a node is handed over early at most once per level
  // above 0 and at most once in its final tick.
  constexpr NodeId kNodes = 4096;
  std::mt19937_64 rng(7);
  FakeCache cache(kNodes);
  for (NodeId id = 0; id < kNodes; ++id) cache.schedule(id, kStart + 1 + log_uniform(rng, 55));
  int64_t now = kStart;
  size_t expired = 0;
  int advances = 0;
  while (expired < kNodes) {
    now += (int64_t{1} << Wheel::kFinestShift) + log_uniform(rng, 50);
    expired += cache.advance(now).size();
    ++advances;
  }
  int max_coarse = 0;
  int64_t total_early = 0;
  for (NodeId id = 0; id < kNodes; ++id) {
    EXPECT_LE(cache.finest_passes(id), 1) << id;
    max_coarse = std::max(max_coarse, cache.coarse_passes(id));
    total_early += cache.coarse_passes(id) + cache.finest_passes(id);
  }
  EXPECT_LE(max_coarse, Wheel::kLevels - 1);
  EXPECT_GT(max_coarse, 0);  // something did cascade
  // Amortized cost: a handful of extra hand-overs per node, whatever the jumps.
  EXPECT_LE(total_early, int64_t{kNodes} * Wheel::kLevels);
  EXPECT_GT(advances, 10);
}

TEST(TimerWheel, OverflowNodeIsReexaminedOncePerOverflowLap) {
  FakeCache cache(1);
  const int64_t d = kStart + 40 * kYear;  // ~17 overflow laps of 2^56 ns
  cache.schedule(0, d);
  int64_t now = kStart;
  while (now + kYear < d) {
    now += kYear;
    ASSERT_THAT(cache.advance(now), IsEmpty());
  }
  EXPECT_THAT(cache.advance(d), ElementsAre(0u));
  const int64_t laps = tick(Wheel::kLevels, d) - tick(Wheel::kLevels, kStart);
  EXPECT_GE(cache.coarse_passes(0), laps);  // each lap re-examined it
  EXPECT_LE(cache.coarse_passes(0), laps + Wheel::kLevels - 1);
}

}  // namespace
}  // namespace streamcache::detail
