#include "streamcache/cache.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace streamcache {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// Records every listener call, in order.
struct Removals {
  std::vector<std::tuple<int, std::string, RemovalCause>> calls;
  std::function<void(const int&, const std::string&, RemovalCause)> listener() {
    return [this](const int& k, const std::string& v, RemovalCause c) { calls.emplace_back(k, v, c); };
  }
  size_t count(RemovalCause cause) const {
    size_t n = 0;
    for (const auto& c : calls) n += std::get<2>(c) == cause;
    return n;
  }
};

using StringCache = Cache<int, std::string>;

TEST(Cache, GetReturnsWhatWasInserted) {
  auto cache = StringCache::builder().build();
  EXPECT_EQ(cache.get(1), std::nullopt);
  cache.insert(1, "one");
  EXPECT_EQ(cache.get(1), "one");
  EXPECT_TRUE(cache.contains_key(1));
  EXPECT_FALSE(cache.contains_key(2));
  EXPECT_EQ(cache.entry_count(), 1u);
}

TEST(Cache, InsertReplacesAndReportsReplaced) {
  Removals removals;
  auto cache = StringCache::builder().eviction_listener(removals.listener()).build();
  cache.insert(1, "one");
  cache.insert(1, "uno");
  EXPECT_EQ(cache.get(1), "uno");
  EXPECT_THAT(removals.calls, ElementsAre(std::make_tuple(1, "one", RemovalCause::kReplaced)));
  EXPECT_EQ(cache.stats().replacements, 1u);
  EXPECT_EQ(cache.entry_count(), 1u);
}

TEST(Cache, RemoveReturnsTheValueAndReportsExplicit) {
  Removals removals;
  auto cache = StringCache::builder().eviction_listener(removals.listener()).build();
  cache.insert(1, "one");
  EXPECT_EQ(cache.remove(1), "one");
  EXPECT_EQ(cache.remove(1), std::nullopt);
  EXPECT_EQ(cache.get(1), std::nullopt);
  EXPECT_THAT(removals.calls, ElementsAre(std::make_tuple(1, "one", RemovalCause::kExplicit)));
  EXPECT_EQ(cache.stats().invalidations, 1u);
}

TEST(Cache, InvalidateIfRemovesOnlyMatchingEntries) {
  Removals removals;
  auto cache = StringCache::builder().eviction_listener(removals.listener()).build();
  for (int i = 0; i < 100; ++i) cache.insert(i, std::to_string(i));
  cache.invalidate_if([](const int& k, const std::string&) { return k % 2 == 0; });
  for (int i = 0; i < 100; ++i) EXPECT_EQ(cache.contains_key(i), i % 2 == 1) << i;
  EXPECT_EQ(removals.count(RemovalCause::kExplicit), 50u);
  EXPECT_EQ(cache.entry_count(), 50u);
}

TEST(Cache, InvalidateAllEmptiesTheCache) {
  Removals removals;
  auto cache = StringCache::builder().eviction_listener(removals.listener()).build();
  for (int i = 0; i < 1000; ++i) cache.insert(i, "v");
  cache.invalidate_all();
  cache.run_pending_tasks();
  EXPECT_EQ(cache.entry_count(), 0u);
  EXPECT_EQ(cache.weighted_size(), 0u);
  EXPECT_EQ(removals.count(RemovalCause::kExplicit), 1000u);
  EXPECT_EQ(cache.stats().invalidations, 1000u);
  cache.insert(5, "again");
  EXPECT_EQ(cache.get(5), "again");
}

TEST(Cache, ForEachVisitsEveryLiveEntryAndMayUseTheCache) {
  auto cache = StringCache::builder().build();
  for (int i = 0; i < 10; ++i) cache.insert(i, std::to_string(i));
  std::map<int, std::string> seen;
  cache.for_each([&](const int& k, const std::string& v) {
    EXPECT_TRUE(seen.emplace(k, v).second) << "visited twice: " << k;
    if (k < 100) cache.insert(k + 100, v);  // allowed: f runs outside the shard locks
  });
  // Entries inserted during the walk may or may not be visited (weakly consistent).
  for (int i = 0; i < 10; ++i) EXPECT_EQ(seen[i], std::to_string(i));
  EXPECT_EQ(cache.entry_count(), 20u);
}

