#include "streamcache/broadcast.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace streamcache {
namespace {

using std::chrono::milliseconds;

constexpr WaitStrategy kAllStrategies[] = {WaitStrategy::kBlocking, WaitStrategy::kYield,
                                           WaitStrategy::kSpin};

// Receives everything currently available; fails on anything but kOk / kEmpty.
template <class T>
std::vector<T> drain(Subscriber<T>& sub) {
  std::vector<T> got;
  for (;;) {
    Received<T> r = sub.try_recv();
    if (r.status == RecvStatus::kEmpty) return got;
    EXPECT_EQ(r.status, RecvStatus::kOk);
    if (r.status != RecvStatus::kOk) return got;
    got.push_back(*r.value);
  }
}

// --- options -----------------------------------------------------------------

TEST(BroadcastOptions, ZeroCapacityThrowsNamingTheOption) {
  try {
    Broadcast<int> b(BroadcastOptions{.capacity = 0});
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), testing::HasSubstr("capacity"));
  }
}

TEST(BroadcastOptions, CapacityIsRoundedUpToAPowerOfTwo) {
  Broadcast<int> b(BroadcastOptions{.capacity = 3});  // holds 4
  auto sub = b.subscribe();
  for (int i = 1; i <= 5; ++i) b.publish(i);
  Received<int> r = sub.try_recv();
  EXPECT_EQ(r.status, RecvStatus::kLagged);
  EXPECT_EQ(r.missed, 1u);
  EXPECT_EQ(r.seq, 2u);
  EXPECT_THAT(drain(sub), testing::ElementsAre(2, 3, 4, 5));
}

// --- sequences and delivery ------------------------------------------------------

TEST(Broadcast, SequencesStartAtOneAndCursorAtZero) {
  Broadcast<int> b;
  EXPECT_EQ(b.published_cursor(), 0u);
  EXPECT_EQ(b.publish(10), 1u);
  EXPECT_EQ(b.publish(11), 2u);
  EXPECT_EQ(b.published_cursor(), 2u);
}

TEST(Broadcast, SubscriberSeesOnlyMessagesPublishedAfterSubscribing) {
  Broadcast<int> b;
  b.publish(1);
  auto sub = b.subscribe();
  EXPECT_EQ(sub.next_seq(), 2u);
  EXPECT_EQ(sub.try_recv().status, RecvStatus::kEmpty);
  b.publish(2);
  Received<int> r = sub.try_recv();
  ASSERT_EQ(r.status, RecvStatus::kOk);
  EXPECT_EQ(r.seq, 2u);
  EXPECT_EQ(*r.value, 2);
  EXPECT_EQ(r.missed, 0u);
  EXPECT_EQ(sub.next_seq(), 3u);
}

TEST(Broadcast, EverySubscriberReceivesEveryMessageInOrder) {
  Broadcast<int> b(BroadcastOptions{.capacity = 8});
  auto a = b.subscribe();
  auto c = b.subscribe();
  for (int i = 1; i <= 8; ++i) b.publish(i);
  EXPECT_THAT(drain(a), testing::ElementsAre(1, 2, 3, 4, 5, 6, 7, 8));
  EXPECT_THAT(drain(c), testing::ElementsAre(1, 2, 3, 4, 5, 6, 7, 8));
  EXPECT_EQ(a.missed_total(), 0u);
}

TEST(Broadcast, EmptyStatusCarriesNoValue) {
  Broadcast<int> b;
  auto sub = b.subscribe();
  Received<int> r = sub.try_recv();
  EXPECT_EQ(r.status, RecvStatus::kEmpty);
  EXPECT_FALSE(r.value.has_value());
}

// --- lag ---------------------------------------------------------------------------

TEST(BroadcastLag, OverwrittenSubscriberLearnsExactMissedCountThenGetsOldestHeld) {
  Broadcast<int> b(BroadcastOptions{.capacity = 4});
  auto sub = b.subscribe();
  for (int i = 1; i <= 10; ++i) b.publish(i);  // 1..6 overwritten, 7..10 held
  Received<int> r = sub.try_recv();
  ASSERT_EQ(r.status, RecvStatus::kLagged);
  EXPECT_EQ(r.missed, 6u);
  EXPECT_EQ(r.seq, 7u);
  EXPECT_FALSE(r.value.has_value());
  EXPECT_EQ(sub.missed_total(), 6u);
  EXPECT_EQ(sub.next_seq(), 7u);
  EXPECT_THAT(drain(sub), testing::ElementsAre(7, 8, 9, 10));
}

TEST(BroadcastLag, TwoSlotRingReportsEachLapOfLag) {
  Broadcast<int> b(BroadcastOptions{.capacity = 2});
  auto sub = b.subscribe();
  for (int i = 1; i <= 3; ++i) b.publish(i);
  Received<int> r = sub.try_recv();
  ASSERT_EQ(r.status, RecvStatus::kLagged);
  EXPECT_EQ(r.missed, 1u);
  ASSERT_EQ(sub.try_recv().status, RecvStatus::kOk);  // 2
  for (int i = 4; i <= 9; ++i) b.publish(i);          // 3..7 overwritten
  r = sub.try_recv();
  ASSERT_EQ(r.status, RecvStatus::kLagged);
  EXPECT_EQ(r.missed, 5u);
  EXPECT_EQ(r.seq, 8u);
  EXPECT_EQ(sub.missed_total(), 6u);
  EXPECT_THAT(drain(sub), testing::ElementsAre(8, 9));
}

TEST(BroadcastLag, SlowSubscriberDoesNotDisturbFastOne) {
  Broadcast<int> b(BroadcastOptions{.capacity = 4});
  auto slow = b.subscribe();
  auto fast = b.subscribe();
  for (int i = 1; i <= 12; ++i) {
    b.publish(i);
    Received<int> r = fast.try_recv();
    ASSERT_EQ(r.status, RecvStatus::kOk);
    EXPECT_EQ(*r.value, i);
  }
  EXPECT_EQ(slow.try_recv().missed, 8u);
  EXPECT_EQ(fast.missed_total(), 0u);
}

