#include "streamcache/streaming_map.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace streamcache {
namespace {

using Map = StreamingMap<std::string, int>;
using Ev = Event<std::string, int>;
using std::chrono::seconds;

struct Seen {
  uint64_t seq;
  EventKind kind;
  std::string key;
  std::optional<int> value;
  bool operator==(const Seen&) const = default;
};

Seen seen(const Ev& e) { return Seen{e.seq, e.kind, e.key, e.value ? std::optional<int>(*e.value) : std::nullopt}; }

std::vector<Seen> take(Generator<Ev> gen) {
  std::vector<Seen> out;
  for (const Ev& e : gen) out.push_back(seen(e));
  return out;
}

// Applies events in order, as a consumer rebuilding the map would.
template <class K>
void apply(std::map<K, int>& state, const Event<K, int>& e) {
  switch (e.kind) {
    case EventKind::kSnapshot:
    case EventKind::kUpsert:
    case EventKind::kResync:
      state[e.key] = *e.value;
      break;
    case EventKind::kRemove:
      state.erase(e.key);
      break;
    case EventKind::kReset:
      state.clear();
      break;
    case EventKind::kSnapshotEnd:
      break;
  }
}

// Requests stop after `limit` unless destroyed first, so that a stream withholding an event
// the test waits for ends the test's loop instead of hanging it.
class StopAfter {
 public:
  explicit StopAfter(std::chrono::milliseconds limit)
      : timer_([this, limit](std::stop_token destroyed) {
          std::mutex mu;
          std::unique_lock lock(mu);
          std::condition_variable_any cv;
          if (!cv.wait_for(lock, destroyed, limit, [] { return false; }) && !destroyed.stop_requested()) {
            source_.request_stop();
          }
        }) {}
  std::stop_token token() const { return source_.get_token(); }

