// Cache::get_all(): bulk loads, what they cache and return, and how they share flights with
// optionally_get_with() and each other.
#include <absl/container/flat_hash_map.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <thread>
#include <utility>
#include <vector>

#include "streamcache/cache.hpp"
#include "unit/cache_test_support.hpp"

namespace streamcache {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using test_support::finishes_within;
using test_support::Removals;

using StringCache = Cache<int, std::string>;
using Pairs = std::vector<std::pair<int, std::string>>;
using Results = std::vector<std::optional<std::string>>;

// A bulk loader that names each value after its key and records what it was asked for.
struct Recorder {
  std::vector<std::vector<int>> calls;
  auto loader() {
    return [this](std::span<const int> keys) {
      calls.emplace_back(keys.begin(), keys.end());
      Pairs out;
      for (int k : keys) out.emplace_back(k, "v" + std::to_string(k));
      return out;
    };
  }
};

TEST(CacheBulkLoad, LoadsOnlyTheMissingKeysInOneCallAndReturnsEveryValueInOrder) {
  auto cache = StringCache::builder().build();
  cache.insert(1, "one");
  cache.insert(3, "three");
  Recorder loads;
  EXPECT_EQ(cache.get_all({1, 2, 3, 4}, loads.loader()), (Results{"one", "v2", "three", "v4"}));
  ASSERT_EQ(loads.calls.size(), 1u);
  EXPECT_EQ(loads.calls[0], (std::vector<int>{2, 4}));
  EXPECT_EQ(cache.get(2), "v2");
  EXPECT_EQ(cache.get(4), "v4");
  const CacheStats stats = cache.stats();
  EXPECT_EQ(stats.hits, 2u + 2u);  // the two gets above count too
  EXPECT_EQ(stats.misses, 2u);
  EXPECT_EQ(stats.load_successes, 2u);
  EXPECT_EQ(stats.load_failures, 0u);
}

TEST(CacheBulkLoad, NeverCallsTheLoaderWhenEveryKeyIsCached) {
  auto cache = StringCache::builder().build();
  cache.insert(1, "one");
  Recorder loads;
  EXPECT_EQ(cache.get_all({1, 1}, loads.loader()), (Results{"one", "one"}));
  EXPECT_TRUE(loads.calls.empty());
  EXPECT_EQ(cache.get_all(std::vector<int>{}, loads.loader()), Results{});
  EXPECT_TRUE(loads.calls.empty());
}

TEST(CacheBulkLoad, AKeyTheLoaderLeavesOutIsNulloptAndNothingIsCachedForIt) {
  auto cache = StringCache::builder().build();
  const auto only_even = [](std::span<const int> keys) {
    Pairs out;
    for (int k : keys) {
      if (k % 2 == 0) out.emplace_back(k, "even");
    }
    return out;
  };
  EXPECT_EQ(cache.get_all({1, 2}, only_even), (Results{std::nullopt, "even"}));
  EXPECT_FALSE(cache.contains_key(1));
  EXPECT_EQ(cache.stats().load_failures, 1u);
  EXPECT_EQ(cache.stats().load_successes, 1u);
  Recorder loads;
  EXPECT_EQ(cache.get_all({1, 2}, loads.loader()), (Results{"v1", "even"}));  // tried again
  ASSERT_EQ(loads.calls.size(), 1u);
  EXPECT_EQ(loads.calls[0], std::vector<int>{1});
}

TEST(CacheBulkLoad, PairsForKeysNotAskedForAreCachedButNotReturned) {
  Removals removals;
  auto cache = StringCache::builder().eviction_listener(removals.listener()).build();
  cache.insert(9, "old");
  const auto with_neighbours = [](std::span<const int> keys) {
    Pairs out;
    for (int k : keys) out.emplace_back(k, "asked");
    out.emplace_back(8, "prefetched");
    out.emplace_back(9, "prefetched");
    return out;
  };
  EXPECT_EQ(cache.get_all({7}, with_neighbours), Results{"asked"});
  EXPECT_EQ(cache.get(8), "prefetched");
  EXPECT_EQ(cache.get(9), "prefetched");
  EXPECT_EQ(removals.count(RemovalCause::kReplaced), 1u);  // like insert()
  EXPECT_EQ(cache.stats().load_successes, 1u);
}

TEST(CacheBulkLoad, TheLoaderMayReturnAMapOrAnyRangeOfPairs) {
  auto cache = StringCache::builder().build();
  EXPECT_EQ(cache.get_all({1, 2},
                          [](std::span<const int> keys) {
                            absl::flat_hash_map<int, std::string> out;
                            for (int k : keys) out[k] = "flat";
                            return out;
                          }),
            (Results{"flat", "flat"}));
  EXPECT_EQ(cache.get_all({3},
                          [](std::span<const int> keys) {
                            std::map<int, std::string> out;
                            for (int k : keys) out[k] = "ordered";
                            return out;
                          }),
            Results{"ordered"});
}

TEST(CacheBulkLoad, ATableTheLoaderKeepsAndReturnsByReferenceIsCopiedFromNotMovedFrom) {
  auto cache = StringCache::builder().build();
  std::map<int, std::string> table{{4, "table"}, {5, "five"}};
  EXPECT_EQ(cache.get_all({4}, [&](std::span<const int>) -> std::map<int, std::string>& { return table; }),
            Results{"table"});
  EXPECT_EQ(table, (std::map<int, std::string>{{4, "table"}, {5, "five"}}));
  EXPECT_EQ(cache.get(5), "five");  // the extra pair, cached from a copy too
  const std::map<int, std::string>& read_only = table;
  EXPECT_EQ(cache.get_all({6, 4}, [&](std::span<const int>) -> const std::map<int, std::string>& { return read_only; }),
            (Results{std::nullopt, "table"}));
}

// clang 14 cannot compile libstdc++ 12's view pipes (API.md).
#if !defined(__clang__) || __clang_major__ >= 15
TEST(CacheBulkLoad, AViewOverATableTheLoaderKeepsIsCopiedFromNotMovedFrom) {
  auto cache = StringCache::builder().build();
  Pairs table{{4, "table"}, {5, "five"}};
  const auto asked = [&](std::span<const int> keys) {
    return table | std::views::filter([keys](const auto& p) { return p.first == keys[0]; });
  };
  EXPECT_EQ(cache.get_all({4}, asked), Results{"table"});
  EXPECT_EQ(table, (Pairs{{4, "table"}, {5, "five"}}));
}

// Elements that are prvalues but refer to the loader's storage (std::tie's tuples).
TEST(CacheBulkLoad, ElementsReferringToATableTheLoaderKeepsAreCopiedFromNotMovedFrom) {
  auto cache = StringCache::builder().build();
  std::map<int, std::string> table{{4, "four"}, {5, "five"}};
  const auto tied = [&](std::span<const int>) {
    return std::views::transform(table, [](auto& e) { return std::tie(e.first, e.second); });
  };
  EXPECT_EQ(cache.get_all({4}, tied), Results{"four"});
  EXPECT_EQ(cache.get(5), "five");
  EXPECT_EQ(table, (std::map<int, std::string>{{4, "four"}, {5, "five"}}));
}
#endif

TEST(CacheBulkLoad, AKeyAskedForTwiceIsLoadedOnce) {
  auto cache = StringCache::builder().build();
  Recorder loads;
  EXPECT_EQ(cache.get_all({5, 6, 5}, loads.loader()), (Results{"v5", "v6", "v5"}));
  ASSERT_EQ(loads.calls.size(), 1u);
  EXPECT_EQ(loads.calls[0], (std::vector<int>{5, 6}));
  EXPECT_EQ(cache.stats().load_successes, 2u);
}

TEST(CacheBulkLoad, AKeyTheLoaderReturnsTwiceTakesTheLastValue) {
  auto cache = StringCache::builder().build();
  const auto twice = [](std::span<const int>) { return Pairs{{1, "first"}, {1, "last"}}; };
  EXPECT_EQ(cache.get_all({1}, twice), Results{"last"});
  EXPECT_EQ(cache.get(1), "last");
  EXPECT_EQ(cache.stats().replacements, 0u);  // one write, not two
}

TEST(CacheBulkLoad, AThrowingLoaderCachesNothingAndTheNextCallRetries) {
  auto cache = StringCache::builder().build();
  cache.insert(1, "one");
  EXPECT_THROW(cache.get_all({1, 2, 3}, [](std::span<const int>) -> Pairs { throw std::runtime_error("boom"); }),
               std::runtime_error);
  EXPECT_FALSE(cache.contains_key(2));
  EXPECT_FALSE(cache.contains_key(3));
  EXPECT_EQ(cache.stats().load_failures, 2u);
  Recorder loads;
  EXPECT_EQ(cache.get_all({2, 3}, loads.loader()), (Results{"v2", "v3"}));
  EXPECT_EQ(loads.calls.size(), 1u);
}

TEST(CacheBulkLoad, AValueTheCacheRefusesFailsItsKeyAndTheOthersAreStillCached) {
  auto cache = StringCache::builder()
                   .max_capacity(100)
                   .weigher(test_support::throws_on_bad)
                   .build();
  const auto loader = [](std::span<const int> keys) {
    Pairs out;
    for (int k : keys) out.emplace_back(k, k == 2 ? "bad" : "good");
    return out;
  };
  EXPECT_THROW(cache.get_all({1, 2, 3}, loader), std::runtime_error);
  EXPECT_EQ(cache.get(1), "good");
  EXPECT_FALSE(cache.contains_key(2));
  EXPECT_EQ(cache.get(3), "good");
  EXPECT_EQ(cache.stats().load_successes, 2u);
  EXPECT_EQ(cache.stats().load_failures, 1u);
}

// A ManualClock that runs `hook` at its `fire_at`-th reading (not from inside the hook):
// a way to act between two steps of a call that reads the clock at each.
struct HookedClock : Clock {
  std::shared_ptr<ManualClock> base = std::make_shared<ManualClock>();
  int fire_at = -1;
  std::function<void()> hook;
  mutable int readings = 0;
  mutable bool inside = false;
  time_point now() const override {
    if (!inside && ++readings == fire_at) {
      inside = true;
      hook();
      inside = false;
    }
    return base->now();
  }
};

struct RefusesReadsOf2 : Expiry<int, std::string> {
  std::optional<Clock::duration> expire_after_read(const int& key, const std::string&, Clock::time_point,
                                                   std::optional<Clock::duration>) override {
    if (key == 2) throw std::runtime_error("expire_after_read refuses key 2");
    return std::nullopt;
  }
};

// Found by a review: a key found cached when its claim looked under the lock, whose read
// then failed (its Expiry hook threw), failed the flights already claimed for other keys,
// and so every caller that had joined them.
TEST(CacheBulkLoad, AKeyWhoseClaimFailsFailsAloneNotTheKeysClaimedBeforeIt) {
  auto clock = std::make_shared<HookedClock>();
  auto cache = StringCache::builder().expiry(std::make_shared<RefusesReadsOf2>()).clock(clock).build();
  // get_all({1, 2}) reads the clock to look up 1, to look up 2, to claim 1 and to claim 2:
  // key 2 is written between its look-up (missing) and its claim (found, its read refused).
  clock->fire_at = 4;
  clock->hook = [&] { cache.insert(2, "two"); };
  Recorder loads;
  EXPECT_THROW(cache.get_all({1, 2}, loads.loader()), std::runtime_error);
  EXPECT_EQ(loads.calls, (std::vector<std::vector<int>>{{1}}));
  EXPECT_EQ(cache.get(1), "v1") << "key 1's load must not fail with key 2's error";
  EXPECT_EQ(cache.stats().load_successes, 1u);
  EXPECT_EQ(cache.stats().load_failures, 0u);
}

TEST(CacheBulkLoad, ARefusedExtraPairPropagatesAfterEveryOtherPairIsCached) {
  auto cache = StringCache::builder()
                   .max_capacity(100)
                   .weigher(test_support::throws_on_bad)
                   .build();
  EXPECT_THROW(cache.get_all({1}, [](std::span<const int>) { return Pairs{{1, "good"}, {2, "bad"}, {3, "good"}}; }),
               std::runtime_error);
  EXPECT_EQ(cache.get(1), "good");
  EXPECT_FALSE(cache.contains_key(2));
  EXPECT_EQ(cache.get(3), "good");
}

TEST(CacheBulkLoad, ExpiredEntriesAreLoadedAgain) {
  auto clock = std::make_shared<ManualClock>();
  auto cache = StringCache::builder().time_to_live(seconds(10)).clock(clock).build();
  cache.insert(1, "old");
  clock->advance(seconds(11));
  Recorder loads;
  EXPECT_EQ(cache.get_all({1}, loads.loader()), Results{"v1"});
  EXPECT_EQ(loads.calls.size(), 1u);
}

TEST(CacheBulkLoad, JoinsAnOptionallyGetWithInFlightInsteadOfLoadingItsKeyAgain) {
  auto cache = std::make_shared<StringCache>(StringCache::builder().build());
  std::atomic<bool> loading{false}, release{false};
  std::thread single([&] {
    cache->optionally_get_with(7, [&]() -> std::optional<std::string> {
      loading = true;
      while (!release.load()) std::this_thread::yield();
      return "single";
    });
  });
  while (!loading.load()) std::this_thread::yield();
  Recorder loads;
  std::thread bulk_release([&] {
    std::this_thread::sleep_for(milliseconds(20));  // the bulk load has joined by then
    release = true;
  });
  EXPECT_EQ(cache->get_all({6, 7}, loads.loader()), (Results{"v6", "single"}));
  ASSERT_EQ(loads.calls.size(), 1u);
  EXPECT_EQ(loads.calls[0], std::vector<int>{6});
  single.join();
  bulk_release.join();
}

TEST(CacheBulkLoad, AnOptionallyGetWithWaitsForTheBulkLoadAndGetsItsValueOrItsException) {
  auto cache = std::make_shared<StringCache>(StringCache::builder().build());
  for (const bool fail : {false, true}) {
    cache->invalidate_all();
    std::atomic<bool> loading{false}, release{false};
    std::atomic<int> single_init_calls{0};
    std::optional<std::string> single_got;
    bool single_threw = false;
    std::thread bulk([&] {
      try {
        cache->get_all({1, 2}, [&](std::span<const int> keys) {
          loading = true;
          while (!release.load()) std::this_thread::yield();
          if (fail) throw std::runtime_error("boom");
          Pairs out;
          for (int k : keys) out.emplace_back(k, "bulk");
          return out;
        });
      } catch (const std::runtime_error&) {
      }
    });
    while (!loading.load()) std::this_thread::yield();
    std::thread single([&] {
      try {
        single_got = cache->optionally_get_with(2, [&]() -> std::optional<std::string> {
          ++single_init_calls;
          return "single";
        });
      } catch (const std::runtime_error&) {
        single_threw = true;
      }
    });
    std::this_thread::sleep_for(milliseconds(20));  // the single load has joined by then
    release = true;
    bulk.join();
    single.join();
    EXPECT_EQ(single_init_calls.load(), 0) << "fail=" << fail;
    EXPECT_EQ(single_threw, fail);
    if (!fail) {
      EXPECT_EQ(single_got, "bulk");
    }
  }
}

// B leads key 2 and, inside its loader, waits for key 1; A's bulk load leads key 1 and
// joins key 2. Had A waited for key 2 before ending its load of key 1, neither would return.
TEST(CacheBulkLoad, EndsItsOwnLoadsBeforeWaitingForTheOnesItJoined) {
  auto cache = std::make_shared<StringCache>(StringCache::builder().build());
  EXPECT_TRUE(finishes_within(seconds(10), [cache] {
    auto a_loading = std::make_shared<std::atomic<bool>>(false);
    std::thread b([cache, a_loading] {
      cache->optionally_get_with(2, [&]() -> std::optional<std::string> {
        while (!a_loading->load()) std::this_thread::yield();
        return *cache->optionally_get_with(1, [] { return std::optional<std::string>("b's own"); }) + "+two";
      });
    });
    while (!cache->contains_key(2) && cache->stats().misses == 0) std::this_thread::yield();  // b leads 2
    const Results got = cache->get_all({1, 2}, [&](std::span<const int> keys) {
      *a_loading = true;
      std::this_thread::sleep_for(milliseconds(20));  // b joins our load of key 1 meanwhile
      Pairs out;
      for (int k : keys) out.emplace_back(k, "a's");
      return out;
    });
    b.join();
    EXPECT_EQ(got, (Results{"a's", "a's+two"}));
  }));
}

TEST(CacheBulkLoad, TheLoaderMayUseTheCacheForOtherKeys) {
  auto cache = StringCache::builder().build();
  const Results got = cache.get_all({1}, [&](std::span<const int> keys) {
    cache.insert(10, "ten");
    Pairs out;
    for (int k : keys) out.emplace_back(k, *cache.get_all({11}, [](std::span<const int> inner) {
      return Pairs{{inner[0], "eleven"}};
    })[0]);
    return out;
  });
  EXPECT_EQ(got, Results{"eleven"});
  EXPECT_EQ(cache.get(10), "ten");
  EXPECT_EQ(cache.get(11), "eleven");
}

TEST(CacheBulkLoad, LoadingItsOwnKeyFromInsideAComputeIsRefused) {
  auto cache = StringCache::builder().build();
  Recorder loads;
  EXPECT_THROW(cache.compute(1,
                             [&](const std::optional<std::string>&) {
                               cache.get_all({2, 1}, loads.loader());
                               return ComputeOp<std::string>::nop();
                             }),
               std::logic_error);
  EXPECT_TRUE(loads.calls.empty());
  EXPECT_FALSE(cache.contains_key(2));
  // Refused before key 2 was claimed: another caller's load of key 2 could not fail with it.
  EXPECT_EQ(cache.stats().load_failures, 0u);
  // Neither key is left in flight: both load normally afterwards.
  EXPECT_EQ(cache.get_all({2, 1}, loads.loader()), (Results{"v2", "v1"}));
}

// ---- A listener that loads while get_all() leads flights ------------------------------

// The cache a listener calls back into: set once the cache is built, shared with the
// scenario (which finishes_within() may leave blocked, on a timeout).
struct CallBack {
  std::unique_ptr<StringCache> cache;
};

// A listener may load any key (only its own compute's key is off limits), so get_all()
// must deliver nothing while it leads a flight: the listener would join that flight, on
// the thread that leads it, and wait forever. Each case reaches the listener another way.
TEST(CacheBulkLoadListener, AListenerOfAClaimedKeysOwnWriteMayLoadAnotherClaimedKey) {
  EXPECT_TRUE(finishes_within(seconds(10), [] {
    auto back = std::make_shared<CallBack>();
    back->cache = std::make_unique<StringCache>(
        StringCache::builder()
            .max_capacity(0)  // every loaded value is refused at once: kSize
            .eviction_listener([raw = back.get()](const int& k, const std::string&, RemovalCause) {
              if (k == 1) raw->cache->optionally_get_with(2, [] { return std::optional<std::string>("x"); });
            })
            .build());
    Recorder loads;
    EXPECT_EQ(back->cache->get_all({1, 2}, loads.loader()), (Results{"v1", "v2"}));
  }));
}

TEST(CacheBulkLoadListener, AListenerOfTheEvictionsItsWritesCauseMayLoadAClaimedKey) {
  EXPECT_TRUE(finishes_within(seconds(10), [] {
    auto back = std::make_shared<CallBack>();
    back->cache = std::make_unique<StringCache>(
        StringCache::builder()
            .max_capacity(2)
            .eviction_listener([raw = back.get()](const int&, const std::string&, RemovalCause cause) {
              if (cause == RemovalCause::kSize) raw->cache->get_all({2}, Recorder().loader());
            })
            .build());
    back->cache->insert(100, "a");
    back->cache->insert(101, "b");
    back->cache->run_pending_tasks();
    Recorder loads;
    EXPECT_EQ(back->cache->get_all({1, 2}, loads.loader()), (Results{"v1", "v2"}));
  }));
}

TEST(CacheBulkLoadListener, AListenerOfAnExpiryItsLookUpsFindMayLoadAnotherOfItsKeys) {
  EXPECT_TRUE(finishes_within(seconds(10), [] {
    auto back = std::make_shared<CallBack>();
    auto clock = std::make_shared<ManualClock>();
    back->cache = std::make_unique<StringCache>(
        StringCache::builder()
            .time_to_live(seconds(10))
            .clock(clock)
            .eviction_listener([raw = back.get()](const int& k, const std::string&, RemovalCause cause) {
              if (cause == RemovalCause::kExpired && k == 5) {
                raw->cache->optionally_get_with(1, [] { return std::optional<std::string>("listener's"); });
              }
            })
            .build());
    back->cache->insert(5, "old");
    back->cache->run_pending_tasks();
    clock->advance(seconds(11));
    const Results got = back->cache->get_all({1, 5}, Recorder().loader());
    EXPECT_EQ(got[1], "v5");
  }));
}

// The one load a listener cannot make: of a key its own thread is loading further up the
// stack (here the loader's own write delivers to it). It would wait for itself; it throws.
TEST(CacheBulkLoadListener, ALoadOfAKeyItsOwnThreadIsLoadingThrowsInsteadOfWaitingForItself) {
  EXPECT_TRUE(finishes_within(seconds(10), [] {
    struct Back {
      std::unique_ptr<StringCache> cache;
      std::string refused;
    };
    auto back = std::make_shared<Back>();
    back->cache = std::make_unique<StringCache>(
        StringCache::builder()
            .eviction_listener([raw = back.get()](const int& k, const std::string&, RemovalCause cause) {
              if (k != 10 || cause != RemovalCause::kReplaced) return;
              try {
                raw->cache->optionally_get_with(1, [] { return std::optional<std::string>("listener's"); });
              } catch (const std::logic_error& e) {
                raw->refused = e.what();
              }
            })
            .build());
    back->cache->insert(10, "ten");
    const Results got = back->cache->get_all({1}, [&](std::span<const int> keys) {
      back->cache->insert(10, "ten again");  // the loader may use the cache for other keys
      Pairs out;
      for (int k : keys) out.emplace_back(k, "bulk");
      return out;
    });
    EXPECT_EQ(got, Results{"bulk"});
    EXPECT_NE(back->refused.find("wait for itself"), std::string::npos) << back->refused;
  }));
}

TEST(CacheBulkLoad, ABulkLoadInsideTheLoaderOfOneOfItsKeysThrowsForThatKey) {
  auto cache = std::make_shared<StringCache>(StringCache::builder().build());
  EXPECT_TRUE(finishes_within(seconds(10), [cache] {
    EXPECT_THROW(cache->optionally_get_with(1,
                                            [&] {
                                              cache->get_all({2, 1}, Recorder().loader());
                                              return std::optional<std::string>("outer");
                                            }),
                 std::logic_error);
  }));
  EXPECT_EQ(cache->get(2), "v2");  // the bulk load's other key was loaded
  EXPECT_FALSE(cache->contains_key(1));
}

// ---- Keys whose Hash or Eq throws ---------------------------------------------------------

// Eq throws once armed: the flight's end (which looks the key up among the loads in
// flight) fails, and the flight must still end, or later loads of its key wait forever.
using test_support::eq_throws_left;
using ArmedEqCache = Cache<int, std::string, absl::Hash<int>, test_support::ArmedEq>;

TEST(CacheBulkLoad, AKeyWhoseEqThrowsWhileItsLoadEndsIsNotLeftInFlight) {
  auto cache = std::make_shared<ArmedEqCache>(ArmedEqCache::builder().build());
  EXPECT_EQ(cache->get_all({1, 2},
                           [](std::span<const int>) {
                             eq_throws_left = 1;
                             return Pairs{};
                           }),
            (Results{std::nullopt, std::nullopt}));
  EXPECT_EQ(eq_throws_left.load(), 0);  // it did throw, inside the cache
  EXPECT_TRUE(finishes_within(seconds(10), [cache] {
    EXPECT_EQ(cache->optionally_get_with(1, [] { return std::optional<std::string>("later"); }), "later");
    EXPECT_EQ(cache->optionally_get_with(2, [] { return std::optional<std::string>("later"); }), "later");
  }));
}

}  // namespace
}  // namespace streamcache