// --- two-phase publish ----------------------------------------------------------------

TEST(BroadcastClaim, CursorAdvancesOnlyOverTheContiguousPrefix) {
  Broadcast<int> b;
  auto sub = b.subscribe();
  const uint64_t s1 = b.claim();
  const uint64_t s2 = b.claim();
  const uint64_t s3 = b.claim();
  EXPECT_EQ(s1, 1u);
  EXPECT_EQ(s3, 3u);
  b.publish_claimed(s3, 30);
  EXPECT_EQ(b.published_cursor(), 0u);
  EXPECT_EQ(sub.try_recv().status, RecvStatus::kEmpty);  // never 3 before 1
  b.publish_claimed(s1, 10);
  EXPECT_EQ(b.published_cursor(), 1u);
  EXPECT_THAT(drain(sub), testing::ElementsAre(10));
  b.publish_claimed(s2, 20);
  EXPECT_EQ(b.published_cursor(), 3u);
  EXPECT_THAT(drain(sub), testing::ElementsAre(20, 30));
}

TEST(BroadcastClaim, PublishIsClaimThenPublishClaimed) {
  Broadcast<int> b;
  EXPECT_EQ(b.claim(), 1u);
  EXPECT_EQ(b.publish(2), 2u);  // publish takes the sequence after the claimed one
  EXPECT_EQ(b.published_cursor(), 0u);
  b.publish_claimed(1, 1);
  EXPECT_EQ(b.published_cursor(), 2u);
}

TEST(BroadcastClaim, ClaimAfterCloseThrowsLogicError) {
  Broadcast<int> b;
  b.close();
  EXPECT_THROW(b.claim(), std::logic_error);
}

TEST(BroadcastClaim, ClaimOfNReservesContiguousSequences) {
  Broadcast<int> b;
  auto sub = b.subscribe();
  EXPECT_EQ(b.claim(3), 1u);
  EXPECT_EQ(b.claim(), 4u);  // the next claim starts after the three
  b.publish_claimed(4, 40);
  b.publish_claimed(2, 20);
  b.publish_claimed(1, 10);
  EXPECT_EQ(b.published_cursor(), 2u);
  EXPECT_THAT(drain(sub), testing::ElementsAre(10, 20));
  b.publish_claimed(3, 30);
  EXPECT_EQ(b.published_cursor(), 4u);
  EXPECT_THAT(drain(sub), testing::ElementsAre(30, 40));
}

TEST(BroadcastClaim, ClaimOfZeroOrMoreThanTheCapacityThrowsNamingN) {
  Broadcast<int> b(BroadcastOptions{.capacity = 8});
  EXPECT_EQ(b.capacity(), 8u);
  for (size_t n : {size_t{0}, size_t{9}}) {
    try {
      b.claim(n);
      ADD_FAILURE() << "claim(" << n << ") did not throw";
    } catch (const std::invalid_argument& e) {
      EXPECT_THAT(e.what(), testing::HasSubstr("claim: n = " + std::to_string(n)));
    }
  }
  EXPECT_EQ(b.claim(8), 1u);  // the whole ring at once is allowed
}

// The published cursor skips its stamp scan for a sole producer that fills every claim at
// once (BroadcastRing::advance_published_hint()). These pin the two claims that do not.

TEST(BroadcastClaim, SoleProducersCursorIsExactAcrossTheHintStride) {
  Broadcast<uint64_t> b;
  for (uint64_t i = 1; i <= 255; ++i) b.publish(i);
  EXPECT_EQ(b.published_cursor(), 255u);
  b.publish(256);  // the hint moves here
  EXPECT_EQ(b.published_cursor(), 256u);
  const std::vector<uint64_t> run(300, 7);
  EXPECT_EQ(b.publish_batch(run), 257u);  // 512 lies inside the batch
  EXPECT_EQ(b.published_cursor(), 556u);
  Subscriber<uint64_t> late = b.subscribe();
  EXPECT_EQ(late.next_seq(), 557u);
}

TEST(BroadcastClaim, CursorWaitsForTheSoleProducersOwnDeferredClaimAcrossManyPublishes) {
  Broadcast<int> b;
  auto sub = b.subscribe();
  const uint64_t deferred = b.claim();
  for (int i = 0; i < 600; ++i) b.publish(i);  // past sequences 256 and 512, where the hint moves
  EXPECT_EQ(b.published_cursor(), deferred - 1);
  EXPECT_EQ(sub.try_recv().status, RecvStatus::kEmpty);
  b.publish_claimed(deferred, -1);
  EXPECT_EQ(b.published_cursor(), 601u);
  EXPECT_EQ(drain(sub).size(), 601u);
}

// A value whose move waits for a signal: its publish() has claimed, and is still filling.
struct SlowMove {
  struct Gate {
    std::atomic<bool> entered{false};
    std::atomic<bool> open{false};
  };
  std::shared_ptr<Gate> gate;
  int value = 0;
  SlowMove(std::shared_ptr<Gate> g, int v) : gate(std::move(g)), value(v) {}
  SlowMove(const SlowMove&) = default;
  SlowMove& operator=(const SlowMove&) = default;
  SlowMove(SlowMove&& other) noexcept : gate(other.gate), value(other.value) {
    if (gate && !gate->open.load()) {
      gate->entered = true;
      gate->entered.notify_all();
      gate->open.wait(false);
    }
  }
  SlowMove& operator=(SlowMove&&) noexcept = default;
};