 private:
  std::stop_source source_;
  std::jthread timer_;  // after source_: stopped and joined first
};

// Inserts and removes keys 0..kLagKeys-1, 100 mutations in all.
constexpr int kLagKeys = 13;
void mutate_keys_100_times(StreamingMap<int, int>& map) {
  for (int i = 0; i < 100; ++i) {
    if (i % 7 == 0) {
      map.remove(i % kLagKeys);
    } else {
      map.insert(i % kLagKeys, i);
    }
  }
}

std::map<int, int> contents(StreamingMap<int, int>& map) {
  std::map<int, int> out;
  for (int k = 0; k < kLagKeys; ++k) {
    if (auto v = map.get(k)) out[k] = *v;
  }
  return out;
}

TEST(StreamingMap, InsertAndRemoveTakeSequencesInOrder) {
  Map map;
  EXPECT_EQ(map.last_seq(), 0u);
  EXPECT_EQ(map.insert("a", 1), 1u);
  EXPECT_EQ(map.insert("b", 2), 2u);
  EXPECT_TRUE(map.remove("a"));
  EXPECT_FALSE(map.remove("a"));  // absent: no sequence
  EXPECT_EQ(map.last_seq(), 3u);
  EXPECT_EQ(map.get("a"), nullptr);
  ASSERT_NE(map.get("b"), nullptr);
  EXPECT_EQ(*map.get("b"), 2);
}

TEST(StreamingMap, HistoryInInsertionOrderThenLive) {
  Map map;
  map.insert("c", 3);
  map.insert("a", 1);
  map.insert("b", 2);
  auto gen = map.stream_n(4);
  map.insert("d", 4);  // after the cutoff: live
  EXPECT_THAT(take(std::move(gen)),
              ::testing::ElementsAre(Seen{1, EventKind::kSnapshot, "c", 3}, Seen{2, EventKind::kSnapshot, "a", 1},
                                     Seen{3, EventKind::kSnapshot, "b", 2}, Seen{4, EventKind::kUpsert, "d", 4}));
}

TEST(StreamingMap, KeyRemovedBeforeTheHistoryReachesItComesOnlyAsALiveRemoval) {
  Map map;
  map.insert("c", 3);
  map.insert("a", 1);
  auto gen = map.stream_n(2);
  map.remove("c");  // gone when the history pass gets there: not a snapshot, but a live kRemove
  EXPECT_THAT(take(std::move(gen)), ::testing::ElementsAre(Seen{2, EventKind::kSnapshot, "a", 1},
                                                           Seen{3, EventKind::kRemove, "c", std::nullopt}));
}

TEST(StreamingMap, CutoffIsFixedWhenStreamIsCalledNotWhenIterated) {
  Map map;
  map.insert("a", 1);
  auto gen = map.stream_n(2);
  map.insert("a", 10);  // rewritten after the cutoff: only live, once, newest value
  map.insert("b", 2);
  EXPECT_THAT(take(std::move(gen)),
              ::testing::ElementsAre(Seen{2, EventKind::kUpsert, "a", 10}, Seen{3, EventKind::kUpsert, "b", 2}));
}

TEST(StreamingMap, KeyRewrittenBeforeTheCutoffAppearsOnceWithItsNewestValue) {
  Map map;
  map.insert("a", 1);
  map.insert("b", 2);
  map.insert("a", 3);
  EXPECT_THAT(take(map.stream_n(2)), ::testing::ElementsAre(Seen{2, EventKind::kSnapshot, "b", 2},
                                                              Seen{3, EventKind::kSnapshot, "a", 3}));
}

TEST(StreamingMap, EventsShareTheMapsValue) {
  Map map;
  map.insert("a", 1);
  auto gen = map.stream_n(1);
  auto it = gen.begin();
  EXPECT_EQ(it->value.get(), map.get("a").get());  // one allocation for map and subscribers
}

TEST(StreamingMap, UnpublishedRemovalsTakeNoSequence) {
  StreamingMapOptions options;
  options.publish_removals = false;
  Map map(options);
  map.insert("a", 1);
  auto gen = map.stream_n(2);
  auto it = gen.begin();
  EXPECT_EQ(seen(*it), (Seen{1, EventKind::kSnapshot, "a", 1}));
  EXPECT_TRUE(map.remove("a"));
  map.insert("b", 2);
  ++it;
  EXPECT_EQ(seen(*it), (Seen{2, EventKind::kUpsert, "b", 2}));  // the removal took no sequence
  EXPECT_EQ(map.last_seq(), 2u);
}

TEST(StreamingMap, SnapshotEndMarksTheCutoffAndIsNotCounted) {
  StreamingMapOptions options;
  options.mark_snapshot_end = true;
  Map map(options);
  map.insert("a", 1);
  auto gen = map.stream_n(2);
  map.insert("b", 2);
  EXPECT_THAT(take(std::move(gen)),
              ::testing::ElementsAre(Seen{1, EventKind::kSnapshot, "a", 1}, Seen{1, EventKind::kSnapshotEnd, "", std::nullopt},
                                     Seen{2, EventKind::kUpsert, "b", 2}));
}

TEST(StreamingMap, HistoryIsReadInBatchesAcrossShards) {
  StreamingMapOptions options;
  options.snapshot_batch = 1;  // one entry per shard read: forces many cursor moves
  StreamingMap<int, int> map(options);
  for (int i = 0; i < 2000; ++i) map.insert(i % 700, i);
  uint64_t last = 0;
  size_t n = 0;
  std::map<int, int> state;
  for (const auto& e : map.stream_n(700)) {
    EXPECT_EQ(e.kind, EventKind::kSnapshot);
    EXPECT_GT(e.seq, last);
    last = e.seq;
    state[e.key] = *e.value;
    ++n;
  }
  EXPECT_EQ(n, 700u);
  for (const auto& [k, v] : state) EXPECT_EQ(*map.get(k), v);
}

TEST(StreamingMap, StreamBatchesDeliversTheSameEventsInSpans) {
  StreamingMap<int, int> map;
  for (int i = 0; i < 100; ++i) map.insert(i, i);
  std::stop_source stop;
  auto gen = map.stream_batches(16, stop.get_token());
  std::vector<uint64_t> seqs;
  for (std::span<const Event<int, int>> batch : gen) {
    EXPECT_FALSE(batch.empty());
    EXPECT_LE(batch.size(), 16u);
    for (const auto& e : batch) seqs.push_back(e.seq);
    if (seqs.size() == 100) break;
  }
  ASSERT_EQ(seqs.size(), 100u);
  for (size_t i = 0; i < seqs.size(); ++i) EXPECT_EQ(seqs[i], i + 1);
  EXPECT_THROW(map.stream_batches(0), std::invalid_argument);
}

TEST(StreamingMap, StreamFromInsideTheRingContinuesLive) {
  Map map;
  for (int i = 0; i < 10; ++i) map.insert("k" + std::to_string(i), i);
  auto gen = map.stream_from(7, {});
  auto events = std::vector<Seen>();
  for (const Ev& e : gen) {
    events.push_back(seen(e));
    if (events.size() == 3) break;
  }
  EXPECT_THAT(events, ::testing::ElementsAre(Seen{8, EventKind::kUpsert, "k7", 7}, Seen{9, EventKind::kUpsert, "k8", 8},
                                             Seen{10, EventKind::kUpsert, "k9", 9}));
  EXPECT_THROW(map.stream_from(11), std::invalid_argument);
}

TEST(StreamingMap, StreamFromOutsideTheRingRecoversChangesAndRemovals) {
  StreamingMapOptions options;
  options.ring_capacity = 4;
  Map map(options);
  map.insert("a", 1);  // 1
  map.insert("b", 2);  // 2
  map.insert("c", 3);  // 3: the consumer processed up to here
  std::map<std::string, int> state{{"a", 1}, {"b", 2}, {"c", 3}};
  map.insert("a", 10);  // 4
  map.remove("b");      // 5
  map.insert("d", 4);   // 6
  map.insert("e", 5);   // 7
  map.insert("f", 6);   // 8
  map.insert("g", 7);   // 9: the ring (4) no longer holds 4
  std::stop_source stop;
  std::vector<Seen> events;
  for (const Ev& e : map.stream_from(3, stop.get_token())) {
    events.push_back(seen(e));
    apply(state, e);
    if (e.seq == 9) break;
  }
  EXPECT_THAT(events, ::testing::ElementsAre(Seen{4, EventKind::kResync, "a", 10}, Seen{5, EventKind::kRemove, "b", std::nullopt},
                                             Seen{6, EventKind::kResync, "d", 4}, Seen{7, EventKind::kResync, "e", 5},
                                             Seen{8, EventKind::kResync, "f", 6}, Seen{9, EventKind::kResync, "g", 7}));
  EXPECT_EQ(state, (std::map<std::string, int>{{"a", 10}, {"c", 3}, {"d", 4}, {"e", 5}, {"f", 6}, {"g", 7}}));
}

// The lag policy is waived only for what the ring no longer held when stream_from() was
// called; lag after that call follows the policy (found by a review: every stream_from()
// stream used to recover from any lag until its first live event).
TEST(StreamingMap, StreamFromUnderErrorPolicyRecoversAContinuationTheRingNoLongerHolds) {
  StreamingMapOptions options;
  options.ring_capacity = 4;
  options.lag = LagPolicy::kError;
  StreamingMap<int, int> map(options);
  for (int i = 0; i < 10; ++i) map.insert(i, i);  // the ring holds 7..10 only
  std::vector<uint64_t> seqs;
  for (const auto& e : map.stream_from(2)) {
    EXPECT_EQ(e.kind, EventKind::kResync);
    seqs.push_back(e.seq);
    if (e.seq == 10) break;
  }
  EXPECT_EQ(seqs, (std::vector<uint64_t>{3, 4, 5, 6, 7, 8, 9, 10}));
}

// Found by a review: a consumer of a restarted service's earlier incarnation (initial_seq
// continuing its numbering) resumed below initial_seq, and the stream went on live past the
// mutations this map never had, silently, under either policy.
TEST(StreamingMap, StreamFromBelowInitialSeqRelistsUnderEitherPolicy) {
  for (LagPolicy lag : {LagPolicy::kResync, LagPolicy::kError}) {
    for (uint64_t after : {uint64_t{90}, uint64_t{0}}) {
      SCOPED_TRACE(testing::Message() << "after_seq " << after << (lag == LagPolicy::kError ? ", kError" : ""));
      StreamingMapOptions options;
      options.initial_seq = 100;
      options.lag = lag;
      StreamingMap<int, int> map(options);
      map.insert(1, 10);  // seq 101
      map.insert(2, 20);  // seq 102
      auto gen = map.stream_from(after);
      auto it = gen.begin();
      EXPECT_EQ(it->kind, EventKind::kReset);
      std::map<int, int> state{{7, 70}};  // what the consumer had: gone with the reset
      for (; it->seq < 102 || it->kind == EventKind::kReset; ++it) apply(state, std::as_const(*it));
      apply(state, std::as_const(*it));
      EXPECT_EQ(state, (std::map<int, int>{{1, 10}, {2, 20}}));
      map.insert(3, 30);  // live after the relisting
      ++it;
      EXPECT_EQ(it->seq, 103u);
      EXPECT_EQ(it->kind, EventKind::kUpsert);
    }
  }
}

TEST(StreamingMap, StreamFromAtInitialSeqContinuesLive) {
  StreamingMapOptions options;
  options.initial_seq = 100;
  StreamingMap<int, int> map(options);
  map.insert(1, 10);
  auto gen = map.stream_from(100);
  auto it = gen.begin();
  EXPECT_EQ(it->seq, 101u);
  EXPECT_EQ(it->kind, EventKind::kUpsert);
}

TEST(StreamingMap, StreamFromUnderErrorPolicyThrowsOnLagAfterTheCall) {
  StreamingMapOptions options;
  options.ring_capacity = 4;
  options.lag = LagPolicy::kError;
  StreamingMap<int, int> map(options);
  for (int i = 0; i < 3; ++i) map.insert(i, i);
  auto caught_up = map.stream_from(map.last_seq());  // nothing to continue with yet
  auto one_behind = map.stream_from(2);              // the ring holds 3
  for (int i = 0; i < 20; ++i) map.insert(i, 100 + i);  // both lag before their first pull
  try {
    for (const auto& e : caught_up) {
      ADD_FAILURE() << "delivered seq " << e.seq;
      break;  // a recovering stream would go on to wait for more
    }
    FAIL() << "expected LaggedError";
  } catch (const LaggedError& e) {
    EXPECT_EQ(e.last_delivered_seq(), 3u);
  }
  auto it = one_behind.begin();  // held when stream_from() was called, so delivered
  EXPECT_EQ(it->seq, 3u);
  EXPECT_EQ(it->kind, EventKind::kUpsert);
  try {
    ++it;
    FAIL() << "expected LaggedError";
  } catch (const LaggedError& e) {
    EXPECT_EQ(e.last_delivered_seq(), 3u);
  }
}

// Seqs 1..7, ending with d = 4 as the only key, four of them removals: with a ring_capacity
// (and so a removal log) of 2, a consumer that processed seq 1 can only be brought up to
// date by relisting.
void write_seqs_1_to_7_removing_all_but_d(Map& map) {
  map.insert("a", 1);
  map.insert("b", 2);
  map.remove("a");
  map.remove("b");
  map.insert("c", 3);
  map.remove("c");
  map.insert("d", 4);
}

TEST(StreamingMap, RecoveryResetsWhenRemovalsAreForgotten) {
  StreamingMapOptions options;
  options.ring_capacity = 2;  // also the removal log's length
  Map map(options);
  write_seqs_1_to_7_removing_all_but_d(map);  // the removal log (2) no longer reaches back to 1
  std::stop_source stop;
  std::vector<Seen> events;
  for (const Ev& e : map.stream_from(1, stop.get_token())) {
    events.push_back(seen(e));
    if (e.kind == EventKind::kResync) break;
  }
  EXPECT_THAT(events, ::testing::ElementsAre(Seen{7, EventKind::kReset, "", std::nullopt}, Seen{7, EventKind::kResync, "d", 4}));
}

// The resume rule on Event::seq: a consumer disconnected in the middle of a relisting
// resumes from the last seq it applied other than the kReset's, and ends with the map's state.
TEST(StreamingMap, ResumingInsideARelistingFromTheLastNonResetSeqCompletesTheState) {
  for (const size_t relisted_before_disconnect : {0, 1, 2}) {
    SCOPED_TRACE(relisted_before_disconnect);
    StreamingMapOptions options;
    options.ring_capacity = 2;  // also the removal log's length
    StreamingMap<int, int> map(options);
    std::map<int, int> state;
    for (int k = 0; k < 6; ++k) {
      map.insert(k, k);  // 1..6: the consumer has applied these
      state[k] = k;
    }
    map.remove(0);
    map.remove(1);
    map.remove(2);  // 7..9: the removal log no longer reaches back to 6
    uint64_t last = 6;
    size_t relisted = 0;
    for (const auto& e : map.stream_from(last)) {
      apply(state, e);
      if (e.kind != EventKind::kReset) last = e.seq;
      if (e.kind == EventKind::kResync) ++relisted;
      if (e.kind != EventKind::kSnapshotEnd && relisted == relisted_before_disconnect) break;
    }
    map.insert(9, 9);   // 10: changes while disconnected, still in the ring
    map.insert(3, 30);  // 11
    std::stop_source stop;
    for (const auto& e : map.stream_from(last, stop.get_token())) {
      apply(state, e);
      if (e.seq == map.last_seq() && e.kind != EventKind::kReset) break;
    }
    EXPECT_EQ(state, (std::map<int, int>{{3, 30}, {4, 4}, {5, 5}, {9, 9}}));
  }
}

// mark_recovery_end: the end of a recovery is marked, so a consumer knows its state is the
// map's as of the marker's seq without waiting for a live event that a quiet map may never
// send. A recovery is incremental (kResync / kRemove), a relisting (kReset first), or empty.
TEST(StreamingMap, RecoveryEndMarksTheCutoffOfAnIncrementalRecoveryUnderEitherPolicy) {
  for (const LagPolicy policy : {LagPolicy::kResync, LagPolicy::kError}) {
    SCOPED_TRACE(policy == LagPolicy::kResync ? "kResync" : "kError");
    StreamingMapOptions options;
    options.ring_capacity = 4;
    options.lag = policy;
    options.mark_recovery_end = true;
    Map map(options);
    map.insert("a", 1);  // 1: the consumer processed up to here
    map.insert("a", 2);  // 2
    map.remove("a");     // 3
    map.insert("b", 3);  // 4
    map.insert("c", 4);  // 5
    map.insert("b", 5);  // 6: the ring (4) no longer holds 2
    std::vector<Seen> events;
    const StopAfter limit(seconds(5));  // the marker must come unasked, without a live event
    for (const Ev& e : map.stream_from(1, limit.token())) {
      events.push_back(seen(e));
      if (e.kind == EventKind::kSnapshotEnd) break;
    }
    EXPECT_THAT(events, ::testing::ElementsAre(Seen{3, EventKind::kRemove, "a", std::nullopt},
                                               Seen{5, EventKind::kResync, "c", 4}, Seen{6, EventKind::kResync, "b", 5},
                                               Seen{6, EventKind::kSnapshotEnd, "", std::nullopt}));
  }
}

TEST(StreamingMap, RecoveryEndFollowsARelistingAndLiveEventsGoOnAfterIt) {
  StreamingMapOptions options;
  options.ring_capacity = 2;  // also the removal log's length
  options.mark_recovery_end = true;
  Map map(options);
  write_seqs_1_to_7_removing_all_but_d(map);  // the removal log (2) no longer reaches back to 1
  const StopAfter limit(seconds(5));
  auto gen = map.stream_from(1, limit.token());
  std::vector<Seen> events;
  for (auto it = gen.begin(); it != gen.end(); ++it) {
    events.push_back(seen(*it));
    if (events.size() == 3) map.insert("e", 5);  // 8: after the relisting's cutoff
    if (events.size() == 4) break;
  }
  EXPECT_THAT(events, ::testing::ElementsAre(Seen{7, EventKind::kReset, "", std::nullopt}, Seen{7, EventKind::kResync, "d", 4},
                                             Seen{7, EventKind::kSnapshotEnd, "", std::nullopt},
                                             Seen{8, EventKind::kUpsert, "e", 5}));
}

TEST(StreamingMap, RecoveryEndIsSentForARecoveryWithNothingToSend) {
  StreamingMapOptions options;
  options.ring_capacity = 2;
  options.publish_removals = false;  // the removals below take no sequence
  options.mark_recovery_end = true;
  Map map(options);
  map.insert("a", 1);  // 1: the consumer processed up to here
  for (const char* key : {"x", "y", "z"}) map.insert(key, 0);  // 2..4
  for (const char* key : {"x", "y", "z"}) map.remove(key);     // nothing newer than 1 is left
  const StopAfter limit(seconds(5));
  auto gen = map.stream_from(1, limit.token());
  auto it = gen.begin();
  ASSERT_NE(it, gen.end()) << "no marker: the stream waited for a live event";
  EXPECT_EQ(seen(*it), (Seen{4, EventKind::kSnapshotEnd, "", std::nullopt}));
}

TEST(StreamingMap, LaggingStreamWithBothMarkersHasTheMapsStateAtTheRecoveryEnd) {
  StreamingMapOptions options;
  options.ring_capacity = 8;
  options.mark_snapshot_end = true;
  options.mark_recovery_end = true;
  StreamingMap<int, int> map(options);
  for (int i = 0; i < 5; ++i) map.insert(i, i);
  const StopAfter limit(seconds(5));
  auto gen = map.stream(limit.token());
  std::map<int, int> state;
  auto it = gen.begin();
  for (; it->kind != EventKind::kSnapshotEnd; ++it) apply(state, std::as_const(*it));
  EXPECT_EQ(it->seq, 5u);
  mutate_keys_100_times(map);  // far more than the ring holds, while we do not read
  for (++it; it != gen.end() && it->kind != EventKind::kSnapshotEnd; ++it) {
    EXPECT_NE(it->kind, EventKind::kUpsert) << "a live event before the recovery's end, seq " << it->seq;
    apply(state, std::as_const(*it));
  }
  ASSERT_NE(it, gen.end()) << "no marker after the recovery";
  EXPECT_EQ(it->seq, map.last_seq());
  EXPECT_EQ(state, contents(map));
}

// The marker means what a history's end means: every key the map has not changed since the
// cutoff is as of the cutoff; a key rewritten while the recovery is read (lazily, like a
// history) may still hold its older value there, and its live event follows (found by a
// review: the first wording promised the map's whole state at the marker).
TEST(StreamingMap, AtTheRecoveryEndKeysWrittenDuringTheRecoveryFollowLive) {
  StreamingMapOptions options;
  options.ring_capacity = 32;  // loses the 100 writes below, holds the 20 after them
  options.snapshot_batch = 1;
  options.mark_recovery_end = true;
  StreamingMap<int, int> map(options);
  std::map<int, int> state;
  for (int k = 0; k < 100; ++k) {
    map.insert(k, 0);  // 1..100: the consumer applied these
    state[k] = 0;
  }
  for (int k = 0; k < 100; ++k) map.insert(k, 1);  // 101..200
  const StopAfter limit(seconds(5));
  auto gen = map.stream_from(100, limit.token());
  auto it = gen.begin();  // the recovery's cutoff is 200; its first batch read ahead
  apply(state, std::as_const(*it));
  for (int k = 80; k < 100; ++k) map.insert(k, 2);  // 201..220, while the recovery is read
  for (++it; it != gen.end() && it->kind != EventKind::kSnapshotEnd; ++it) apply(state, std::as_const(*it));
  ASSERT_NE(it, gen.end());
  EXPECT_EQ(it->seq, 200u);
  for (int k = 0; k < 80; ++k) EXPECT_EQ(state[k], 1) << "key " << k << " was not changed after the cutoff";
  for (int k = 80; k < 100; ++k) EXPECT_TRUE(state[k] == 0 || state[k] == 1) << "key " << k;
  for (++it; it != gen.end(); ++it) {
    EXPECT_EQ(it->kind, EventKind::kUpsert);
    EXPECT_GT(it->seq, 200u);
    apply(state, std::as_const(*it));
    if (it->seq == map.last_seq()) break;
  }
  for (int k = 0; k < 100; ++k) EXPECT_EQ(state[k], k < 80 ? 1 : 2) << "key " << k;
}

TEST(StreamingMap, RecoveryEndIsNotSentWithoutLag) {
  StreamingMapOptions options;
  options.mark_recovery_end = true;
  Map map(options);
  map.insert("a", 1);
  auto resumed = map.stream_from(0);  // the ring holds everything after 0
  auto gen = map.stream_n(2);
  map.insert("b", 2);
  EXPECT_THAT(take(std::move(gen)),
              ::testing::ElementsAre(Seen{1, EventKind::kSnapshot, "a", 1}, Seen{2, EventKind::kUpsert, "b", 2}));
  auto it = resumed.begin();
  EXPECT_EQ(seen(*it), (Seen{1, EventKind::kUpsert, "a", 1}));
  EXPECT_EQ(seen(*++it), (Seen{2, EventKind::kUpsert, "b", 2}));
}

TEST(StreamingMap, LaggingStreamResyncsToTheMapsState) {
  StreamingMapOptions options;
  options.ring_capacity = 8;
  StreamingMap<int, int> map(options);
  for (int i = 0; i < 5; ++i) map.insert(i, i);
  std::stop_source stop;
  auto gen = map.stream(stop.get_token());
  std::map<int, int> state;
  auto it = gen.begin();
  for (int i = 0; i < 5; ++i) {  // the history (advancing past the last would wait for live)
    if (i > 0) ++it;
    state[it->key] = *it->value;
  }
  mutate_keys_100_times(map);  // far more than the ring holds, while we do not read
  const uint64_t last = map.last_seq();
  uint64_t prev = 0;
  bool resynced = false;
  bool reset = false;
  for (++it; it != gen.end(); ++it) {
    const auto& e = *it;
    // Sequences increase, except that a kReset restarts them for the relisted state.
    if (e.kind == EventKind::kReset) {
      reset = true;
      prev = 0;
    } else if (!reset || e.kind != EventKind::kResync) {
      EXPECT_GT(e.seq, prev);
      prev = e.seq;
    }
    resynced |= e.kind == EventKind::kResync;
    apply(state, e);
    if (e.seq == last && e.kind != EventKind::kReset) break;
  }
  EXPECT_TRUE(resynced);
  EXPECT_EQ(state, contents(map));
}

TEST(StreamingMap, LagWithErrorPolicyThrowsWithTheLastDeliveredSeq) {
  StreamingMapOptions options;
  options.ring_capacity = 4;
  options.lag = LagPolicy::kError;
  StreamingMap<int, int> map(options);
  map.insert(0, 0);
  auto gen = map.stream();
  auto it = gen.begin();  // the snapshot of key 0, seq 1 (the cutoff)
  for (int i = 0; i < 20; ++i) map.insert(i, i);
  try {
    ++it;
    FAIL() << "expected LaggedError";
  } catch (const LaggedError& e) {
    EXPECT_EQ(e.last_delivered_seq(), 1u);
  }
}

TEST(StreamingMap, CompactTimestampsSurviveThe32BitWrap) {
  StreamingMapOptions options;
  options.initial_seq = (uint64_t{1} << 32) - 3;
  StreamingMap<int, int, uint32_t> map(options);
  std::vector<uint64_t> seqs;
  for (int i = 0; i < 6; ++i) seqs.push_back(map.insert(i, i));
  EXPECT_EQ(seqs.front(), (uint64_t{1} << 32) - 2);
  EXPECT_EQ(seqs.back(), (uint64_t{1} << 32) + 3);
  std::vector<uint64_t> history;
  for (const auto& e : map.stream_n(6)) history.push_back(e.seq);
  EXPECT_EQ(history, seqs);
}

StreamingMapOptions published_ttl_of_10s(std::shared_ptr<ManualClock> clock) {
  StreamingMapOptions options;
  options.time_to_live = seconds(10);
  options.clock = std::move(clock);
  options.publish_expirations = true;
  return options;
}

TEST(StreamingMap, PublishedExpirationsBecomeRemovals) {
  auto clock = std::make_shared<ManualClock>();
  Map map(published_ttl_of_10s(clock));
  map.insert("a", 1);
  auto gen = map.stream_n(2);
  auto it = gen.begin();
  EXPECT_EQ(seen(*it), (Seen{1, EventKind::kSnapshot, "a", 1}));
  clock->advance(seconds(10));  // 10 s
  EXPECT_EQ(map.get("a"), nullptr);
  map.run_pending_tasks();
  EXPECT_EQ(map.last_seq(), 2u);
  ++it;
  EXPECT_EQ(seen(*it), (Seen{2, EventKind::kRemove, "a", std::nullopt}));
}

TEST(StreamingMap, RemovingAnExpiredKeyReturnsFalseAndStreamsTheExpiry) {
  auto clock = std::make_shared<ManualClock>();
  Map map(published_ttl_of_10s(clock));
  map.insert("a", 1);
  clock->advance(seconds(10));
  EXPECT_FALSE(map.remove("a"));  // absent to the caller...
  map.run_pending_tasks();
  EXPECT_EQ(map.last_seq(), 2u);  // ...but its expiry took a sequence, once
  for (const Ev& e : map.stream_from(1)) {
    EXPECT_EQ(seen(e), (Seen{2, EventKind::kRemove, "a", std::nullopt}));
    break;
  }
}

TEST(StreamingMap, ExpiredEntriesLeaveTheHistory) {
  auto clock = std::make_shared<ManualClock>();
  StreamingMapOptions options;
  options.time_to_live = seconds(10);
  options.clock = clock;
  Map map(options);
  map.insert("old", 1);
  clock->advance(seconds(6));  // 6 s
  map.insert("new", 2);
  clock->advance(seconds(4));  // 10 s: "old" expired
  EXPECT_THAT(take(map.stream_n(1)), ::testing::ElementsAre(Seen{2, EventKind::kSnapshot, "new", 2}));
}

// Found by a review: a recovery's incremental pass skipped an entry rewritten after the
// consumer's last seq that had expired since (not removed yet, so its expiry had no seq):
// the consumer kept the value that write had replaced before the cutoff.
void rewrite_then_expire_behind_a_lag(Map& map, ManualClock& clock) {
  map.insert("k", 2);  // the key's newest value, at 0 s
  clock.advance(seconds(5));
  map.insert("a", 0);                              // an add: maintenance runs, nothing has expired
  for (int i = 1; i <= 5; ++i) map.insert("a", i);  // updates (no maintenance): the ring of 4 laps
  clock.advance(seconds(6));                       // 11 s: "k" expired, still in the cache
}

StreamingMapOptions ring_of_4_ttl_of_10s(std::shared_ptr<ManualClock> clock, bool publish_expirations) {
  StreamingMapOptions options;
  options.ring_capacity = 4;
  options.time_to_live = seconds(10);
  options.clock = std::move(clock);
  options.publish_expirations = publish_expirations;
  options.mark_recovery_end = true;
  return options;
}

TEST(StreamingMap, ARecoveryResyncsAKeyWhoseNewestWriteExpiredBeforeMaintenanceRemovedIt) {
  for (bool publish_expirations : {true, false}) {
    SCOPED_TRACE(publish_expirations ? "publish_expirations" : "expirations not published");
    auto clock = std::make_shared<ManualClock>();
    Map map(ring_of_4_ttl_of_10s(clock, publish_expirations));
    map.insert("k", 1);  // seq 1
    std::map<std::string, int> state;
    auto gen = map.stream();
    auto it = gen.begin();
    apply(state, std::as_const(*it));  // kSnapshot k = 1
    rewrite_then_expire_behind_a_lag(map, *clock);
    do {
      ++it;
      apply(state, std::as_const(*it));
    } while (it->kind != EventKind::kSnapshotEnd);  // the recovery's end
    // As of the recovery's cutoff, "k" holds 2 (its expiry is not sequenced yet; with
    // publish_expirations it follows live).
    EXPECT_EQ(state["k"], 2) << "the consumer kept the value seq 2 replaced";
  }
}

TEST(StreamingMap, StreamFromOutsideTheRingResyncsAKeyWhoseNewestWriteExpiredBeforeMaintenanceRemovedIt) {
  auto clock = std::make_shared<ManualClock>();
  Map map(ring_of_4_ttl_of_10s(clock, true));
  map.insert("k", 1);  // seq 1: what the consumer had applied
  rewrite_then_expire_behind_a_lag(map, *clock);
  std::map<std::string, int> state{{"k", 1}};
  for (const Ev& e : map.stream_from(1)) {
    apply(state, e);
    if (e.kind == EventKind::kSnapshotEnd) break;
  }
  EXPECT_EQ(state["k"], 2);
}

TEST(StreamingMap, CapacityBoundsTheHistory) {
  StreamingMapOptions options;
  options.max_capacity = 10;
  options.publish_expirations = true;
  options.mark_snapshot_end = true;
  StreamingMap<int, int> map(options);
  for (int i = 0; i < 50; ++i) map.insert(i, i);
  map.run_pending_tasks();
  const uint64_t last = map.last_seq();
  size_t snapshots = 0;
  for (const auto& e : map.stream()) {
    if (e.kind == EventKind::kSnapshotEnd) break;
    ++snapshots;
  }
  EXPECT_EQ(snapshots, 10u);
  EXPECT_EQ(last, 50u + 40u);  // 50 inserts + 40 published evictions
}

TEST(StreamingMap, StopTokenEndsAWaitingStream) {
  Map map;
  std::stop_source stop;
  auto gen = map.stream(stop.get_token());
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    stop.request_stop();
  });
  size_t n = 0;
  for (const auto& e : gen) {
    (void)e;
    ++n;
  }
  stopper.join();
  EXPECT_EQ(n, 0u);
}

