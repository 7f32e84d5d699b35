// Cache::policy() and set_max_capacity(): what the cache reports about its configuration,
// and what changing the bound at run time does to the entries, the listener and new writes.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include "streamcache/cache.hpp"
#include "unit/cache_test_support.hpp"

namespace streamcache {
namespace {

using std::chrono::seconds;
using test_support::Removals;

using StringCache = Cache<int, std::string>;

class NoExpiry : public Expiry<int, std::string> {};

TEST(CachePolicy, ReportsWhatTheBuilderSet) {
  auto cache = StringCache::builder()
                   .max_capacity(500)
                   .weigher(test_support::value_length)
                   .time_to_live(seconds(30))
                   .time_to_idle(seconds(10))
                   .expiry(std::make_shared<NoExpiry>())
                   .shards(8)
                   .build();
  const CachePolicy p = cache.policy();
  EXPECT_EQ(p.max_capacity, 500u);
  EXPECT_TRUE(p.weighted);
  EXPECT_EQ(p.time_to_live, seconds(30));
  EXPECT_EQ(p.time_to_idle, seconds(10));
  EXPECT_TRUE(p.per_entry_expiry);
  EXPECT_EQ(p.shards, 8u);
}

TEST(CachePolicy, AnUnconfiguredCacheIsUnboundedWithoutExpiryAndHasItsAutomaticShardCount) {
  auto cache = StringCache::builder().build();
  const CachePolicy p = cache.policy();
  EXPECT_EQ(p.max_capacity, std::nullopt);
  EXPECT_FALSE(p.weighted);
  EXPECT_EQ(p.time_to_live, std::nullopt);
  EXPECT_EQ(p.time_to_idle, std::nullopt);
  EXPECT_FALSE(p.per_entry_expiry);
  EXPECT_GE(p.shards, 16u);  // automatic: a power of two between 16 and 64
  EXPECT_LE(p.shards, 64u);
}

TEST(CacheResize, ShrinkingEvictsTheExcessForSizeBeforeItReturns) {
  Removals removals;
  auto cache = StringCache::builder().max_capacity(1000).eviction_listener(removals.listener()).build();
  for (int k = 0; k < 1000; ++k) cache.insert(k, std::to_string(k));
  cache.run_pending_tasks();
  ASSERT_EQ(cache.entry_count(), 1000u);

  cache.set_max_capacity(100);
  EXPECT_EQ(cache.policy().max_capacity, 100u);
  EXPECT_EQ(cache.entry_count(), 100u);
  EXPECT_EQ(cache.weighted_size(), 100u);
  EXPECT_EQ(removals.count(RemovalCause::kSize), 900u);
  EXPECT_EQ(removals.calls.size(), 900u);
  EXPECT_EQ(cache.stats().evictions_size, 900u);
  // Every key is either still there or was reported once, with its own value.
  std::vector<int> seen(1000, 0);
  for (const auto& [k, v, cause] : removals.calls) {
    EXPECT_EQ(v, std::to_string(k));
    ++seen[k];
  }
  cache.for_each([&](const int& k, const std::string&) { ++seen[k]; });
  for (int k = 0; k < 1000; ++k) EXPECT_EQ(seen[k], 1) << "key " << k;
}

TEST(CacheResize, ShrinkingKeepsTheEntriesInUse) {
  auto cache = Cache<int, int>::builder().max_capacity(1000).build();
  for (int k = 0; k < 1000; ++k) cache.insert(k, k);
  // Keys 0..49 are read again and again; the other 950 never.
  for (int round = 0; round < 20; ++round) {
    for (int k = 0; k < 50; ++k) ASSERT_TRUE(cache.get(k));
  }
  cache.run_pending_tasks();
  cache.set_max_capacity(100);
  int hot_kept = 0;
  for (int k = 0; k < 50; ++k) hot_kept += cache.contains_key(k) ? 1 : 0;
  EXPECT_EQ(hot_kept, 50);
  EXPECT_EQ(cache.entry_count(), 100u);
}

TEST(CacheResize, ShrinkingAWeightedCacheEvictsByWeight) {
  Removals removals;
  auto cache = StringCache::builder()
                   .max_capacity(1000)
                   .weigher(test_support::value_length)
                   .eviction_listener(removals.listener())
                   .build();
  for (int k = 0; k < 100; ++k) cache.insert(k, std::string(10, 'x'));
  cache.run_pending_tasks();
  ASSERT_EQ(cache.weighted_size(), 1000u);
  cache.set_max_capacity(255);
  EXPECT_LE(cache.weighted_size(), 255u);
  EXPECT_GE(cache.weighted_size(), 250u);  // no more evicted than needed: 10 units each
  EXPECT_EQ(cache.entry_count(), cache.weighted_size() / 10);
  EXPECT_EQ(removals.count(RemovalCause::kSize), 100 - cache.entry_count());
}

TEST(CacheResize, GrowingEvictsNothingAndMakesRoomForMore) {
  Removals removals;
  auto cache = StringCache::builder().max_capacity(100).eviction_listener(removals.listener()).build();
  for (int k = 0; k < 100; ++k) cache.insert(k, "v");
  cache.set_max_capacity(300);
  EXPECT_TRUE(removals.calls.empty());
  for (int k = 100; k < 300; ++k) cache.insert(k, "v");
  cache.run_pending_tasks();
  EXPECT_EQ(cache.entry_count(), 300u);
  EXPECT_TRUE(removals.calls.empty());
  cache.insert(300, "v");
  cache.run_pending_tasks();
  EXPECT_EQ(cache.entry_count(), 300u);
  EXPECT_EQ(removals.count(RemovalCause::kSize), 1u);
}

TEST(CacheResize, ZeroKeepsNothingAndRefusesLaterWritesAsTooHeavyUntilItGrowsAgain) {
  Removals removals;
  auto cache = StringCache::builder().max_capacity(10).eviction_listener(removals.listener()).build();
  for (int k = 0; k < 10; ++k) cache.insert(k, "v");
  cache.set_max_capacity(0);
  EXPECT_EQ(cache.entry_count(), 0u);
  EXPECT_EQ(removals.count(RemovalCause::kSize), 10u);

  cache.insert(42, "refused");
  EXPECT_EQ(cache.get(42), std::nullopt);
  ASSERT_EQ(removals.calls.size(), 11u);
  EXPECT_EQ(removals.calls.back(), std::make_tuple(42, std::string("refused"), RemovalCause::kSize));

  cache.set_max_capacity(5);
  cache.insert(42, "kept");
  EXPECT_EQ(cache.get(42), "kept");
}

TEST(CacheResize, AWriteHeavierThanTheNewBoundIsReportedForSizeAndNotKept) {
  Removals removals;
  auto cache = StringCache::builder()
                   .max_capacity(100)
                   .weigher(test_support::value_length)
                   .eviction_listener(removals.listener())
                   .build();
  cache.insert(1, std::string(50, 'a'));
  cache.set_max_capacity(20);
  EXPECT_EQ(cache.get(1), std::nullopt);  // evicted: heavier than the new bound
  cache.insert(2, std::string(30, 'b'));
  EXPECT_EQ(cache.get(2), std::nullopt);
  cache.run_pending_tasks();
  EXPECT_EQ(removals.count(RemovalCause::kSize), 2u);
  EXPECT_EQ(cache.weighted_size(), 0u);
}

TEST(CacheResize, AnUnboundedCacheCanBeBoundedAndUnboundedAgain) {
  auto cache = Cache<int, int>::builder().build();
  for (int k = 0; k < 500; ++k) cache.insert(k, k);
  cache.set_max_capacity(50);
  EXPECT_EQ(cache.entry_count(), 50u);
  EXPECT_EQ(cache.policy().max_capacity, 50u);
  cache.set_max_capacity(std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(cache.policy().max_capacity, std::nullopt);
  for (int k = 0; k < 500; ++k) cache.insert(k, k);
  cache.run_pending_tasks();
  EXPECT_EQ(cache.entry_count(), 500u);
}

// A listener that resizes on its first kSize notification, which maintenance delivers.
struct ResizingListener {
  std::unique_ptr<Cache<int, int>> cache;
  uint64_t to = 0;
  bool resized = false;
  explicit ResizingListener(uint64_t capacity, uint64_t resize_to) : to(resize_to) {
    cache = std::make_unique<Cache<int, int>>(Cache<int, int>::builder()
                                                  .max_capacity(capacity)
                                                  .eviction_listener([this](const int&, const int&, RemovalCause cause) {
                                                    if (cause == RemovalCause::kSize && !resized) {
                                                      resized = true;
                                                      cache->set_max_capacity(to);
                                                    }
                                                  })
                                                  .build());
  }
};

TEST(CacheResize, FromAListenerDuringMaintenanceTheDeliveringMaintenanceEvictsTheExcess) {
  // The listener is delivered by the maintenance of the 11th insert, where
  // run_pending_tasks() does nothing: that maintenance evicts down to 5 once its delivery is
  // over, before the insert returns.
  ResizingListener r(10, 5);
  for (int k = 0; k < 11; ++k) r.cache->insert(k, k);
  EXPECT_TRUE(r.resized);
  EXPECT_EQ(r.cache->policy().max_capacity, 5u);
  EXPECT_EQ(r.cache->entry_count(), 5u);
}

TEST(CacheResize, FromAListenerOfItsOwnDeliveryTheOuterCallReturnsWithinTheInnerBound) {
  ResizingListener r(100, 5);
  for (int k = 0; k < 100; ++k) r.cache->insert(k, k);
  r.cache->set_max_capacity(50);  // its delivery's first kSize resizes to 5
  EXPECT_TRUE(r.resized);
  EXPECT_EQ(r.cache->policy().max_capacity, 5u);
  EXPECT_EQ(r.cache->entry_count(), 5u);
}

TEST(CacheResize, AListenerOfASecondCacheMayResizeTheFirstWhileTheFirstDelivers) {
  // a's maintenance delivers to a's listener, which writes b; b's maintenance delivers to
  // b's listener, which resizes a. a is still delivering (further down this thread's
  // stack): the resize must not wait for that delivery, which waits for it.
  using IntCache = Cache<int, int>;
  struct Pair {
    std::optional<IntCache> a, b;
    std::atomic<bool> b_resized_a{false}, a_wrote_b{false};
  };
  auto pair = std::make_shared<Pair>();  // leaked with the stuck thread on a deadlock
  pair->b.emplace(IntCache::builder()
                      .max_capacity(2)
                      .eviction_listener([raw = pair.get()](const int&, const int&, RemovalCause cause) {
                        if (cause == RemovalCause::kSize && !raw->b_resized_a.exchange(true)) raw->a->set_max_capacity(3);
                      })
                      .build());
  pair->a.emplace(IntCache::builder()
                      .max_capacity(10)
                      .eviction_listener([raw = pair.get()](const int&, const int&, RemovalCause cause) {
                        if (cause != RemovalCause::kSize || raw->a_wrote_b.exchange(true)) return;
                        for (int k = 0; k < 3; ++k) raw->b->insert(k, k);
                      })
                      .build());
  ASSERT_TRUE(test_support::finishes_within(seconds(5), [pair] {
    for (int k = 0; k < 11; ++k) pair->a->insert(k, k);
  })) << "deadlock: b's listener waited in a.set_max_capacity() for a's own delivery";
  EXPECT_TRUE(pair->b_resized_a.load());
  EXPECT_EQ(pair->a->entry_count(), 3u);
}

TEST(CacheResize, GrowingFromZeroKeepsWhatIsWrittenAfter) {
  auto cache = Cache<int, int>::builder().max_capacity(0).build();
  cache.set_max_capacity(3);
  cache.insert(1, 1);
  EXPECT_EQ(cache.get(1), 1);
}

TEST(CacheResize, GrowingAWeightedCacheKeepsAnEntryHeavierThanTheOldBound) {
  auto cache = StringCache::builder().max_capacity(10).weigher(test_support::value_length).build();
  cache.set_max_capacity(100);
  cache.insert(1, std::string(50, 'x'));
  EXPECT_TRUE(cache.get(1).has_value());
}

TEST(CacheResize, ZeroKeepsEntriesOfWeightZero) {
  // Size eviction never takes an entry of weight 0; a bound of 0 refuses new ones.
  auto cache = StringCache::builder().max_capacity(10).weigher(test_support::value_length).build();
  cache.insert(1, "");
  cache.insert(2, "abc");
  cache.set_max_capacity(0);
  EXPECT_EQ(cache.get(1), "");
  EXPECT_EQ(cache.get(2), std::nullopt);
  cache.insert(3, "");
  EXPECT_EQ(cache.get(3), std::nullopt);
}

TEST(CacheResize, SettingTheSameBoundChangesNothing) {
  Removals removals;
  auto cache = StringCache::builder().max_capacity(10).eviction_listener(removals.listener()).build();
  for (int k = 0; k < 10; ++k) cache.insert(k, "v");
  cache.set_max_capacity(10);
  EXPECT_EQ(cache.entry_count(), 10u);
  EXPECT_TRUE(removals.calls.empty());
}

}  // namespace
}  // namespace streamcache