TEST(BroadcastClaim, CursorWaitsForASecondProducerStillFillingAcrossManyPublishes) {
  Broadcast<SlowMove> b(BroadcastOptions{.capacity = 1024});
  auto sub = b.subscribe();
  for (int i = 1; i <= 10; ++i) b.publish(SlowMove(nullptr, i));  // this thread owns the sequencer
  auto gate = std::make_shared<SlowMove::Gate>();
  std::jthread second([&] { EXPECT_EQ(b.publish(SlowMove(gate, 11)), 11u); });
  gate->entered.wait(false);  // sequence 11 is claimed, and its value is being moved in
  for (int i = 12; i <= 600; ++i) b.publish(SlowMove(nullptr, i));
  EXPECT_EQ(b.published_cursor(), 10u);
  EXPECT_EQ(drain(sub).size(), 10u);
  gate->open = true;
  gate->open.notify_all();
  second.join();
  EXPECT_EQ(b.published_cursor(), 600u);
  const std::vector<SlowMove> rest = drain(sub);
  ASSERT_EQ(rest.size(), 590u);
  EXPECT_EQ(rest.front().value, 11);
  EXPECT_EQ(rest.back().value, 600);
}

// The same for trivially copyable values, whose publishes run no user code: a second
// producer preempted between its claim and its fill, at the ring's level (no value type can
// hold such a publish still).
TEST(BroadcastClaim, CursorWaitsForASecondProducerPreemptedBetweenClaimAndFill) {
  detail::BroadcastRing<uint64_t> ring(4096, /*block_producers=*/false, detail::WaitMode::kBlocking);
  const auto publish = [&ring](uint64_t v) {
    const uint64_t seq = ring.claim();
    ring.publish_claimed(seq, uint64_t{v});
    return seq;
  };
  for (uint64_t i = 1; i <= 10; ++i) publish(i);  // this thread owns the sequencer
  uint64_t preempted = 0;
  std::thread([&] { preempted = ring.claim(); }).join();  // claimed, not yet filled
  EXPECT_EQ(preempted, 11u);
  for (uint64_t i = 12; i <= 600; ++i) EXPECT_EQ(publish(i), i);
  EXPECT_EQ(ring.published_cursor(), 10u);
  ring.publish_claimed(preempted, uint64_t{11});
  EXPECT_EQ(ring.published_cursor(), 600u);
}

// A value whose move publishes more messages to the same Broadcast, from inside the publish
// of the outer one (which is claimed, and unfilled until the move returns).
struct ReentrantPublish {
  Broadcast<ReentrantPublish>* target = nullptr;
  int nested = 0;
  uint64_t cursor_seen_inside = ~uint64_t{0};
  ReentrantPublish() = default;
  ReentrantPublish(Broadcast<ReentrantPublish>* t, int n) : target(t), nested(n) {}
  ReentrantPublish(const ReentrantPublish&) = default;
  ReentrantPublish& operator=(const ReentrantPublish&) = default;
  // Publishes once, in the first move (the one into the slot); later copies and moves
  // (the subscriber's) carry what it saw.
  ReentrantPublish(ReentrantPublish&& other) noexcept
      : target(other.target), cursor_seen_inside(other.cursor_seen_inside) {
    const int to_publish = std::exchange(other.nested, 0);
    for (int i = 0; i < to_publish; ++i) target->publish(ReentrantPublish());
    if (to_publish > 0) cursor_seen_inside = target->published_cursor();
  }
  ReentrantPublish& operator=(ReentrantPublish&&) noexcept = default;
};

TEST(BroadcastClaim, CursorWaitsForAnOuterPublishWhoseValuePublishesMore) {
  Broadcast<ReentrantPublish> b;
  auto sub = b.subscribe();
  EXPECT_EQ(b.publish(ReentrantPublish(&b, 300)), 1u);  // 2 .. 301 published inside, 256 among them
  Received<ReentrantPublish> first = sub.try_recv();
  ASSERT_EQ(first.status, RecvStatus::kOk);
  EXPECT_EQ(first.seq, 1u);
  EXPECT_EQ(first.value->cursor_seen_inside, 0u);  // sequence 1 was still being filled
  EXPECT_EQ(b.published_cursor(), 301u);
}

// --- publish_batch -------------------------------------------------------------------------

TEST(BroadcastPublishBatch, PublishesConsecutiveSequencesAndReturnsTheFirst) {
  Broadcast<int> b;
  auto sub = b.subscribe();
  EXPECT_EQ(b.publish(1), 1u);
  const std::vector<int> values{2, 3, 4};
  EXPECT_EQ(b.publish_batch(values), 2u);
  EXPECT_EQ(b.publish(5), 5u);
  EXPECT_EQ(b.published_cursor(), 5u);
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    Received<int> r = sub.try_recv();
    ASSERT_EQ(r.status, RecvStatus::kOk);
    EXPECT_EQ(r.seq, seq);
    EXPECT_EQ(*r.value, static_cast<int>(seq));
  }
}

TEST(BroadcastPublishBatch, EmptyBatchPublishesNothingAndReturnsZero) {
  Broadcast<int> b;
  EXPECT_EQ(b.publish_batch(std::span<const int>{}), 0u);
  EXPECT_EQ(b.published_cursor(), 0u);
  EXPECT_EQ(b.publish(7), 1u);
}

TEST(BroadcastPublishBatch, BatchLargerThanTheCapacityThrowsAndPublishesNothing) {
  Broadcast<int> b(BroadcastOptions{.capacity = 4});
  const std::vector<int> values(5, 1);
  try {
    b.publish_batch(values);
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), testing::HasSubstr("publish_batch: values.size() = 5"));
  }
  EXPECT_EQ(b.publish(1), 1u);  // no sequence was taken
}

TEST(BroadcastPublishBatch, AfterCloseThrowsLogicError) {
  Broadcast<int> b;
  b.close();
  const std::vector<int> values{1, 2};
  EXPECT_THROW(b.publish_batch(values), std::logic_error);
}

// Copying a value whose `fail` is set throws.
struct FailingCopy {
  int v = 0;
  bool fail = false;
  FailingCopy() = default;
  FailingCopy(int x, bool f) : v(x), fail(f) {}
  FailingCopy(const FailingCopy& o) : v(o.v), fail(o.fail) {
    if (fail) throw std::runtime_error("copy failed");
  }
  FailingCopy(FailingCopy&&) noexcept = default;
  FailingCopy& operator=(const FailingCopy&) = default;
  FailingCopy& operator=(FailingCopy&&) noexcept = default;
};