TEST(Cache, HitsAndMissesAreCounted) {
  auto cache = StringCache::builder().build();
  cache.insert(1, "one");
  cache.get(1);
  cache.get(1);
  cache.get(2);
  const CacheStats s = cache.stats();
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_DOUBLE_EQ(s.hit_rate(), 2.0 / 3.0);
  EXPECT_EQ(CacheStats{}.hit_rate(), 0.0);
}

TEST(Cache, ContainsKeyIsNotARead) {
  auto cache = StringCache::builder().build();
  cache.insert(1, "one");
  EXPECT_TRUE(cache.contains_key(1));
  EXPECT_EQ(cache.stats().hits + cache.stats().misses, 0u);
}

// ---- Size bound -----------------------------------------------------------------------

TEST(CacheSize, StaysWithinMaxCapacityAfterMaintenance) {
  Removals removals;
  auto cache = StringCache::builder().max_capacity(100).eviction_listener(removals.listener()).build();
  for (int i = 0; i < 1000; ++i) cache.insert(i, "v");
  cache.run_pending_tasks();
  EXPECT_EQ(cache.entry_count(), 100u);
  EXPECT_EQ(cache.weighted_size(), 100u);
  EXPECT_EQ(removals.count(RemovalCause::kSize), 900u);
  EXPECT_EQ(cache.stats().evictions_size, 900u);
}

TEST(CacheSize, SingleThreadedWritesNeverOvershoot) {
  auto cache = StringCache::builder().max_capacity(10).build();
  for (int i = 0; i < 200; ++i) {
    cache.insert(i, "v");
    EXPECT_LE(cache.entry_count(), 10u) << "after insert " << i;
  }
}

TEST(CacheSize, SingleThreadedUpdatesThatAddWeightNeverOvershoot) {
  auto cache = StringCache::builder()
                   .max_capacity(10)
                   .weigher([](const int&, const std::string& v) { return static_cast<uint32_t>(v.size()); })
                   .build();
  for (int i = 0; i < 10; ++i) cache.insert(i, "a");
  for (int i = 0; i < 10; ++i) {
    cache.insert(i, "aaaa");  // three heavier: more than the bound allows
    uint64_t weight = 0;
    cache.for_each([&](const int&, const std::string& v) { weight += v.size(); });
    EXPECT_LE(weight, 10u) << "after update " << i;
    EXPECT_LE(cache.weighted_size(), 10u) << "after update " << i;
  }
}

TEST(CacheSize, CapacityZeroKeepsNothingAndReportsSizeOnce) {
  Removals removals;
  auto cache = StringCache::builder().max_capacity(0).eviction_listener(removals.listener()).build();
  cache.insert(1, "one");
  EXPECT_EQ(cache.get(1), std::nullopt);
  EXPECT_EQ(cache.get_with(2, [] { return std::string("two"); }), "two");
  EXPECT_EQ(cache.get(2), std::nullopt);
  cache.run_pending_tasks();
  EXPECT_EQ(cache.entry_count(), 0u);
  EXPECT_THAT(removals.calls, ElementsAre(std::make_tuple(1, "one", RemovalCause::kSize),
                                          std::make_tuple(2, "two", RemovalCause::kSize)));
}

TEST(CacheSize, WeigherBoundsTotalWeight) {
  auto cache = StringCache::builder()
                   .max_capacity(100)
                   .weigher([](const int&, const std::string& v) { return static_cast<uint32_t>(v.size()); })
                   .build();
  for (int i = 0; i < 50; ++i) cache.insert(i, std::string(10, 'x'));
  cache.run_pending_tasks();
  EXPECT_LE(cache.weighted_size(), 100u);
  EXPECT_LE(cache.entry_count(), 10u);
}