TEST(StreamingMap, StreamEndsWhenTheMapIsDestroyed) {
  std::optional<Map> map(std::in_place);
  map->insert("a", 1);
  auto gen = map->stream();
  auto it = gen.begin();
  EXPECT_EQ(it->key, "a");
  map.reset();
  ++it;
  EXPECT_TRUE(it == gen.end());
}

TEST(StreamingMap, AbandonedStreamReleasesItsHistoryCursors) {
  StreamingMap<int, int> map;
  for (int i = 0; i < 1000; ++i) map.insert(i, i);
  {
    auto gen = map.stream();
    auto it = gen.begin();
    ++it;
  }  // destroyed mid-history
  for (int i = 0; i < 1000; ++i) map.insert(i, i + 1);
  size_t n = 0;
  for (const auto& e : map.stream_n(1000)) {
    EXPECT_EQ(*e.value, e.key + 1);
    ++n;
  }
  EXPECT_EQ(n, 1000u);
}

TEST(StreamingMap, AThrowingConsumerDoesNotDisturbOtherSubscribers) {
  StreamingMap<int, int> map;
  map.insert(1, 1);
  auto steady = map.stream_n(3);
  auto it = steady.begin();  // the snapshot of key 1
  EXPECT_THROW(
      {
        for (const auto& e : map.stream()) {
          if (e.key == 1) throw std::runtime_error("consumer failed");
        }
      },
      std::runtime_error);  // its generator (and subscription) is destroyed by the unwind
  map.insert(2, 2);
  map.insert(3, 3);
  ++it;
  EXPECT_EQ(it->key, 2);
  ++it;
  EXPECT_EQ(it->key, 3);
}