TEST(BroadcastPublishBatch, ThrowingCopyLosesTheRestOfTheBatchButNobodyStalls) {
  Broadcast<FailingCopy> b;
  auto sub = b.subscribe();
  std::vector<FailingCopy> values;
  values.reserve(3);
  values.emplace_back(1, false);
  values.emplace_back(2, true);  // (an initializer list would copy it, and throw, here)
  values.emplace_back(3, false);
  EXPECT_THROW(b.publish_batch(values), std::runtime_error);
  EXPECT_EQ(b.published_cursor(), 3u);  // all three completed
  EXPECT_EQ(b.publish(FailingCopy{4, false}), 4u);
  Received<FailingCopy> r = sub.try_recv();
  ASSERT_EQ(r.status, RecvStatus::kOk);
  EXPECT_EQ(r.value->v, 1);
  for (int lost = 2; lost <= 3; ++lost) {  // 2, whose copy threw, and 3 after it: one each
    r = sub.try_recv();
    ASSERT_EQ(r.status, RecvStatus::kLagged);
    EXPECT_EQ(r.missed, 1u);
  }
  EXPECT_EQ(sub.missed_total(), 2u);
  r = sub.try_recv();
  ASSERT_EQ(r.status, RecvStatus::kOk);
  EXPECT_EQ(r.seq, 4u);
  EXPECT_EQ(r.value->v, 4);
}

TEST(BroadcastPublishBatch, BlockingBatchWaitsUntilTheWholeBatchFits) {
  Broadcast<int> b(BroadcastOptions{.capacity = 4, .overflow = Overflow::kBlock});
  auto sub = b.subscribe();
  b.publish(1);
  b.publish(2);
  std::atomic<bool> started{false};
  std::atomic<bool> done{false};
  std::jthread producer([&] {
    const std::vector<int> values{3, 4, 5};  // 5 needs the slot of 1
    started = true;
    b.publish_batch(values);
    done = true;
  });
  while (!started.load()) std::this_thread::yield();
  // Negative check: the batch must wait for `sub` to read 1 (bounded look).
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_FALSE(done.load());
  std::vector<int> got;
  while (got.size() < 5) got.push_back(*sub.recv().value);
  producer.join();
  EXPECT_THAT(got, testing::ElementsAre(1, 2, 3, 4, 5));
  EXPECT_EQ(sub.missed_total(), 0u);
}

// Publishes `batches` batches of `size` messages numbered 1, 2, 3...; stops quietly when
// the ring is closed (the tests below close it to release a stuck producer).
void publish_numbered_batches(Broadcast<int>& b, int batches, int size) {
  std::vector<int> values(static_cast<size_t>(size));
  for (int batch = 0; batch < batches; ++batch) {
    for (int i = 0; i < size; ++i) values[static_cast<size_t>(i)] = batch * size + i + 1;
    try {
      b.publish_batch(values);
    } catch (const std::logic_error&) {
      return;
    }
  }
}

// Whole-ring batches under backpressure: a producer must never wait for room that only
// its own unpublished messages could free.
TEST(BroadcastPublishBatch, WholeRingBatchesUnderBackpressureNeverDeadlock) {
  for (WaitStrategy w : kAllStrategies) {
    Broadcast<int> b(BroadcastOptions{.capacity = 64, .overflow = Overflow::kBlock, .wait = w});
    auto sub = b.subscribe();
    constexpr int kBatches = 4;
    std::jthread producer([&] { publish_numbered_batches(b, kBatches, 64); });
    for (int expected = 1; expected <= kBatches * 64; ++expected) {
      Received<int> r = sub.recv_for(std::chrono::seconds(5));
      if (r.status != RecvStatus::kOk) {
        ADD_FAILURE() << "stuck before message " << expected << " with strategy "
                      << static_cast<int>(w);
        b.close();  // releases the producer
        break;
      }
      EXPECT_EQ(*r.value, expected);
    }
  }
}

// A kBlock subscriber that only polls must still release a producer parked for room: it
// announces its cursor when it reports kEmpty. Batches of 60 in a ring of 64: the second
// needs the cursor at 61, and no handshake stride (capacity / 8) lies between 57 and 61.
TEST(BroadcastBlock, PollingSubscriberReleasesAParkedBatchProducer) {
  Broadcast<int> b(BroadcastOptions{.capacity = 64, .overflow = Overflow::kBlock});
  auto sub = b.subscribe();
  constexpr int kBatches = 3;
  std::jthread producer([&] { publish_numbered_batches(b, kBatches, 60); });
  int expected = 1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (expected <= kBatches * 60 && std::chrono::steady_clock::now() < deadline) {
    Received<int> r = sub.try_recv();
    if (r.status == RecvStatus::kEmpty) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));  // time for the producer to park
      continue;
    }
    ASSERT_EQ(r.status, RecvStatus::kOk);
    EXPECT_EQ(*r.value, expected);
    ++expected;
    // A slow reader: the producer parks (after ~100 us of spinning and yielding) while
    // the cursor is still short of 61, so only the kEmpty announcement can wake it.
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  EXPECT_EQ(expected, kBatches * 60 + 1) << "the producer was never released";
  b.close();
}