TEST(CacheSize, EntryHeavierThanCapacityIsNeverKept) {
  Removals removals;
  auto cache = StringCache::builder()
                   .max_capacity(5)
                   .weigher([](const int&, const std::string& v) { return static_cast<uint32_t>(v.size()); })
                   .eviction_listener(removals.listener())
                   .build();
  cache.insert(1, "ok");
  cache.insert(1, "far too heavy");
  EXPECT_EQ(cache.get(1), std::nullopt);
  EXPECT_THAT(removals.calls, ElementsAre(std::make_tuple(1, "ok", RemovalCause::kReplaced),
                                          std::make_tuple(1, "far too heavy", RemovalCause::kSize)));
}

TEST(CacheSize, ZeroWeightEntriesAreNotEvictedForSize) {
  auto cache = StringCache::builder()
                   .max_capacity(3)
                   .weigher([](const int& k, const std::string&) { return k < 0 ? 0u : 1u; })
                   .build();
  for (int i = 1; i <= 5; ++i) cache.insert(-i, "pinned");
  for (int i = 0; i < 100; ++i) cache.insert(i, "v");
  cache.run_pending_tasks();
  for (int i = 1; i <= 5; ++i) EXPECT_TRUE(cache.contains_key(-i)) << -i;
  EXPECT_EQ(cache.weighted_size(), 3u);
}

TEST(CacheSize, FrequentlyReadEntriesSurviveAScan) {
  auto cache = Cache<int, int>::builder().max_capacity(100).build();
  for (int i = 0; i < 50; ++i) cache.insert(i, i);
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 50; ++i) cache.get(i);
  }
  for (int i = 1000; i < 3000; ++i) cache.insert(i, i);  // a one-time scan
  cache.run_pending_tasks();
  int survivors = 0;
  for (int i = 0; i < 50; ++i) survivors += cache.contains_key(i);
  EXPECT_GE(survivors, 45);
}

// ---- Expiry ---------------------------------------------------------------------------

struct ExpiryFixture : ::testing::Test {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  Removals removals;
};

TEST_F(ExpiryFixture, TimeToLiveExpiresFromTheWrite) {
  auto cache = StringCache::builder().time_to_live(seconds(10)).clock(clock).eviction_listener(removals.listener()).build();
  cache.insert(1, "one");
  clock->advance(seconds(9));  // 9 s
  EXPECT_EQ(cache.get(1), "one");
  clock->advance(seconds(1));  // 10 s: now == deadline is expired
  EXPECT_EQ(cache.get(1), std::nullopt);
  EXPECT_FALSE(cache.contains_key(1));
  cache.run_pending_tasks();
  EXPECT_EQ(cache.entry_count(), 0u);
  EXPECT_THAT(removals.calls, ElementsAre(std::make_tuple(1, "one", RemovalCause::kExpired)));
  EXPECT_EQ(cache.stats().evictions_expired, 1u);
}

TEST_F(ExpiryFixture, UpdatesAloneRunMaintenanceWithinABatch) {
  auto cache = StringCache::builder().time_to_live(seconds(10)).clock(clock).eviction_listener(removals.listener()).build();
  cache.insert(1, "one");
  clock->advance(seconds(5));
  cache.insert(2, "two");
  clock->advance(seconds(5));  // 1 has expired, 2 has not
  // Updates are applied in batches (16 at most), never left waiting for a read or for
  // run_pending_tasks(): a write-only workload still expires what it should.
  for (int i = 0; i < 16; ++i) cache.insert(2, std::to_string(i));
  EXPECT_EQ(removals.count(RemovalCause::kExpired), 1u);
  EXPECT_EQ(cache.entry_count(), 1u);
}

TEST_F(ExpiryFixture, TimeToLiveRestartsOnReplace) {
  auto cache = StringCache::builder().time_to_live(seconds(10)).clock(clock).build();
  cache.insert(1, "one");
  clock->advance(seconds(8));  // 8 s
  cache.insert(1, "uno");
  clock->advance(seconds(8));  // 16 s
  EXPECT_EQ(cache.get(1), "uno");
  clock->advance(seconds(2));  // 18 s
  EXPECT_EQ(cache.get(1), std::nullopt);
}

