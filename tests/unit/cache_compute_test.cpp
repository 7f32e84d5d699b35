// Cache::compute() and upsert_with(): what each decision does, and that a compute is
// atomic with respect to whatever else happens to its key while its function runs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "streamcache/cache.hpp"
#include "unit/cache_test_support.hpp"

namespace streamcache {
namespace {

using std::chrono::seconds;
using test_support::Removals;
using ::testing::ElementsAre;

using StringCache = Cache<int, std::string>;
using Op = ComputeOp<std::string>;

// A compute function that records what it was given.
struct Recorder {
  std::vector<std::optional<std::string>> seen;
  auto then(Op op) {
    return [this, op](const std::optional<std::string>& current) {
      seen.push_back(current);
      return op;
    };
  }
};

TEST(CacheCompute, PutOnAnAbsentKeyInsertsIt) {
  Removals removals;
  auto cache = StringCache::builder().eviction_listener(removals.listener()).build();
  Recorder f;
  const ComputeResult<std::string> r = cache.compute(1, f.then(Op::put("one")));
  EXPECT_EQ(r.outcome, ComputeOutcome::kInserted);
  EXPECT_EQ(r.value, "one");
  EXPECT_THAT(f.seen, ElementsAre(std::nullopt));
  EXPECT_EQ(cache.get(1), "one");
  cache.run_pending_tasks();
  EXPECT_TRUE(removals.calls.empty());
}

TEST(CacheCompute, PutOnAPresentKeyReplacesItAndReportsTheOldValueAsReplaced) {
  Removals removals;
  auto cache = StringCache::builder().eviction_listener(removals.listener()).build();
  cache.insert(1, "one");
  Recorder f;
  const auto r = cache.compute(1, f.then(Op::put("uno")));
  EXPECT_EQ(r.outcome, ComputeOutcome::kReplaced);
  EXPECT_EQ(r.value, "uno");
  EXPECT_THAT(f.seen, ElementsAre("one"));
  EXPECT_EQ(cache.get(1), "uno");
  cache.run_pending_tasks();
  EXPECT_THAT(removals.calls, ElementsAre(std::make_tuple(1, "one", RemovalCause::kReplaced)));
  EXPECT_EQ(cache.stats().replacements, 1u);
}

TEST(CacheCompute, RemoveReturnsTheValueAndReportsExplicit) {
  Removals removals;
  auto cache = StringCache::builder().eviction_listener(removals.listener()).build();
  cache.insert(1, "one");
  const auto r = cache.compute(1, [](const std::optional<std::string>&) { return Op::remove(); });
  EXPECT_EQ(r.outcome, ComputeOutcome::kRemoved);
  EXPECT_EQ(r.value, "one");
  EXPECT_FALSE(cache.contains_key(1));
  cache.run_pending_tasks();
  EXPECT_THAT(removals.calls, ElementsAre(std::make_tuple(1, "one", RemovalCause::kExplicit)));
  EXPECT_EQ(cache.stats().invalidations, 1u);
  EXPECT_EQ(cache.entry_count(), 0u);
}

TEST(CacheCompute, NopAndRemoveOfAnAbsentKeyChangeNothing) {
  Removals removals;
  auto cache = StringCache::builder().eviction_listener(removals.listener()).build();
  cache.insert(1, "one");
  const auto kept = cache.compute(1, [](const std::optional<std::string>&) { return Op::nop(); });
  EXPECT_EQ(kept.outcome, ComputeOutcome::kUnchanged);
  EXPECT_EQ(kept.value, "one");
  const auto absent = cache.compute(2, [](const std::optional<std::string>&) { return Op::nop(); });
  EXPECT_EQ(absent.outcome, ComputeOutcome::kStillAbsent);
  EXPECT_EQ(absent.value, std::nullopt);
  const auto removed_nothing = cache.compute(2, [](const std::optional<std::string>&) { return Op::remove(); });
  EXPECT_EQ(removed_nothing.outcome, ComputeOutcome::kStillAbsent);
  EXPECT_EQ(cache.get(1), "one");
  EXPECT_FALSE(cache.contains_key(2));
  cache.run_pending_tasks();
  EXPECT_TRUE(removals.calls.empty());
  EXPECT_EQ(cache.entry_count(), 1u);
}

TEST(CacheCompute, UpsertWithCountsFromNothing) {
  auto cache = Cache<std::string, int>::builder().build();
  const auto increment = [](const std::optional<int>& n) { return n.value_or(0) + 1; };
  EXPECT_EQ(cache.upsert_with("clicks", increment), 1);
  EXPECT_EQ(cache.upsert_with("clicks", increment), 2);
  EXPECT_EQ(cache.upsert_with("clicks", increment), 3);
  EXPECT_EQ(cache.get("clicks"), 3);
}

TEST(CacheCompute, CountsNoHitOrMissAndNoLoad) {
  auto cache = StringCache::builder().build();
  cache.compute(1, [](const std::optional<std::string>&) { return Op::put("one"); });
  cache.compute(1, [](const std::optional<std::string>&) { return Op::nop(); });
  cache.compute(2, [](const std::optional<std::string>&) { return Op::nop(); });
  const CacheStats stats = cache.stats();
  EXPECT_EQ(stats.hits, 0u);
  EXPECT_EQ(stats.misses, 0u);
  EXPECT_EQ(stats.load_successes + stats.load_failures, 0u);
}

TEST(CacheCompute, AFunctionThatThrowsChangesNothingAndTheNextComputeRuns) {
  auto cache = StringCache::builder().build();
  cache.insert(1, "one");
  EXPECT_THROW(cache.compute(1, [](const std::optional<std::string>&) -> Op { throw std::runtime_error("boom"); }),
               std::runtime_error);
  EXPECT_EQ(cache.get(1), "one");
  EXPECT_EQ(cache.compute(1, [](const std::optional<std::string>&) { return Op::put("uno"); }).value, "uno");
}

// The turn's end looks the key up among the turns in flight; an Eq that throws there (in
// the guard, then again as the turn ends on the way out) must neither end the process nor
// leave the turn open for the next compute of the key.
TEST(CacheCompute, ATurnWhoseEqThrowsAsItEndsLeavesNoTurnOpen) {
  using ArmedEqCache = Cache<int, std::string, absl::Hash<int>, test_support::ArmedEq>;
  auto cache = std::make_shared<ArmedEqCache>(ArmedEqCache::builder().shards(1).build());
  int runs = 0;
  EXPECT_THROW(cache->compute(1,
                              [&](const std::optional<std::string>&) {
                                if (++runs == 1) {
                                  cache->insert(2, "two");  // same shard: the optimistic attempt fails
                                } else {
                                  test_support::eq_throws_left = 1000;  // in the turn: every comparison throws
                                }
                                return ComputeOp<std::string>::put("one");
                              }),
               std::runtime_error);
  test_support::eq_throws_left = 0;
  EXPECT_EQ(runs, 2);
  EXPECT_TRUE(test_support::finishes_within(seconds(10), [cache] {
    EXPECT_EQ(cache->upsert_with(1, [](const std::optional<std::string>&) { return std::string("later"); }), "later");
  }));
}

TEST(CacheCompute, AWeigherThatThrowsChangesNothingAndTheNextComputeRuns) {
  auto cache = StringCache::builder()
                   .max_capacity(100)
                   .weigher(test_support::throws_on_bad)
                   .build();
  cache.insert(1, "one");
  EXPECT_THROW(cache.compute(1, [](const std::optional<std::string>&) { return Op::put("bad"); }), std::runtime_error);
  EXPECT_EQ(cache.get(1), "one");
  EXPECT_EQ(cache.compute(1, [](const std::optional<std::string>&) { return Op::put("uno"); }).outcome,
            ComputeOutcome::kReplaced);
}

TEST(CacheCompute, APutHeavierThanTheCapacityIsNeverKeptAndReportedAsSize) {
  Removals removals;
  auto cache = StringCache::builder()
                   .max_capacity(3)
                   .weigher(test_support::value_length)
                   .eviction_listener(removals.listener())
                   .build();
  cache.insert(1, "one");
  EXPECT_EQ(cache.compute(1, [](const std::optional<std::string>&) { return Op::put("eleven"); }).outcome,
            ComputeOutcome::kReplaced);  // written as insert() writes it, then never kept
  EXPECT_FALSE(cache.contains_key(1));
  cache.run_pending_tasks();
  EXPECT_THAT(removals.calls, ElementsAre(std::make_tuple(1, "one", RemovalCause::kReplaced),
                                          std::make_tuple(1, "eleven", RemovalCause::kSize)));
}

struct ComputeExpiry : ::testing::Test {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  Removals removals;
};

TEST_F(ComputeExpiry, AnExpiredEntryIsAbsentToTheFunctionAndReportedExpiredWhenReplaced) {
  auto cache = StringCache::builder().time_to_live(seconds(10)).clock(clock).eviction_listener(removals.listener()).build();
  cache.insert(1, "one");
  clock->advance(seconds(10));
  Recorder f;
  EXPECT_EQ(cache.compute(1, f.then(Op::put("uno"))).outcome, ComputeOutcome::kInserted);
  EXPECT_THAT(f.seen, ElementsAre(std::nullopt));
  cache.run_pending_tasks();
  EXPECT_THAT(removals.calls, ElementsAre(std::make_tuple(1, "one", RemovalCause::kExpired)));
  EXPECT_EQ(cache.get(1), "uno");
}

TEST_F(ComputeExpiry, APutRestartsTimeToLiveAndItsReadDoesNotRestartTimeToIdle) {
  auto cache = StringCache::builder().time_to_live(seconds(10)).clock(clock).build();
  cache.insert(1, "one");
  clock->advance(seconds(8));
  cache.compute(1, [](const std::optional<std::string>&) { return Op::put("uno"); });
  clock->advance(seconds(8));  // 16 s after the insert, 8 after the put
  EXPECT_EQ(cache.get(1), "uno");

  auto idle = StringCache::builder().time_to_idle(seconds(10)).clock(clock).build();
  idle.insert(1, "one");
  clock->advance(seconds(8));
  idle.compute(1, [](const std::optional<std::string>&) { return Op::nop(); });
  clock->advance(seconds(2));  // 10 s after the write: the compute's read was no read
  EXPECT_FALSE(idle.contains_key(1));
}

struct UpdateCounter : Expiry<int, std::string> {
  std::optional<Clock::duration> expire_after_create(const int&, const std::string&, Clock::time_point) override {
    ++creates;
    return seconds(5);
  }
  std::optional<Clock::duration> expire_after_update(const int&, const std::string&, Clock::time_point,
                                                     std::optional<Clock::duration>) override {
    ++updates;
    return seconds(50);
  }
  int creates = 0;
  int updates = 0;
};

TEST_F(ComputeExpiry, APutRunsTheCreateOrUpdateHookAsInsertDoes) {
  auto expiry = std::make_shared<UpdateCounter>();
  auto cache = StringCache::builder().expiry(expiry).clock(clock).build();
  cache.compute(1, [](const std::optional<std::string>&) { return Op::put("one"); });
  EXPECT_EQ(expiry->creates, 1);
  cache.compute(1, [](const std::optional<std::string>&) { return Op::put("uno"); });
  EXPECT_EQ(expiry->updates, 1);
  clock->advance(seconds(20));  // past the create hook's 5 s, within the update hook's 50
  EXPECT_EQ(cache.get(1), "uno");
}

// ---- Atomicity: what happens to the key while the function runs --------------------

// A compute function that records the value it gets and appends "+" to it; the first time,
// `interference` runs on another thread while it decides (and must not wait for it).
template <class Interference>
auto append_interfered_once(Recorder& recorder, Interference interference) {
  return [&recorder, interference, interfered = false](const std::optional<std::string>& current) mutable {
    recorder.seen.push_back(current);
    if (!std::exchange(interfered, true)) std::thread(interference).join();
    return Op::put(current.value_or("") + "+");
  };
}

TEST(CacheComputeAtomicity, AnInsertWhileTheFunctionRunsDoesNotWaitAndMakesItDecideAgain) {
  auto cache = StringCache::builder().build();
  cache.insert(1, "a");
  Recorder recorder;
  const auto r = cache.compute(1, append_interfered_once(recorder, [&] { cache.insert(1, "b"); }));
  EXPECT_THAT(recorder.seen, ElementsAre("a", "b"));
  EXPECT_EQ(r.value, "b+");
  EXPECT_EQ(cache.get(1), "b+");
}

TEST(CacheComputeAtomicity, ARemovalWhileTheFunctionRunsMakesItDecideAgain) {
  auto cache = StringCache::builder().build();
  cache.insert(1, "a");
  Recorder recorder;
  const auto r = cache.compute(1, append_interfered_once(recorder, [&] { cache.remove(1); }));
  EXPECT_THAT(recorder.seen, ElementsAre("a", std::nullopt));
  EXPECT_EQ(r.outcome, ComputeOutcome::kInserted);
  EXPECT_EQ(cache.get(1), "+");
}

TEST(CacheComputeAtomicity, AnInvalidationWhileTheFunctionRunsMakesARemoveDecideAgain) {
  Removals removals;
  auto cache = StringCache::builder().eviction_listener(removals.listener()).build();
  cache.insert(1, "a");
  int calls = 0;
  const auto r = cache.compute(1, [&](const std::optional<std::string>& current) {
    if (++calls == 1) std::thread([&] { cache.invalidate_if([](const int&, const std::string&) { return true; }); }).join();
    return current ? Op::remove() : Op::nop();
  });
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(r.outcome, ComputeOutcome::kStillAbsent);
  cache.run_pending_tasks();
  EXPECT_THAT(removals.calls, ElementsAre(std::make_tuple(1, "a", RemovalCause::kExplicit)));  // once
}

TEST_F(ComputeExpiry, AnEntryThatExpiresWhileTheFunctionRunsMakesItDecideAgain) {
  auto cache = StringCache::builder().time_to_live(seconds(10)).clock(clock).eviction_listener(removals.listener()).build();
  cache.insert(1, "a");
  Recorder recorder;
  const auto r = cache.compute(1, [&](const std::optional<std::string>& current) {
    recorder.seen.push_back(current);
    if (recorder.seen.size() == 1) clock->advance(seconds(10));
    return Op::put(current.value_or("") + "+");
  });
  EXPECT_THAT(recorder.seen, ElementsAre("a", std::nullopt));
  EXPECT_EQ(r.outcome, ComputeOutcome::kInserted);
  EXPECT_EQ(cache.get(1), "+");
  cache.run_pending_tasks();
  EXPECT_THAT(removals.calls, ElementsAre(std::make_tuple(1, "a", RemovalCause::kExpired)));
}

TEST(CacheComputeAtomicity, ALoadOfTheKeyWhileTheFunctionRunsMakesItDecideAgain) {
  auto cache = StringCache::builder().build();
  Recorder recorder;
  const auto r = cache.compute(1, [&](const std::optional<std::string>& current) {
    recorder.seen.push_back(current);
    if (recorder.seen.size() == 1) {
      std::thread([&] { cache.get_with(1, [] { return std::string("loaded"); }); }).join();
    }
    return current ? Op::nop() : Op::put("computed");
  });
  EXPECT_THAT(recorder.seen, ElementsAre(std::nullopt, "loaded"));
  EXPECT_EQ(r.outcome, ComputeOutcome::kUnchanged);
  EXPECT_EQ(cache.get(1), "loaded");
}

// White-box: the first compute's function waits for the main thread's compute of the same
// key, which the contract forbids; it cannot deadlock here only because the first is in its
// optimistic first attempt (nothing else writes the shard), which holds no turn.
TEST(CacheComputeAtomicity, AComputeThatFinishesWhileAnotherOfItsKeyDecidesMakesThatOneDecideAgain) {
  auto cache = StringCache::builder().build();
  std::promise<void> first_running;
  std::promise<void> release_first;
  std::shared_future<void> released = release_first.get_future().share();
  std::vector<std::optional<std::string>> first_saw;
  std::thread first([&] {
    cache.compute(1, [&](const std::optional<std::string>& current) {
      first_saw.push_back(current);
      if (first_saw.size() == 1) {
        first_running.set_value();
        released.wait();
      }
      return Op::put(current.value_or("") + "first");
    });
  });
  first_running.get_future().wait();
  // The second does not wait for the first to decide: it completes, and the first, whose
  // decision was made on the value before it, decides again on the second's.
  EXPECT_EQ(cache.compute(1, [](const std::optional<std::string>& current) {
    return Op::put(current.value_or("") + "second");
  }).value, "second");
  release_first.set_value();
  first.join();
  EXPECT_THAT(first_saw, ElementsAre(std::nullopt, "second"));
  EXPECT_EQ(cache.get(1), "secondfirst");
}

// A compute whose first, optimistic attempt raced another write in its shard (here: its
// own function writing another key) takes its key's turn; computes in their turn wait
// for each other instead of deciding again and again.
TEST(CacheComputeAtomicity, AfterARaceInTheShardComputesOfAKeyTakeTurns) {
  auto cache = StringCache::builder().shards(1).build();
  std::promise<void> a_in_turn;
  std::promise<void> release_a;
  std::shared_future<void> released = release_a.get_future().share();
  std::atomic<int> a_calls{0};
  std::atomic<int> b_calls{0};
  std::thread a([&] {
    cache.compute(1, [&](const std::optional<std::string>& current) {
      if (++a_calls == 1) {
        cache.insert(100, "another key, same shard");  // the optimistic attempt fails
      } else {
        a_in_turn.set_value();
        released.wait();
      }
      return Op::put(current.value_or("") + "A");
    });
  });
  if (a_in_turn.get_future().wait_for(seconds(5)) != std::future_status::ready) {
    release_a.set_value();
    a.join();
    FAIL() << "A's first attempt did not fail, or A never decided again";
  }
  std::thread b([&] {
    cache.compute(1, [&](const std::optional<std::string>& current) {
      if (++b_calls == 1) cache.insert(101, "another key, same shard");
      return Op::put(current.value_or("") + "B");
    });
  });
  // B's first attempt fails too; then it waits for A's turn to end. (A wrong B that did
  // not wait would decide again at once: give it time to.)
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(b_calls.load(), 1);
  EXPECT_FALSE(cache.contains_key(1));
  release_a.set_value();
  a.join();
  b.join();
  EXPECT_EQ(a_calls.load(), 2);
  EXPECT_EQ(b_calls.load(), 2);
  EXPECT_EQ(cache.get(1), "AB");
}

TEST(CacheComputeAtomicity, ComputesOfDifferentKeysDoNotWaitForEachOther) {
  auto cache = StringCache::builder().build();
  const auto r = cache.compute(1, [&](const std::optional<std::string>&) {
    std::thread([&] { cache.compute(2, [](const std::optional<std::string>&) { return Op::put("two"); }); }).join();
    return Op::put(cache.get(2).value_or("missing") + "+one");  // it may read the cache, other keys too
  });
  EXPECT_EQ(r.value, "two+one");
}

TEST(CacheComputeAtomicity, TheFunctionWritingItsOwnKeyThrowsLogicErrorAndChangesNothing) {
  auto cache = StringCache::builder().build();
  cache.insert(1, "one");
  const auto writes_itself = [&](const std::optional<std::string>&) {
    cache.insert(1, "sneaky");
    return Op::put("uno");
  };
  EXPECT_THROW(cache.compute(1, writes_itself), std::logic_error);
  EXPECT_THROW(cache.compute(1, [&](const std::optional<std::string>&) {
    cache.remove(1);
    return Op::nop();
  }), std::logic_error);
  EXPECT_THROW(cache.compute(1, [&](const std::optional<std::string>&) {
    cache.compute(1, [](const std::optional<std::string>&) { return Op::nop(); });
    return Op::nop();
  }), std::logic_error);
  EXPECT_EQ(cache.get(1), "one");
  // The turn ended each time: the key computes again.
  EXPECT_EQ(cache.compute(1, [](const std::optional<std::string>&) { return Op::put("uno"); }).value, "uno");
}

TEST(CacheComputeAtomicity, AListenerMayWriteTheKeyOnceTheComputeTookEffect) {
  std::unique_ptr<StringCache> cache;
  cache = std::make_unique<StringCache>(
      StringCache::builder()
          .eviction_listener([&](const int& k, const std::string& v, RemovalCause cause) {
            if (cause == RemovalCause::kExplicit && v == "one") cache->insert(k, "restored");
          })
          .build());
  cache->insert(1, "one");
  EXPECT_EQ(cache->compute(1, [](const std::optional<std::string>&) { return Op::remove(); }).outcome,
            ComputeOutcome::kRemoved);
  cache->run_pending_tasks();
  EXPECT_EQ(cache->get(1), "restored");
}

TEST(CacheComputeAtomicity, LoadingItsOwnKeyFromTheFunctionThrowsWithoutFailingOtherLoads) {
  auto cache = StringCache::builder().build();
  bool refused = false;
  cache.compute(1, [&](const std::optional<std::string>&) {
    try {
      cache.get_with(1, [] { return std::string("loaded"); });
    } catch (const std::logic_error&) {
      refused = true;  // before any flight another caller could have joined
    }
    return Op::nop();
  });
  EXPECT_TRUE(refused);
  EXPECT_EQ(cache.get_with(1, [] { return std::string("loaded later"); }), "loaded later");
  EXPECT_EQ(cache.stats().load_failures, 0u);
}

// Maintenance that the function's own writes run delivers evictions on its thread; the
// listener is no part of the function, and may write the computed key (the compute then
// decides again on what the listener wrote).
TEST(CacheComputeAtomicity, AListenerDeliveredInsideTheFunctionMayWriteTheComputedKey) {
  std::unique_ptr<StringCache> cache;
  int listener_writes = 0;
  cache = std::make_unique<StringCache>(
      StringCache::builder()
          .max_capacity(4)
          .eviction_listener([&](const int& k, const std::string&, RemovalCause cause) {
            if (cause != RemovalCause::kSize || k == 0) return;
            cache->insert(0, "evicted " + std::to_string(k));  // threw std::logic_error, swallowed
            ++listener_writes;
          })
          .build());
  int runs = 0;
  const auto r = cache->compute(0, [&](const std::optional<std::string>& current) {
    ++runs;
    for (int i = 1; i < 64; ++i) cache->insert(i, "v");
    return current ? Op::nop() : Op::put("computed");
  });
  EXPECT_GT(listener_writes, 0);
  EXPECT_EQ(runs, 2);
  // The second run found a listener's value and kept it (a nop takes effect at the read;
  // that run's own evictions may have written the key again since).
  EXPECT_EQ(r.outcome, ComputeOutcome::kUnchanged);
  ASSERT_TRUE(r.value.has_value());
  EXPECT_EQ(r.value->rfind("evicted ", 0), 0u) << *r.value;
}

// A compute in its turn ends the turn with its effect, before its notifications are
// delivered: its listener may wait for a thread that waits for the turn (it used to wait
// for the listener, which waited for it: a review's reproducer).
TEST(CacheComputeAtomicity, TheListenerOfAComputeInItsTurnMayWaitForAnotherComputeOfTheKey) {
  std::atomic<bool> second_done{false};
  std::atomic<bool> listener_gave_up{false};
  std::unique_ptr<StringCache> cache;
  cache = std::make_unique<StringCache>(
      StringCache::builder()
          .shards(1)
          .eviction_listener([&](const int& k, const std::string& v, RemovalCause cause) {
            if (k != 1 || cause != RemovalCause::kReplaced || v != "old") return;
            const auto give_up = std::chrono::steady_clock::now() + seconds(5);
            while (!second_done.load()) {
              if (std::chrono::steady_clock::now() > give_up) {
                listener_gave_up = true;
                return;
              }
              std::this_thread::yield();
            }
          })
          .build());
  cache->insert(1, "old");
  std::promise<void> first_in_turn;
  std::atomic<int> second_calls{0};
  std::thread first([&] {
    int calls = 0;
    cache->compute(1, [&](const std::optional<std::string>& current) {
      if (++calls == 1) {
        cache->insert(100, "x");  // same shard: the first attempt fails, the turn follows
      } else {
        first_in_turn.set_value();
        while (second_calls.load() == 0) std::this_thread::yield();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the second now waits for the turn
      }
      return Op::put(current.value_or("") + "+1");
    });
  });
  first_in_turn.get_future().wait();
  std::thread second([&] {
    cache->compute(1, [&](const std::optional<std::string>& current) {
      if (++second_calls == 1) cache->insert(101, "y");  // its first attempt fails too
      return Op::put(current.value_or("") + "+2");
    });
    second_done = true;
  });
  first.join();
  second.join();
  EXPECT_FALSE(listener_gave_up.load()) << "the listener waited for the second compute, which waited for the first";
  EXPECT_EQ(cache->get(1), "old+1+2");
}

}  // namespace
}  // namespace streamcache