// Under kBlock a slot reads as overwritten only when its producer lost the message (a
// throwing copy): the subscriber skips exactly that one, not the sequences that other
// producers have claimed and are still waiting to write.
TEST(BroadcastBlock, LostMessageIsSkippedAloneNotTheClaimsWaitingBehindIt) {
  Broadcast<FailingCopy> b(BroadcastOptions{.capacity = 8, .overflow = Overflow::kBlock});
  auto sub = b.subscribe();
  std::vector<FailingCopy> first_two;
  first_two.emplace_back(1, false);
  first_two.emplace_back(2, true);
  EXPECT_THROW(b.publish_batch(first_two), std::runtime_error);  // 2 is lost
  for (int v = 3; v <= 8; ++v) b.publish(FailingCopy{v, false});  // the ring is full
  std::atomic<bool> started{false};
  std::jthread producer([&] {
    std::vector<FailingCopy> more;
    for (int v = 9; v <= 14; ++v) more.emplace_back(v, false);
    started = true;
    b.publish_batch(more);  // claims 9..14, then waits for the subscriber
  });
  while (!started.load()) std::this_thread::yield();
  std::this_thread::sleep_for(milliseconds(20));  // let it claim
  std::vector<int> got;
  uint64_t missed = 0;
  while (got.size() < 13) {
    Received<FailingCopy> r = sub.recv_for(std::chrono::seconds(5));
    if (r.status == RecvStatus::kLagged) {
      missed += r.missed;
      continue;
    }
    ASSERT_EQ(r.status, RecvStatus::kOk);
    got.push_back(r.value->v);
  }
  EXPECT_EQ(missed, 1u);
  EXPECT_THAT(got, testing::ElementsAre(1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14));
}

// --- subscribe_from ----------------------------------------------------------------------

TEST(BroadcastSubscribeFrom, ReplaysWhileTheRingStillHoldsTheSequence) {
  Broadcast<int> b(BroadcastOptions{.capacity = 4});
  for (int i = 1; i <= 6; ++i) b.publish(i);  // holds 3..6
  auto sub = b.subscribe_from(3);
  EXPECT_THAT(drain(sub), testing::ElementsAre(3, 4, 5, 6));
  EXPECT_EQ(sub.missed_total(), 0u);
}

TEST(BroadcastSubscribeFrom, OutsideTheWindowLagsFirstWithExactCount) {
  Broadcast<int> b(BroadcastOptions{.capacity = 4});
  for (int i = 1; i <= 6; ++i) b.publish(i);
  auto sub = b.subscribe_from(1);
  Received<int> r = sub.try_recv();
  ASSERT_EQ(r.status, RecvStatus::kLagged);
  EXPECT_EQ(r.missed, 2u);
  EXPECT_EQ(r.seq, 3u);
  EXPECT_THAT(drain(sub), testing::ElementsAre(3, 4, 5, 6));
}

TEST(BroadcastSubscribeFrom, NextUnpublishedSequenceIsAllowedBeyondThrows) {
  Broadcast<int> b;
  b.publish(1);
  auto sub = b.subscribe_from(2);
  EXPECT_EQ(sub.try_recv().status, RecvStatus::kEmpty);
  b.publish(2);
  EXPECT_THAT(drain(sub), testing::ElementsAre(2));
  try {
    (void)b.subscribe_from(4);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), testing::HasSubstr("seq"));
  }
}

// --- close and lifetime ----------------------------------------------------------------------

TEST(BroadcastClose, SubscribersDrainThenSeeClosedAndPublishThrows) {
  Broadcast<int> b;
  auto sub = b.subscribe();
  b.publish(1);
  b.publish(2);
  b.close();
  EXPECT_THROW(b.publish(3), std::logic_error);
  EXPECT_EQ(*sub.recv().value, 1);
  EXPECT_EQ(*sub.try_recv().value, 2);
  EXPECT_EQ(sub.try_recv().status, RecvStatus::kClosed);
  EXPECT_EQ(sub.recv().status, RecvStatus::kClosed);  // does not block
  EXPECT_EQ(sub.recv_for(milliseconds(1)).status, RecvStatus::kClosed);
  std::vector<int> out;
  EXPECT_EQ(sub.recv_batch(out, 8), 0u);
}

TEST(BroadcastClose, RecvBatchDrainsBeforeReportingClosed) {
  Broadcast<int> b;
  auto sub = b.subscribe();
  for (int i = 1; i <= 3; ++i) b.publish(i);
  b.close();
  std::vector<int> out;
  EXPECT_EQ(sub.recv_batch(out, 2), 2u);
  EXPECT_EQ(sub.recv_batch(out, 2), 1u);
  EXPECT_EQ(sub.recv_batch(out, 2), 0u);
  EXPECT_THAT(out, testing::ElementsAre(1, 2, 3));
}

TEST(BroadcastClose, SubscribingAfterCloseGivesAClosedSubscriber) {
  Broadcast<int> b;
  b.publish(1);
  b.close();
  auto sub = b.subscribe();
  EXPECT_EQ(sub.try_recv().status, RecvStatus::kClosed);
  auto replay = b.subscribe_from(1);
  EXPECT_EQ(replay.recv().status, RecvStatus::kClosed);
}

TEST(BroadcastClose, CloseWakesABlockedReceiver) {
  for (WaitStrategy w : kAllStrategies) {
    Broadcast<int> b(BroadcastOptions{.wait = w});
    auto sub = b.subscribe();
    std::jthread closer([&] { b.close(); });
    EXPECT_EQ(sub.recv().status, RecvStatus::kClosed);
  }
}

TEST(BroadcastLifetime, DestroyedBroadcastLeavesSubscribersDrainingThenClosed) {
  std::optional<Subscriber<std::string>> sub;
  {
    Broadcast<std::string> b;
    sub.emplace(b.subscribe());
    b.publish("last words");
  }
  Received<std::string> r = sub->recv();
  ASSERT_EQ(r.status, RecvStatus::kOk);
  EXPECT_EQ(*r.value, "last words");
  EXPECT_EQ(sub->recv().status, RecvStatus::kClosed);
}

TEST(BroadcastLifetime, MovedSubscriberKeepsItsCursorAndMovedFromReportsClosed) {
  Broadcast<int> b;
  auto a = b.subscribe();
  b.publish(1);
  b.publish(2);
  EXPECT_EQ(*a.try_recv().value, 1);
  Subscriber<int> moved(std::move(a));
  EXPECT_EQ(moved.next_seq(), 2u);
  EXPECT_EQ(*moved.try_recv().value, 2);
  EXPECT_EQ(a.try_recv().status, RecvStatus::kClosed);  // NOLINT(bugprone-use-after-move)
}