TEST_F(ExpiryFixture, TimeToIdleRestartsOnRead) {
  auto cache = StringCache::builder().time_to_idle(seconds(10)).clock(clock).build();
  cache.insert(1, "one");
  for (int i = 0; i < 5; ++i) {
    clock->advance(seconds(9));  // 9, 18, 27, 36, 45 s
    EXPECT_EQ(cache.get(1), "one");
    cache.run_pending_tasks();
  }
  clock->advance(seconds(10));  // 55 s
  EXPECT_EQ(cache.get(1), std::nullopt);
}

TEST_F(ExpiryFixture, ContainsKeyDoesNotRestartTimeToIdle) {
  auto cache = StringCache::builder().time_to_idle(seconds(10)).clock(clock).build();
  cache.insert(1, "one");
  clock->advance(seconds(9));  // 9 s
  EXPECT_TRUE(cache.contains_key(1));
  clock->advance(seconds(1));  // 10 s
  EXPECT_FALSE(cache.contains_key(1));
}

TEST_F(ExpiryFixture, EarliestOfTtlAndTtiWins) {
  auto cache = StringCache::builder().time_to_live(seconds(30)).time_to_idle(seconds(10)).clock(clock).build();
  cache.insert(1, "one");
  cache.insert(2, "two");
  for (int i = 0; i < 3; ++i) {
    clock->advance(seconds(9));  // 9, 18, 27 s
    EXPECT_EQ(cache.get(1), "one");
  }
  EXPECT_EQ(cache.get(2), std::nullopt);  // idle since 0 s
  clock->advance(seconds(3));              // 30 s: TTL
  EXPECT_EQ(cache.get(1), std::nullopt);
}

TEST_F(ExpiryFixture, ExpiredEntriesAreRemovedByTheNextMaintenance) {
  auto cache = StringCache::builder().time_to_live(seconds(5)).clock(clock).eviction_listener(removals.listener()).build();
  for (int i = 0; i < 100; ++i) cache.insert(i, "v");
  clock->advance(seconds(5));  // 5 s
  cache.run_pending_tasks();
  EXPECT_EQ(cache.entry_count(), 0u);
  EXPECT_EQ(removals.count(RemovalCause::kExpired), 100u);
}

TEST_F(ExpiryFixture, ForEachSkipsExpiredEntries) {
  auto cache = StringCache::builder().time_to_live(seconds(5)).clock(clock).build();
  cache.insert(1, "old");
  clock->advance(seconds(3));  // 3 s
  cache.insert(2, "new");
  clock->advance(seconds(2));  // 5 s: 1 expired, 2 has 3 s left
  std::vector<int> seen;
  cache.for_each([&](const int& k, const std::string&) { seen.push_back(k); });
  EXPECT_THAT(seen, ElementsAre(2));
}

TEST_F(ExpiryFixture, ReplacingAnExpiredEntryReportsExpired) {
  auto cache = StringCache::builder().time_to_live(seconds(5)).clock(clock).eviction_listener(removals.listener()).build();
  cache.insert(1, "old");
  clock->advance(seconds(6));  // 6 s
  cache.insert(1, "new");
  EXPECT_EQ(cache.get(1), "new");
  EXPECT_THAT(removals.calls, ElementsAre(std::make_tuple(1, "old", RemovalCause::kExpired)));
}

TEST_F(ExpiryFixture, RemovingAnExpiredEntryReturnsNothingAndReportsExpired) {
  auto cache = StringCache::builder().time_to_live(seconds(5)).clock(clock).eviction_listener(removals.listener()).build();
  cache.insert(1, "old");
  clock->advance(seconds(5));  // 5 s
  EXPECT_EQ(cache.remove(1), std::nullopt);
  EXPECT_THAT(removals.calls, ElementsAre(std::make_tuple(1, "old", RemovalCause::kExpired)));
}