TEST(StreamingMap, InvalidOptionsThrowNamingTheOption) {
  auto message = [](StreamingMapOptions o) -> std::string {
    try {
      Map map(o);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "no exception";
  };
  StreamingMapOptions o;
  o.ring_capacity = 0;
  EXPECT_THAT(message(o), ::testing::HasSubstr("ring_capacity"));
  o = {};
  o.snapshot_batch = 0;
  EXPECT_THAT(message(o), ::testing::HasSubstr("snapshot_batch"));
  o = {};
  o.time_to_live = seconds(-1);
  EXPECT_THAT(message(o), ::testing::HasSubstr("time_to_live"));
}

// A key whose copy constructor throws once armed: the next `copies_left` copies succeed.
struct FragileKey {
  static inline int copies_left = -1;  // -1: never throw
  int v = 0;
  FragileKey() = default;
  FragileKey(int x) : v(x) {}  // NOLINT
  FragileKey(const FragileKey& o) : v(o.v) {
    if (copies_left == 0) throw std::runtime_error("key copy failed");
    if (copies_left > 0) --copies_left;
  }
  FragileKey(FragileKey&&) noexcept = default;
  FragileKey& operator=(const FragileKey&) = default;
  FragileKey& operator=(FragileKey&&) noexcept = default;
  bool operator==(const FragileKey& o) const { return v == o.v; }
  bool operator<(const FragileKey& o) const { return v < o.v; }
  template <class H>
  friend H AbslHashValue(H h, const FragileKey& k) { return H::combine(std::move(h), k.v); }
};
struct Disarm {
  ~Disarm() { FragileKey::copies_left = -1; }
};

std::map<int, int> rebuild(StreamingMap<FragileKey, int>& map, size_t n) {
  std::map<int, int> state;
  for (const auto& e : map.stream_n(n)) {
    if (e.kind == EventKind::kRemove) {
      state.erase(e.key.v);
    } else {
      state[e.key.v] = *e.value;
    }
  }
  return state;
}

TEST(StreamingMap, InsertWhoseKeyCopyThrowsLeavesTheMapUnchanged) {
  Disarm d;
  StreamingMap<FragileKey, int> map;
  map.insert(FragileKey(1), 1);
  map.insert(FragileKey(2), 2);
  FragileKey::copies_left = 0;
  EXPECT_THROW(map.insert(FragileKey(1), 10), std::runtime_error);
  FragileKey::copies_left = -1;
  ASSERT_NE(map.get(FragileKey(1)), nullptr);
  EXPECT_EQ(*map.get(FragileKey(1)), 1);
  EXPECT_EQ(map.last_seq(), 2u);
  std::vector<uint64_t> seqs;
  for (const auto& e : map.stream_n(2)) seqs.push_back(e.seq);
  EXPECT_EQ(seqs, (std::vector<uint64_t>{1, 2}));
}

TEST(StreamingMap, RemoveWhoseKeyCopyThrowsLeavesTheMapUnchanged) {
  Disarm d;
  StreamingMap<FragileKey, int> map;
  map.insert(FragileKey(1), 1);
  map.insert(FragileKey(2), 2);
  const FragileKey one(1);
  FragileKey::copies_left = 0;
  EXPECT_THROW(map.remove(one), std::runtime_error);
  FragileKey::copies_left = -1;
  ASSERT_NE(map.get(FragileKey(1)), nullptr);
  EXPECT_EQ(rebuild(map, 2), (std::map<int, int>{{1, 1}, {2, 2}}));
  EXPECT_TRUE(map.remove(one));
  map.insert(FragileKey(3), 3);
  EXPECT_EQ(rebuild(map, 2), (std::map<int, int>{{2, 2}, {3, 3}}));
}

TEST(StreamingMap, HistoryKeyCopyThatThrowsEndsOnlyThatStream) {
  Disarm d;
  StreamingMapOptions options;
  options.snapshot_batch = 1;
  StreamingMap<FragileKey, int> map(options);
  for (int i = 0; i < 100; ++i) map.insert(FragileKey(i), i);
  {
    auto gen = map.stream();
    auto it = gen.begin();
    FragileKey::copies_left = 3;
    EXPECT_THROW({ for (int i = 0; i < 100; ++i) ++it; }, std::runtime_error);
    FragileKey::copies_left = -1;
  }
  std::map<int, int> expected;
  for (int i = 0; i < 100; ++i) expected[i] = i;
  EXPECT_EQ(rebuild(map, 100), expected);
}

// stream_from() reads its first event at the call (to tell lag before the call from lag
// after it); a key copy that throws there still fails the first pull, not the call.
TEST(StreamingMap, StreamFromWhoseFirstEventsKeyCopyThrowsFailsTheFirstPullNotTheCall) {
  Disarm disarm;
  StreamingMap<FragileKey, int> map;
  map.insert(FragileKey(1), 1);
  map.insert(FragileKey(2), 2);
  FragileKey::copies_left = 0;
  std::optional<Generator<Event<FragileKey, int>>> gen;
  ASSERT_NO_THROW(gen.emplace(map.stream_from(1)));
  EXPECT_THROW(gen->begin(), std::runtime_error);
  FragileKey::copies_left = -1;
  for (const auto& e : map.stream_from(1)) {  // nothing was consumed: a new stream gets it
    EXPECT_EQ(e.seq, 2u);
    EXPECT_EQ(e.key.v, 2);
    break;
  }
}

// An expiry (or size eviction) that maintenance publishes copies the key under the shard
// lock, after the entry is gone from the map. If that copy throws, the removal cannot be
// published with its key: maintenance must still complete, and every live stream must
// learn that it missed something (a relist under kResync, LaggedError under kError)
// instead of keeping the expired key for good.
// Key 1 is in the map and a stream has delivered its history (kSnapshot, kSnapshotEnd).
struct LostRemovalFixture {
  using Map = StreamingMap<FragileKey, int>;
  explicit LostRemovalFixture(LagPolicy lag) : map(options(lag)) {
    map.insert(FragileKey(1), 1);
    gen = map.stream();
    it = gen.begin();
    EXPECT_EQ(it->kind, EventKind::kSnapshot);
    ++it;
    EXPECT_EQ(it->kind, EventKind::kSnapshotEnd);
  }
  StreamingMapOptions options(LagPolicy lag) const {
    StreamingMapOptions o;
    o.time_to_live = seconds(10);
    o.clock = clock;
    o.publish_expirations = true;
    o.mark_snapshot_end = true;
    o.lag = lag;
    return o;
  }
  Disarm disarm;
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  Map map;
  Generator<Map::EventType> gen;
  decltype(gen.begin()) it;
};

TEST(StreamingMap, ExpiryWhoseKeyCopyThrowsMakesLiveStreamsRelistInsteadOfKeepingTheKey) {
  LostRemovalFixture f(LagPolicy::kResync);
  auto& map = f.map;
  auto& it = f.it;
  f.clock->advance(seconds(5));
  map.insert(FragileKey(2), 2);
  f.clock->advance(seconds(6));  // key 1 has expired, key 2 has not
  FragileKey::copies_left = 0;
  EXPECT_NO_THROW(map.run_pending_tasks());
  FragileKey::copies_left = -1;
  EXPECT_EQ(map.get(FragileKey(1)), nullptr);
  map.insert(FragileKey(3), 3);
  map.insert(FragileKey(99), 0);  // the last event: the consumer has caught up when it sees it

  std::map<int, int> state{{1, 1}};
  bool reset = false;
  for (++it; it != f.gen.end(); ++it) {
    if (it->kind == EventKind::kReset) {
      reset = true;
      state.clear();
    } else if (it->kind == EventKind::kRemove) {
      state.erase(it->key.v);
    } else if (it->kind != EventKind::kSnapshotEnd) {
      state[it->key.v] = *it->value;
    }
    if (it->key.v == 99) break;
  }
  EXPECT_TRUE(reset) << "the stream did not relist after the removal it could not be told";
  state.erase(99);
  EXPECT_EQ(state, (std::map<int, int>{{2, 2}, {3, 3}}));
  EXPECT_EQ(rebuild(map, 3), (std::map<int, int>{{2, 2}, {3, 3}, {99, 0}}));  // later streams too
}

TEST(StreamingMap, ExpiryWhoseKeyCopyThrowsIsReportedAsLagUnderKError) {
  LostRemovalFixture f(LagPolicy::kError);
  auto& map = f.map;
  auto& it = f.it;
  map.insert(FragileKey(2), 2);
  f.clock->advance(seconds(11));  // both expired
  FragileKey::copies_left = 2;    // the first expiry's two copies (event, removal log) succeed
  EXPECT_NO_THROW(map.run_pending_tasks());
  FragileKey::copies_left = -1;
  EXPECT_EQ(map.get(FragileKey(1)), nullptr);
  EXPECT_EQ(map.get(FragileKey(2)), nullptr);
  map.insert(FragileKey(3), 3);
  ++it;
  ASSERT_EQ(it->kind, EventKind::kUpsert);  // key 2, written before the expiries
  try {
    for (int i = 0; i < 4; ++i) ++it;
    FAIL() << "expected LaggedError";
  } catch (const LaggedError& e) {
    EXPECT_EQ(e.last_delivered_seq(), 3u);  // the expiry published at 3; the lost one took 4
  }
  // Resuming recovers from a marker published before the call, whatever the policy: with
  // the lag policy applied, a kError consumer would get LaggedError on every resume.
  for (const uint64_t after : {3u, 2u}) {
    SCOPED_TRACE(after);
    std::vector<EventKind> kinds;
    for (const auto& e : map.stream_from(after)) {
      kinds.push_back(e.kind);
      if (e.kind == EventKind::kResync) break;  // key 3, the whole state after the kReset
    }
    std::vector<EventKind> expected{EventKind::kReset, EventKind::kResync};
    if (after == 2) expected.insert(expected.begin(), EventKind::kRemove);  // the expiry at 3, live
    EXPECT_EQ(kinds, expected);
  }
  for (const auto& e : map.stream_from(4)) {  // past the marker: plain live events
    EXPECT_EQ(e.seq, 5u);
    EXPECT_EQ(e.kind, EventKind::kUpsert);
    break;
  }
}

}  // namespace
}  // namespace streamcache