// Counts live objects: catches leaks and double destroys in overwritten slots.
struct Counted {
  static inline std::atomic<int> live{0};
  int v = 0;
  explicit Counted(int x) : v(x) { ++live; }
  Counted(const Counted& o) : v(o.v) { ++live; }
  Counted(Counted&& o) noexcept : v(o.v) { ++live; }
  Counted& operator=(const Counted&) = default;
  Counted& operator=(Counted&&) noexcept = default;
  ~Counted() { --live; }
};

TEST(BroadcastLifetime, OverwrittenSlotsDestroyEveryValueExactlyOnce) {
  ASSERT_EQ(Counted::live.load(), 0);
  {
    Broadcast<Counted> b(BroadcastOptions{.capacity = 2});
    auto sub = b.subscribe();
    for (int i = 1; i <= 100; ++i) b.publish(Counted(i));
    EXPECT_EQ(Counted::live.load(), 2);  // only what the ring holds
    EXPECT_EQ(sub.try_recv().status, RecvStatus::kLagged);
    Received<Counted> r = sub.try_recv();
    ASSERT_EQ(r.status, RecvStatus::kOk);
    EXPECT_EQ(r.value->v, 99);
    EXPECT_EQ(Counted::live.load(), 3);
  }
  EXPECT_EQ(Counted::live.load(), 0);
}

// --- waiting: recv, recv_for, stop tokens -------------------------------------------------------

TEST(BroadcastWait, RecvWakesOnPublishFromAnotherThreadWithEveryStrategy) {
  for (WaitStrategy w : kAllStrategies) {
    Broadcast<int> b(BroadcastOptions{.wait = w});
    auto sub = b.subscribe();
    std::jthread producer([&] {
      for (int i = 1; i <= 100; ++i) b.publish(i);
    });
    for (int i = 1; i <= 100; ++i) {
      Received<int> r = sub.recv();
      ASSERT_EQ(r.status, RecvStatus::kOk);
      EXPECT_EQ(*r.value, i);
    }
  }
}

TEST(BroadcastWait, RecvForTimesOutWithEveryStrategy) {
  for (WaitStrategy w : kAllStrategies) {
    Broadcast<int> b(BroadcastOptions{.wait = w});
    auto sub = b.subscribe();
    const auto start = std::chrono::steady_clock::now();
    Received<int> r = sub.recv_for(milliseconds(5));
    EXPECT_EQ(r.status, RecvStatus::kTimeout);
    EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(5));
    EXPECT_FALSE(r.value.has_value());
    b.publish(7);
    r = sub.recv_for(milliseconds(5));
    ASSERT_EQ(r.status, RecvStatus::kOk);
    EXPECT_EQ(*r.value, 7);
  }
}

TEST(BroadcastWait, RecvForWithTheLargestTimeoutWaitsForTheMessage) {
  Broadcast<int> b;
  auto sub = b.subscribe();
  std::jthread producer([&] {
    std::this_thread::sleep_for(milliseconds(20));
    b.publish(7);
  });
  // now() + duration::max() overflowed, and the wait timed out at once.
  const Received<int> r = sub.recv_for(Clock::duration::max());
  ASSERT_EQ(r.status, RecvStatus::kOk);
  EXPECT_EQ(*r.value, 7);
}

TEST(BroadcastWait, RecvForWithZeroTimeoutStillDeliversWhatIsThere) {
  Broadcast<int> b;
  auto sub = b.subscribe();
  b.publish(1);
  EXPECT_EQ(sub.recv_for(Clock::duration::zero()).status, RecvStatus::kOk);
  EXPECT_EQ(sub.recv_for(Clock::duration::zero()).status, RecvStatus::kTimeout);
}

TEST(BroadcastWait, StopTokenCancelsABlockedRecvWithEveryStrategy) {
  for (WaitStrategy w : kAllStrategies) {
    Broadcast<int> b(BroadcastOptions{.wait = w});
    auto sub = b.subscribe();
    std::stop_source source;
    std::jthread stopper([&] { source.request_stop(); });
    EXPECT_EQ(sub.recv(source.get_token()).status, RecvStatus::kCancelled);
    std::stop_source timed;
    std::jthread timed_stopper([&] { timed.request_stop(); });
    EXPECT_EQ(sub.recv_for(std::chrono::hours(1), timed.get_token()).status,
              RecvStatus::kCancelled);
    std::vector<int> out;
    std::stop_source batch;
    std::jthread batch_stopper([&] { batch.request_stop(); });
    EXPECT_EQ(sub.recv_batch(out, 4, batch.get_token()), 0u);
    EXPECT_TRUE(out.empty());
  }
}

TEST(BroadcastWait, AlreadyStoppedTokenStillDeliversAvailableMessages) {
  Broadcast<int> b;
  auto sub = b.subscribe();
  std::stop_source source;
  source.request_stop();
  b.publish(1);
  EXPECT_EQ(sub.recv(source.get_token()).status, RecvStatus::kOk);
  EXPECT_EQ(sub.recv(source.get_token()).status, RecvStatus::kCancelled);
}

// --- recv_batch --------------------------------------------------------------------------------

TEST(BroadcastBatch, AppendsUpToMaxOfWhatIsAvailable) {
  Broadcast<int> b;
  auto sub = b.subscribe();
  for (int i = 1; i <= 5; ++i) b.publish(i);
  std::vector<int> out{0};
  EXPECT_EQ(sub.recv_batch(out, 3), 3u);
  EXPECT_EQ(sub.recv_batch(out, 3), 2u);
  EXPECT_THAT(out, testing::ElementsAre(0, 1, 2, 3, 4, 5));
  EXPECT_EQ(sub.recv_batch(out, 0), 0u);
}

TEST(BroadcastBatch, BlocksForTheFirstMessage) {
  Broadcast<int> b;
  auto sub = b.subscribe();
  std::jthread producer([&] { b.publish(42); });
  std::vector<int> out;
  EXPECT_EQ(sub.recv_batch(out, 64), 1u);
  EXPECT_THAT(out, testing::ElementsAre(42));
}