// A per-entry policy: the key is its own lifetime in seconds; reads extend to 100 s;
// updates keep the deadline.
struct KeySeconds : Expiry<int, std::string> {
  std::optional<Clock::duration> expire_after_create(const int& k, const std::string&, Clock::time_point) override {
    if (k == 0) return std::nullopt;
    return seconds(k);
  }
  std::optional<Clock::duration> expire_after_read(const int& k, const std::string&, Clock::time_point,
                                                   std::optional<Clock::duration> remaining) override {
    last_remaining = remaining;
    if (k == 7) return seconds(100);
    return std::nullopt;
  }
  std::optional<Clock::duration> expire_after_update(const int&, const std::string&, Clock::time_point,
                                                     std::optional<Clock::duration>) override {
    return std::nullopt;
  }
  std::optional<Clock::duration> last_remaining;
};

TEST_F(ExpiryFixture, PerEntryExpiryUsesEachEntrysDeadline) {
  auto expiry = std::make_shared<KeySeconds>();
  auto cache = StringCache::builder().expiry(expiry).clock(clock).eviction_listener(removals.listener()).build();
  for (int k = 0; k <= 5; ++k) cache.insert(k, "v");
  clock->advance(seconds(3));  // 3 s: keys 1..3 expired
  cache.run_pending_tasks();
  for (int k = 0; k <= 5; ++k) EXPECT_EQ(cache.contains_key(k), k == 0 || k > 3) << k;
  EXPECT_EQ(removals.count(RemovalCause::kExpired), 3u);
  clock->advance(seconds(1000));  // key 0 has no deadline
  EXPECT_TRUE(cache.contains_key(0));
}

TEST_F(ExpiryFixture, PerEntryExpiryReadHookSeesRemainingAndCanExtend) {
  auto expiry = std::make_shared<KeySeconds>();
  auto cache = StringCache::builder().expiry(expiry).clock(clock).build();
  cache.insert(7, "v");
  clock->advance(seconds(2));  // 2 s
  EXPECT_EQ(cache.get(7), "v");
  ASSERT_TRUE(expiry->last_remaining.has_value());
  EXPECT_EQ(*expiry->last_remaining, seconds(5));
  clock->advance(seconds(50));  // 52 s: extended to 102 s by the read
  cache.run_pending_tasks();
  EXPECT_EQ(cache.get(7), "v");
  clock->advance(seconds(100));  // 152 s
  cache.run_pending_tasks();
  EXPECT_EQ(cache.entry_count(), 0u);
}

// Each read brings the deadline forward (1000 s, then 500 s, then 1 s). The second read
// comes right after maintenance applied the first, which is when the cache stops
// recording repeated reads of an entry for the policy: the timer wheel must still learn
// the new deadline, or the removal waits for the old one.
struct ShorterOnEachRead : Expiry<int, std::string> {
  std::optional<Clock::duration> expire_after_create(const int&, const std::string&, Clock::time_point) override {
    return seconds(1000);
  }
  std::optional<Clock::duration> expire_after_read(const int&, const std::string&, Clock::time_point,
                                                   std::optional<Clock::duration>) override {
    return ++reads == 1 ? seconds(500) : seconds(1);
  }
  std::optional<Clock::duration> expire_after_update(const int&, const std::string&, Clock::time_point,
                                                     std::optional<Clock::duration>) override {
    return std::nullopt;
  }
  int reads = 0;
};

TEST_F(ExpiryFixture, PerEntryDeadlineBroughtForwardByAReadIsRemovedByTheNextMaintenance) {
  auto cache = StringCache::builder()
                   .expiry(std::make_shared<ShorterOnEachRead>())
                   .clock(clock)
                   .eviction_listener(removals.listener())
                   .build();
  cache.insert(1, "v");
  EXPECT_EQ(cache.get(1), "v");  // deadline 500 s
  cache.run_pending_tasks();
  EXPECT_EQ(cache.get(1), "v");  // deadline 1 s
  clock->advance(seconds(2));
  cache.run_pending_tasks();
  EXPECT_EQ(cache.entry_count(), 0u);
  EXPECT_THAT(removals.calls, ElementsAre(std::make_tuple(1, "v", RemovalCause::kExpired)));
}