TEST(BroadcastBatch, LagInsideABatchSkipsAheadAndIsCounted) {
  Broadcast<int> b(BroadcastOptions{.capacity = 4});
  auto sub = b.subscribe();
  for (int i = 1; i <= 10; ++i) b.publish(i);
  std::vector<int> out;
  EXPECT_EQ(sub.recv_batch(out, 64), 4u);
  EXPECT_THAT(out, testing::ElementsAre(7, 8, 9, 10));
  EXPECT_EQ(sub.missed_total(), 6u);
}

// --- kBlock ---------------------------------------------------------------------------------------

TEST(BroadcastBlock, NoSubscribersNeverBlocksProducers) {
  Broadcast<int> b(BroadcastOptions{.capacity = 2, .overflow = Overflow::kBlock});
  for (int i = 1; i <= 10; ++i) b.publish(i);
  EXPECT_EQ(b.published_cursor(), 10u);
}

TEST(BroadcastBlock, ProducerWaitsForTheSlowestSubscriberAndNobodyLags) {
  for (WaitStrategy w : kAllStrategies) {
    Broadcast<int> b(
        BroadcastOptions{.capacity = 2, .overflow = Overflow::kBlock, .wait = w});
    auto fast = b.subscribe();
    auto slow = b.subscribe();
    b.publish(1);
    b.publish(2);
    std::atomic<bool> third_done{false};
    std::jthread producer([&] {
      b.publish(3);
      third_done = true;
    });
    EXPECT_EQ(*fast.recv().value, 1);
    EXPECT_EQ(*fast.recv().value, 2);
    // Negative check: the producer must still be waiting for `slow` (bounded look).
    std::this_thread::sleep_for(milliseconds(20));
    EXPECT_FALSE(third_done.load());
    EXPECT_EQ(b.published_cursor(), 2u);
    EXPECT_EQ(*slow.recv().value, 1);  // frees slot of seq 1
    producer.join();
    EXPECT_TRUE(third_done.load());
    EXPECT_EQ(*slow.recv().value, 2);
    EXPECT_EQ(*slow.recv().value, 3);
    EXPECT_EQ(slow.missed_total(), 0u);
  }
}

TEST(BroadcastBlock, DroppingASubscriberReleasesBlockedProducers) {
  Broadcast<int> b(BroadcastOptions{.capacity = 2, .overflow = Overflow::kBlock});
  auto keeper = b.subscribe();
  std::optional<Subscriber<int>> quitter(b.subscribe());
  std::jthread producer([&] {
    for (int i = 1; i <= 4; ++i) b.publish(i);
  });
  EXPECT_EQ(*keeper.recv().value, 1);
  EXPECT_EQ(*keeper.recv().value, 2);
  quitter.reset();  // only it held seq 3 back
  EXPECT_EQ(*keeper.recv().value, 3);
  EXPECT_EQ(*keeper.recv().value, 4);
}

TEST(BroadcastBlock, CloseWakesABlockedProducerWhichThrowsLogicError) {
  Broadcast<int> b(BroadcastOptions{.capacity = 2, .overflow = Overflow::kBlock});
  auto sub = b.subscribe();
  b.publish(1);
  b.publish(2);
  std::jthread producer([&] { EXPECT_THROW(b.publish(3), std::logic_error); });
  std::this_thread::sleep_for(milliseconds(10));  // let it block (either order passes)
  b.close();
  producer.join();
  EXPECT_EQ(*sub.recv().value, 1);
  EXPECT_EQ(*sub.recv().value, 2);
  EXPECT_EQ(sub.recv().status, RecvStatus::kClosed);
}

TEST(BroadcastBlock, SubscribeFromOutsideTheWindowReportsLagOnce) {
  Broadcast<int> b(BroadcastOptions{.capacity = 4, .overflow = Overflow::kBlock});
  for (int i = 1; i <= 6; ++i) b.publish(i);
  auto sub = b.subscribe_from(1);
  Received<int> r = sub.try_recv();
  ASSERT_EQ(r.status, RecvStatus::kLagged);
  EXPECT_EQ(r.missed, 2u);
  EXPECT_THAT(drain(sub), testing::ElementsAre(3, 4, 5, 6));
}

// A producer parked for room cannot overwrite anything: the window a subscribe_from()
// may replay ends at the slowest live subscriber, not at the parked claims (it used to
// report sequence 3 as missed while the ring still held it for `slow`).
TEST(BroadcastBlock, SubscribeFromInsideTheWindowWhileAProducerIsParkedMissesNothing) {
  Broadcast<int> b(BroadcastOptions{.capacity = 8, .overflow = Overflow::kBlock});
  auto slow = b.subscribe();
  b.publish(1);
  b.publish(2);
  ASSERT_EQ(slow.try_recv().seq, 1u);
  ASSERT_EQ(slow.try_recv().seq, 2u);
  for (int v = 3; v <= 10; ++v) b.publish(v);  // full for `slow`, whose cursor is 3
  std::jthread parked([&] { EXPECT_THROW(b.publish(11), std::logic_error); });  // waits for slow to pass 3
  std::this_thread::sleep_for(milliseconds(50));  // let it claim 11 and park (either order passes)
  auto late = b.subscribe_from(3);
  const Received<int> r = late.try_recv();
  EXPECT_EQ(r.status, RecvStatus::kOk);
  EXPECT_EQ(r.seq, 3u);
  EXPECT_EQ(late.missed_total(), 0u);
  b.close();
}

// A plain subscribe() asks for what is published after it; it takes effect when it
// registers with the gate. A producer running free (no subscriber holds it back) may
// claim far ahead in between: that must never make the new subscriber start lagged.
TEST(BroadcastBlock, SubscribeNeverStartsLaggedWhileAProducerRunsFree) {
  Broadcast<uint64_t> b(BroadcastOptions{.capacity = 2, .overflow = Overflow::kBlock});
  std::jthread producer([&](std::stop_token stop) {
    while (!stop.stop_requested()) b.publish(1);
  });
  const auto until = std::chrono::steady_clock::now() + milliseconds(200);
  int subscriptions = 0;
  while (std::chrono::steady_clock::now() < until || subscriptions < 1000) {
    auto sub = b.subscribe();
    ++subscriptions;
    ASSERT_EQ(sub.missed_total(), 0u) << "after " << subscriptions << " subscriptions";
    const Received<uint64_t> r = sub.recv();
    ASSERT_EQ(r.status, RecvStatus::kOk) << "after " << subscriptions << " subscriptions";
    if (subscriptions > 100'000) break;
  }
}

// --- value types -----------------------------------------------------------------------------------

struct Quote {
  std::string symbol;
  double price = 0;
  std::vector<int> levels;
};

TEST(BroadcastTypes, CarriesStringsSharedPointersAndStructs) {
  Broadcast<std::shared_ptr<const Quote>> ptrs;
  auto p = ptrs.subscribe();
  auto q = std::make_shared<const Quote>(Quote{"ACME", 1.5, {1, 2}});
  ptrs.publish(q);
  EXPECT_EQ(*p.recv().value, q);  // the same object, shared

  Broadcast<Quote> structs;
  auto s = structs.subscribe();
  structs.publish(Quote{"XYZ", 2.5, {3}});
  Received<Quote> r = s.recv();
  EXPECT_EQ(r.value->symbol, "XYZ");
  EXPECT_THAT(r.value->levels, testing::ElementsAre(3));

  struct Pod {
    int a;
    double b;
    char c[20];
  };
  Broadcast<Pod> pods(BroadcastOptions{.capacity = 2});
  auto pp = pods.subscribe();
  pods.publish(Pod{1, 2.0, "twenty-ish chars"});
  Received<Pod> pr = pp.recv();
  EXPECT_EQ(pr.value->a, 1);
  EXPECT_STREQ(pr.value->c, "twenty-ish chars");
}

// recv_batch reads trivially copyable values in chunks (Subscriber::append_run): values
// larger than a chunk, values whose default constructor is not trivial, and values it
// cannot assign (which take the one-by-one path) all arrive whole and in order.
struct Big {
  uint64_t seq = 0;
  std::array<char, 700> pad{};  // larger than a chunk's 512 bytes
};
struct Initialised {
  uint64_t seq = 7;  // a default member initialiser: not trivially default-constructible
  double weight = 0.5;
};
struct Unassignable {
  const uint64_t seq = 0;
};
static_assert(std::is_trivially_copyable_v<Initialised> && !std::is_trivially_default_constructible_v<Initialised>);
static_assert(std::is_trivially_copyable_v<Unassignable> && !std::is_copy_assignable_v<Unassignable>);

template <class V>
void expect_batches_deliver_in_order() {
  Broadcast<V> b(BroadcastOptions{.capacity = 256});
  auto sub = b.subscribe();
  for (uint64_t i = 1; i <= 200; ++i) b.publish(V{i});
  std::vector<V> got;
  while (got.size() < 200) ASSERT_GT(sub.recv_batch(got, 150), 0u);
  for (uint64_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i].seq, i + 1);
  EXPECT_EQ(sub.next_seq(), 201u);
}

// Trivially copyable without a default constructor: still a seqlock slot.
struct NoDefault {
  explicit NoDefault(uint64_t s) : seq(s) {}
  uint64_t seq;
};
static_assert(std::is_same_v<detail::SlotFor<NoDefault>, detail::SeqlockSlot<NoDefault>>);

TEST(BroadcastTypes, BatchesCarryLargeInitialisedUnassignableAndNoDefaultValuesInOrder) {
  expect_batches_deliver_in_order<Big>();
  expect_batches_deliver_in_order<Initialised>();
  expect_batches_deliver_in_order<Unassignable>();
  expect_batches_deliver_in_order<NoDefault>();
}

TEST(BroadcastTypes, ValueWithoutDefaultConstructorLagsAndRecoversInASeqlockRing) {
  Broadcast<NoDefault> b(BroadcastOptions{.capacity = 4});
  auto sub = b.subscribe();
  for (uint64_t i = 1; i <= 10; ++i) b.publish(NoDefault(i));
  Received<NoDefault> lag = sub.try_recv();
  ASSERT_EQ(lag.status, RecvStatus::kLagged);
  EXPECT_EQ(lag.missed, 6u);
  for (uint64_t want = 7; want <= 10; ++want) {
    Received<NoDefault> r = sub.try_recv();
    ASSERT_EQ(r.status, RecvStatus::kOk);
    EXPECT_EQ(r.value->seq, want);
  }
}

// A lagging reader copies a std::string slot while a producer overwrites it: each
// delivered value must be exactly the one published at that sequence, never torn.
TEST(BroadcastTypes, StringSlotsOverwrittenWhileReadersCopyAreNeverTorn) {
  Broadcast<std::string> b(BroadcastOptions{.capacity = 2});
  auto sub = b.subscribe();
  constexpr uint64_t kMessages = 20000;
  auto payload = [](uint64_t seq) { return std::string(16 + seq % 64, static_cast<char>('a' + seq % 26)); };
  std::jthread producer([&] {
    for (uint64_t s = 1; s <= kMessages; ++s) b.publish(payload(s));
    b.close();
  });
  uint64_t expected = 1;
  uint64_t received = 0;
  for (;;) {
    Received<std::string> r = sub.recv();
    if (r.status == RecvStatus::kClosed) break;
    if (r.status == RecvStatus::kLagged) {
      ASSERT_EQ(r.seq, expected + r.missed);
      expected = r.seq;
      continue;
    }
    ASSERT_EQ(r.status, RecvStatus::kOk);
    ASSERT_EQ(r.seq, expected);
    ASSERT_EQ(*r.value, payload(r.seq));
    ++expected;
    ++received;
  }
  EXPECT_EQ(expected, kMessages + 1);
  EXPECT_EQ(received + sub.missed_total(), kMessages);
}

}  // namespace
}  // namespace streamcache