// Hot entries read over and over are recorded for the policy about once per read epoch,
// so their reads fill no read buffer; maintenance must still run on reads alone, or
// nothing removes what expires meanwhile (here the cold entry, idle since the start).
TEST_F(ExpiryFixture, ReadsAloneKeepRemovingExpiredEntries) {
  auto cache = StringCache::builder()
                   .max_capacity(100)
                   .time_to_idle(seconds(10))
                   .clock(clock)
                   .eviction_listener(removals.listener())
                   .build();
  for (int k = 0; k < 10; ++k) cache.insert(k, "hot");
  cache.insert(99, "cold");
  cache.run_pending_tasks();
  for (int second = 1; second <= 20; ++second) {
    clock->advance(seconds(1));
    for (int i = 0; i < 100; ++i) ASSERT_EQ(cache.get(i % 10), "hot");
  }
  EXPECT_THAT(removals.calls, ElementsAre(std::make_tuple(99, "cold", RemovalCause::kExpired)));
  EXPECT_EQ(cache.entry_count(), 10u);
}

TEST_F(ExpiryFixture, PerEntryUpdateHookKeepsTheDeadlineWhenItReturnsNullopt) {
  auto cache = StringCache::builder().expiry(std::make_shared<KeySeconds>()).clock(clock).build();
  cache.insert(4, "v");
  clock->advance(seconds(3));  // 3 s
  cache.insert(4, "w");
  clock->advance(seconds(1));  // 4 s: deadline kept at 4 s
  EXPECT_EQ(cache.get(4), std::nullopt);
}

TEST_F(ExpiryFixture, PerEntryExpiryCombinesWithTimeToLive) {
  auto cache = StringCache::builder().expiry(std::make_shared<KeySeconds>()).time_to_live(seconds(2)).clock(clock).build();
  cache.insert(5, "v");
  clock->advance(seconds(2));  // 2 s: the TTL comes first
  EXPECT_EQ(cache.get(5), std::nullopt);
}

TEST_F(ExpiryFixture, LongDeadlinesAndLargeClockJumps) {
  auto cache = StringCache::builder().time_to_live(std::chrono::hours(24 * 400)).clock(clock).build();
  cache.insert(1, "v");
  clock->advance(std::chrono::hours(24 * 399));
  cache.run_pending_tasks();
  EXPECT_TRUE(cache.contains_key(1));
  clock->advance(std::chrono::hours(24));
  cache.run_pending_tasks();
  EXPECT_EQ(cache.entry_count(), 0u);
}

// ---- Loaders --------------------------------------------------------------------------

TEST(CacheLoader, GetWithLoadsOnceAndCaches) {
  auto cache = StringCache::builder().build();
  int calls = 0;
  EXPECT_EQ(cache.get_with(1, [&] { ++calls; return std::string("one"); }), "one");
  EXPECT_EQ(cache.get_with(1, [&] { ++calls; return std::string("other"); }), "one");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(cache.stats().load_successes, 1u);
}

TEST(CacheLoader, ThrowingLoaderCachesNothingAndTheNextCallRetries) {
  auto cache = StringCache::builder().build();
  EXPECT_THROW(cache.get_with(1, []() -> std::string { throw std::runtime_error("boom"); }), std::runtime_error);
  EXPECT_FALSE(cache.contains_key(1));
  EXPECT_EQ(cache.get_with(1, [] { return std::string("one"); }), "one");
  EXPECT_EQ(cache.stats().load_failures, 1u);
  EXPECT_EQ(cache.stats().load_successes, 1u);
}

TEST(CacheLoader, TryGetWithReturnsErrorsWithoutCaching) {
  auto cache = StringCache::builder().build();
  auto r = cache.try_get_with(1, []() -> absl::StatusOr<std::string> { return absl::NotFoundError("nope"); });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(cache.contains_key(1));
  auto ok = cache.try_get_with(1, []() -> absl::StatusOr<std::string> { return std::string("one"); });
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, "one");
  EXPECT_EQ(cache.get(1), "one");
  EXPECT_EQ(cache.stats().load_failures, 1u);
}

TEST(CacheLoader, OptionallyGetWithReturnsNulloptWithoutCaching) {
  auto cache = StringCache::builder().build();
  EXPECT_EQ(cache.optionally_get_with(1, []() -> std::optional<std::string> { return std::nullopt; }), std::nullopt);
  EXPECT_FALSE(cache.contains_key(1));
  EXPECT_EQ(cache.optionally_get_with(1, []() -> std::optional<std::string> { return "one"; }), "one");
  EXPECT_EQ(cache.get(1), "one");
}

TEST(CacheLoader, ConcurrentCallersShareOneLoad) {
  auto cache = StringCache::builder().build();
  std::atomic<int> calls{0};
  std::atomic<bool> release{false};
  std::vector<std::thread> threads;
  std::vector<std::string> results(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      results[t] = cache.get_with(42, [&] {
        ++calls;
        while (!release.load()) std::this_thread::yield();
        return std::string("loaded");
      });
    });
  }
  while (calls.load() == 0) std::this_thread::yield();
  std::this_thread::sleep_for(milliseconds(20));  // let the others join the flight
  release = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(calls.load(), 1);
  for (const auto& r : results) EXPECT_EQ(r, "loaded");
}

TEST(CacheLoader, EveryWaiterSeesTheLoadersException) {
  auto cache = StringCache::builder().build();
  std::atomic<int> calls{0};
  std::atomic<bool> release{false};
  std::atomic<int> threw{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      try {
        cache.get_with(42, [&]() -> std::string {
          ++calls;
          while (!release.load()) std::this_thread::yield();
          throw std::runtime_error("boom");
        });
      } catch (const std::runtime_error&) {
        ++threw;
      }
    });
  }
  while (calls.load() == 0) std::this_thread::yield();
  std::this_thread::sleep_for(milliseconds(20));
  release = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(threw.load(), 4);
  EXPECT_FALSE(cache.contains_key(42));
}

TEST(CacheLoader, LoadersOfDifferentKeysDoNotWaitForEachOther) {
  auto cache = StringCache::builder().build();
  std::atomic<bool> release{false};
  std::thread slow([&] {
    cache.get_with(1, [&] {
      while (!release.load()) std::this_thread::yield();
      return std::string("slow");
    });
  });
  // Key 2 loads while key 1's loader is stuck; if it waited, this would never return.
  EXPECT_EQ(cache.get_with(2, [] { return std::string("fast"); }), "fast");
  release = true;
  slow.join();
}

TEST(CacheLoader, LoaderMayUseTheCacheForOtherKeys) {
  auto cache = StringCache::builder().max_capacity(10).build();
  const std::string v = cache.get_with(1, [&] {
    cache.insert(2, "two");
    return cache.get_with(3, [] { return std::string("three"); }) + "+one";
  });
  EXPECT_EQ(v, "three+one");
  EXPECT_EQ(cache.get(2), "two");
  EXPECT_EQ(cache.get(3), "three");
}

// ---- Listener and builder ----------------------------------------------------------------

TEST(CacheListener, ThrowingListenerDoesNotBreakTheCache) {
  int calls = 0;
  auto cache = StringCache::builder()
                   .max_capacity(5)
                   .eviction_listener([&](const int&, const std::string&, RemovalCause) {
                     ++calls;
                     throw std::runtime_error("listener");
                   })
                   .build();
  for (int i = 0; i < 20; ++i) cache.insert(i, "v");
  cache.insert(19, "w");
  cache.remove(19);
  cache.run_pending_tasks();
  EXPECT_EQ(cache.entry_count(), 4u);
  EXPECT_EQ(calls, 17);  // 15 evicted, 1 replaced, 1 removed
}

TEST(CacheListener, ListenerMayCallBackIntoTheCache) {
  std::optional<StringCache> cache;
  std::vector<int> seen;
  cache.emplace(StringCache::builder()
                    .max_capacity(2)
                    .eviction_listener([&](const int& k, const std::string&, RemovalCause c) {
                      if (c != RemovalCause::kSize || k < 0) return;
                      seen.push_back(k);
                      cache->get(k);
                      cache->insert(-k, "tombstone");
                      cache->run_pending_tasks();  // a no-op from inside maintenance
                    })
                    .build());
  for (int i = 1; i <= 10; ++i) cache->insert(i, "v");
  cache->run_pending_tasks();
  EXPECT_FALSE(seen.empty());
  EXPECT_LE(cache->entry_count(), 2u);
}

TEST(CacheBuilder, InvalidOptionsThrowNamingTheOption) {
  auto message = [](auto&& build) -> std::string {
    try {
      build();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "no exception";
  };
  EXPECT_THAT(message([] { StringCache::builder().time_to_live(seconds(-1)).build(); }), ::testing::HasSubstr("time_to_live"));
  EXPECT_THAT(message([] { StringCache::builder().time_to_idle(seconds(-1)).build(); }), ::testing::HasSubstr("time_to_idle"));
  EXPECT_THAT(message([] { StringCache::builder().shards(3).build(); }), ::testing::HasSubstr("shards"));
  EXPECT_THAT(message([] { StringCache::builder().shards(512).build(); }), ::testing::HasSubstr("shards"));
  EXPECT_THAT(message([] { StringCache::builder().clock(nullptr).build(); }), ::testing::HasSubstr("clock"));
}

TEST(CacheBuilder, OneBuilderBuildsIndependentCaches) {
  auto builder = StringCache::builder().max_capacity(10);
  auto a = builder.build();
  auto b = builder.build();
  a.insert(1, "a");
  EXPECT_FALSE(b.contains_key(1));
}

TEST(Cache, IsMovable) {
  auto cache = StringCache::builder().build();
  cache.insert(1, "one");
  StringCache moved = std::move(cache);
  EXPECT_EQ(moved.get(1), "one");
  static_assert(!std::is_copy_constructible_v<StringCache>);
}

TEST(Cache, WorksWithAWeakUserHash) {
  Cache<uint64_t, uint64_t, std::hash<uint64_t>> cache = Cache<uint64_t, uint64_t, std::hash<uint64_t>>::builder().max_capacity(1000).build();
  for (uint64_t i = 0; i < 5000; ++i) cache.insert(i << 20, i);
  cache.run_pending_tasks();
  EXPECT_EQ(cache.entry_count(), 1000u);
}

}  // namespace
}  // namespace streamcache

namespace streamcache {
namespace {

// Each entry's timestamps are stored beside its node; with a value type aligned to more
// than 8 bytes the node must still be aligned (an over-aligned copy may use aligned
// vector moves, and UBSan checks every access in the asan run).
struct alignas(64) WideValue {
  uint64_t payload[4] = {};
};

TEST(CacheLayout, OverAlignedValuesWithEveryExpiryClockStayAligned) {
  auto clock = std::make_shared<ManualClock>();
  auto cache = Cache<int, WideValue>::builder()
                   .max_capacity(1000)
                   .time_to_live(seconds(10))
                   .time_to_idle(seconds(10))
                   .clock(clock)
                   .build();
  for (int i = 0; i < 500; ++i) cache.insert(i, WideValue{{uint64_t(i), 1, 2, 3}});
  for (int i = 0; i < 500; ++i) {
    const std::optional<WideValue> v = cache.get(i);
    ASSERT_TRUE(v.has_value()) << i;
    EXPECT_EQ(v->payload[0], uint64_t(i));
  }
}

}  // namespace
}  // namespace streamcache
