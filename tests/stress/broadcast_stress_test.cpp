// Several producers (half with publish(), half with claim() + publish_claimed(); in the
// BatchProducers cases also claim(n) and publish_batch()),
// subscribers joining, leaving and replaying all the time. Every subscriber must see
// a gap-free increasing sequence apart from reported lag, each producer's messages in
// its order, and values never torn. Bounded by time and by operation count.
#include "streamcache/broadcast.hpp"
#include "streamcache/detail/backoff.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace streamcache {
namespace {

constexpr int kProducers = 3;
constexpr int kSubscriberThreads = 3;
constexpr auto kTimeBudget = std::chrono::milliseconds(1500);
#if defined(__SANITIZE_THREAD__)
constexpr uint64_t kMessagesPerProducer = 40'000;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr uint64_t kMessagesPerProducer = 40'000;
#else
constexpr uint64_t kMessagesPerProducer = 300'000;
#endif
#else
constexpr uint64_t kMessagesPerProducer = 300'000;
#endif

// A message names its producer and a payload: a per-producer counter for publish()
// producers, the message's own sequence for claim() producers (they know it first).
struct Decoded {
  int producer;
  uint64_t payload;
};

struct U64Codec {
  using T = uint64_t;
  static T encode(int producer, uint64_t payload) {
    return (static_cast<uint64_t>(producer) << 56) | payload;
  }
  static Decoded decode(const T& v) {
    return {static_cast<int>(v >> 56), v & ((uint64_t{1} << 56) - 1)};
  }
};

// Long enough to live on the heap: a torn copy would be a use-after-free under TSan/ASan.
struct StringCodec {
  using T = std::string;
  static T encode(int producer, uint64_t payload) {
    std::string s = std::to_string(producer) + ":" + std::to_string(payload) + ":";
    s.resize(48 + payload % 32, static_cast<char>('a' + payload % 26));
    return s;
  }
  static Decoded decode(const T& v) {
    const size_t colon = v.find(':');
    const size_t colon2 = v.find(':', colon + 1);
    Decoded d{std::stoi(v.substr(0, colon)), std::stoull(v.substr(colon + 1, colon2 - colon - 1))};
    EXPECT_EQ(v, encode(d.producer, d.payload)) << "torn value";
    return d;
  }
};

struct Tally {
  uint64_t received = 0;
  uint64_t missed = 0;
  uint64_t subscriptions = 0;
};

// Checks one subscription's stream; returns false (after recording a failure) on error.
template <class Codec>
class StreamChecker {
 public:
  explicit StreamChecker(uint64_t first) : expected_(first) { last_.fill(0); }

  bool ok(uint64_t seq, const typename Codec::T& value) {
    if (seq != expected_) {
      ADD_FAILURE() << "got seq " << seq << ", expected " << expected_;
      return false;
    }
    const Decoded d = Codec::decode(value);
    if (d.producer < 0 || d.producer >= kProducers) {
      ADD_FAILURE() << "bad producer " << d.producer;
      return false;
    }
    if (d.producer % 2 == 1 && d.payload != seq) {
      ADD_FAILURE() << "claim() producer's value says seq " << d.payload << ", delivered as " << seq;
      return false;
    }
    if (d.payload <= last_[d.producer]) {
      ADD_FAILURE() << "producer " << d.producer << " out of order: " << d.payload << " after "
                    << last_[d.producer];
      return false;
    }
    last_[d.producer] = d.payload;
    ++expected_;
    return true;
  }

  bool lagged(uint64_t seq, uint64_t missed) {
    if (missed == 0 || seq != expected_ + missed) {
      ADD_FAILURE() << "lag to " << seq << " with missed " << missed << " from " << expected_;
      return false;
    }
    expected_ = seq;
    return true;
  }

  uint64_t expected() const { return expected_; }

 private:
  uint64_t expected_;
  std::array<uint64_t, kProducers> last_{};
};

// `producers` below kProducers: with one producer the ring's sequencer stays in its
// single-owner mode (plain claims), so the handshakes that lean on heavy_barrier()
// (waking subscribers, kBlock registration) are the ones under test.
//
// `batch_producers`: producer 1 claims runs of 1-4 sequences with claim(n), producer 2
// publishes runs of 1-5 messages with publish_batch().
template <class Codec>
void run_stress(BroadcastOptions options, bool use_batches, int producer_count = kProducers,
                bool batch_producers = false) {
  using T = typename Codec::T;
  // Under backpressure a live subscriber never lags: only a replay that starts
  // outside the window does, once, up front.
  const bool block = options.overflow == Overflow::kBlock;
  Broadcast<T> b(options);
  const auto deadline = std::chrono::steady_clock::now() + kTimeBudget;
  std::atomic<uint64_t> published{0};
  std::vector<Tally> tallies(kSubscriberThreads);

  std::vector<std::thread> subscribers;
  for (int t = 0; t < kSubscriberThreads; ++t) {
    subscribers.emplace_back([&, t] {
      std::mt19937_64 rng(1234 + t);
      Tally& tally = tallies[t];
      uint64_t resume_at = 0;  // 0: plain subscribe()
      bool closed = false;
      std::vector<T> batch;
      while (!closed) {
        Subscriber<T> sub = resume_at == 0 ? b.subscribe() : b.subscribe_from(resume_at);
        ++tally.subscriptions;
        // A kBlock subscriber may start lagged (its first receive says so), and only a
        // replay may: the stream it owes us starts missed_total() before next_seq(),
        // exactly where it asked to start.
        StreamChecker<Codec> check(sub.next_seq() - sub.missed_total());
        if (block) {
          const uint64_t asked = resume_at == 0 ? check.expected() : resume_at;
          if (check.expected() != asked || (resume_at == 0 && sub.missed_total() != 0)) {
            ADD_FAILURE() << "kBlock subscription asked for " << asked << " and starts at "
                          << sub.next_seq() << " with " << sub.missed_total() << " missed";
            return;
          }
        }
        if (sub.missed_total() != 0) {
          Received<T> r = sub.try_recv();
          if (r.status != RecvStatus::kLagged || !check.lagged(r.seq, r.missed)) return;
          tally.missed += r.missed;
        }
        const uint64_t quota = 1 + rng() % 3000;  // messages before leaving
        uint64_t got = 0;
        while (got < quota && !closed) {
          if (use_batches) {
            batch.clear();
            const uint64_t missed_before = sub.missed_total();
            const uint64_t from = sub.next_seq();
            const size_t n = sub.recv_batch(batch, 64);
            if (n == 0) {
              closed = true;
              break;
            }
            const uint64_t missed = sub.missed_total() - missed_before;
            if (block && missed != 0) {
              ADD_FAILURE() << "kBlock subscriber lagged " << missed << " at " << from;
              return;
            }
            if (sub.next_seq() - from != n + missed) {
              ADD_FAILURE() << "batch moved the cursor by " << sub.next_seq() - from << " for "
                            << n << " messages and " << missed << " missed";
              return;
            }
            // A batch is one contiguous run of sequences; lag is skipped before it.
            if (missed != 0 && !check.lagged(sub.next_seq() - n, sub.next_seq() - n - check.expected())) return;
            for (size_t i = 0; i < n; ++i) {
              if (!check.ok(sub.next_seq() - n + i, batch[i])) return;
            }
            tally.missed += missed;
            tally.received += n;
            got += n;
          } else {
            Received<T> r = (rng() % 8 == 0) ? sub.recv_for(std::chrono::milliseconds(1))
                                             : sub.recv();
            switch (r.status) {
              case RecvStatus::kOk:
                if (!check.ok(r.seq, *r.value)) return;
                ++tally.received;
                ++got;
                break;
              case RecvStatus::kLagged:
                if (block) {
                  ADD_FAILURE() << "kBlock subscriber lagged " << r.missed << " at "
                                << check.expected();
                  return;
                }
                if (!check.lagged(r.seq, r.missed)) return;
                tally.missed += r.missed;
                break;
              case RecvStatus::kClosed:
                closed = true;
                break;
              case RecvStatus::kTimeout:
                break;
              default:
                ADD_FAILURE() << "unexpected status " << static_cast<int>(r.status);
                return;
            }
          }
        }
        // Half the time, come back where we left off (replay; may lag if too late).
        resume_at = (rng() % 2 == 0) ? sub.next_seq() : 0;
        if (resume_at > b.published_cursor() + 1) resume_at = 0;
      }
    });
  }

  std::vector<std::thread> producers;
  for (int p = 0; p < producer_count; ++p) {
    producers.emplace_back([&, p] {
      std::vector<T> run;
      uint64_t checked_clock_at = 0;
      for (uint64_t i = 1; i <= kMessagesPerProducer;) {
        if (i - checked_clock_at >= 256) {
          checked_clock_at = i;
          if (std::chrono::steady_clock::now() >= deadline) break;
        }
        const uint64_t cap = b.capacity();
        uint64_t n = 1;
        if (batch_producers && p == 1) {
          n = 1 + i % std::min<uint64_t>(4, cap);
          const uint64_t first = b.claim(n);
          for (uint64_t k = 0; k < n; ++k) b.publish_claimed(first + k, Codec::encode(p, first + k));
        } else if (batch_producers && p == 2) {
          n = 1 + i % std::min<uint64_t>(5, cap);
          run.clear();
          for (uint64_t k = 0; k < n; ++k) run.push_back(Codec::encode(p, i + k));
          b.publish_batch(run);
        } else if (p % 2 == 0) {
          b.publish(Codec::encode(p, i));
        } else {
          const uint64_t seq = b.claim();
          b.publish_claimed(seq, Codec::encode(p, seq));
        }
        i += n;
        published.fetch_add(n, std::memory_order_relaxed);
      }
    });
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(b.published_cursor(), published.load());
  b.close();
  for (auto& t : subscribers) t.join();

  uint64_t received = 0;
  for (const Tally& t : tallies) {
    received += t.received;
    EXPECT_GT(t.subscriptions, 0u);
  }
  EXPECT_GT(received, 0u);
  testing::Test::RecordProperty("published", std::to_string(published.load()));
  testing::Test::RecordProperty("received", std::to_string(received));
}

TEST(BroadcastStress, OverwriteU64SubscribersChurnAndLag) {
  run_stress<U64Codec>({.capacity = 64}, /*use_batches=*/false);
}

TEST(BroadcastStress, OverwriteU64BatchesWithYield) {
  run_stress<U64Codec>({.capacity = 64, .wait = WaitStrategy::kYield}, /*use_batches=*/true);
}

TEST(BroadcastStress, OverwriteStringsNeverTornUnderConcurrentOverwrite) {
  run_stress<StringCodec>({.capacity = 8}, /*use_batches=*/false);
}

TEST(BroadcastStress, OverwriteStringsBatchesInTinyRing) {
  run_stress<StringCodec>({.capacity = 2}, /*use_batches=*/true);
}

TEST(BroadcastStress, BlockU64BackpressureWithChurningSubscribers) {
  run_stress<U64Codec>({.capacity = 32, .overflow = Overflow::kBlock}, /*use_batches=*/false);
}

TEST(BroadcastStress, BlockStringsBatches) {
  run_stress<StringCodec>({.capacity = 16, .overflow = Overflow::kBlock}, /*use_batches=*/true);
}

TEST(BroadcastStress, BatchProducersOverwriteU64) {
  run_stress<U64Codec>({.capacity = 64}, /*use_batches=*/false, kProducers,
                       /*batch_producers=*/true);
}

TEST(BroadcastStress, BatchProducersBlockU64) {
  run_stress<U64Codec>({.capacity = 32, .overflow = Overflow::kBlock}, /*use_batches=*/false,
                       kProducers, /*batch_producers=*/true);
}

TEST(BroadcastStress, BatchProducersBlockStringsInSmallRing) {
  run_stress<StringCodec>({.capacity = 8, .overflow = Overflow::kBlock}, /*use_batches=*/true,
                          kProducers, /*batch_producers=*/true);
}

TEST(BroadcastStress, SingleProducerBlockU64ChurningSubscribersNeverLagOrHang) {
  run_stress<U64Codec>({.capacity = 32, .overflow = Overflow::kBlock}, /*use_batches=*/false,
                       /*producer_count=*/1);
}

TEST(BroadcastStress, SingleProducerOverwriteU64Batches) {
  run_stress<U64Codec>({.capacity = 64}, /*use_batches=*/true, /*producer_count=*/1);
}

// The single producer's claims and stamps are plain stores; a subscriber about to
// sleep makes them visible with a heavy barrier. Ping-pong forces a sleep per message:
// a lost wake-up shows as a timeout.
TEST(BroadcastStress, SingleProducerPingPongNeverLosesAWakeUp) {
  constexpr uint64_t kRounds = 2000;
  const auto deadline = std::chrono::steady_clock::now() + kTimeBudget;
  Broadcast<uint64_t> ping;
  Broadcast<uint64_t> pong;
  Subscriber<uint64_t> ping_sub = ping.subscribe();
  Subscriber<uint64_t> pong_sub = pong.subscribe();
  std::atomic<uint64_t> rounds_done{0};
  std::thread echo([&] {
    for (;;) {
      Received<uint64_t> r = ping_sub.recv_for(std::chrono::seconds(5));
      if (r.status == RecvStatus::kClosed) return;
      if (r.status != RecvStatus::kOk) {
        ADD_FAILURE() << "echo side got status " << static_cast<int>(r.status);
        return;
      }
      pong.publish(*r.value);
    }
  });
  for (uint64_t i = 1; i <= kRounds && std::chrono::steady_clock::now() < deadline; ++i) {
    ping.publish(i);
    Received<uint64_t> r = pong_sub.recv_for(std::chrono::seconds(5));
    ASSERT_EQ(r.status, RecvStatus::kOk) << "round " << i << ": a wake-up was lost";
    ASSERT_EQ(*r.value, i);
    rounds_done.store(i, std::memory_order_relaxed);
  }
  ping.close();
  echo.join();
  EXPECT_GT(rounds_done.load(), 0u);
}

// One thread publishes alone (it owns the sequencer), then others join while it keeps
// going: ownership is revoked under load. Every sequence must be taken exactly once,
// so a lossless subscriber sees 1..N with each producer's messages in its order.
TEST(BroadcastStress, SecondProducerJoiningTakesOverTheSequencerWithoutDuplicates) {
  constexpr uint64_t kSolo = 20'000;
  constexpr uint64_t kEach = 30'000;
  const auto deadline = std::chrono::steady_clock::now() + kTimeBudget;
  Broadcast<uint64_t> b({.capacity = 256, .overflow = Overflow::kBlock});
  Subscriber<uint64_t> sub = b.subscribe();
  std::atomic<bool> solo_done{false};
  std::atomic<uint64_t> published{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      const uint64_t count = p == 0 ? kSolo + kEach : kEach;
      for (uint64_t i = 1; i <= count; ++i) {
        if ((i & 255) == 0 && std::chrono::steady_clock::now() >= deadline) break;
        if (p == 0 && i == kSolo) solo_done.store(true);
        if (p != 0 && i == 1) {
          while (!solo_done.load()) std::this_thread::yield();
        }
        if (p % 2 == 0) {
          b.publish(U64Codec::encode(p, i));
        } else {  // the checker expects odd producers to send their own sequence
          const uint64_t seq = b.claim();
          b.publish_claimed(seq, U64Codec::encode(p, seq));
        }
        published.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  StreamChecker<U64Codec> check(1);
  std::thread consumer([&] {
    std::vector<uint64_t> batch;
    bool ok = true;
    for (;;) {  // after a failure, keep draining so that producers never block for good
      batch.clear();
      const uint64_t from = sub.next_seq();
      const size_t n = sub.recv_batch(batch, 64);
      if (n == 0) return;
      for (size_t i = 0; i < n && ok; ++i) ok = check.ok(from + i, batch[i]);
    }
  });
  for (auto& t : producers) t.join();
  EXPECT_EQ(b.published_cursor(), published.load());
  b.close();
  consumer.join();
  EXPECT_EQ(check.expected(), published.load() + 1);
  EXPECT_EQ(sub.missed_total(), 0u);
}

// kBlock producers parked for room, then close() while the subscriber drains: every
// publish() that returned must be delivered before kClosed. Each parked producer used to
// decide "fits or gives up" alone after the close, so a later claim could fit (the
// subscriber had drained meanwhile) after an earlier one gave up, and readers stop at
// the lowest claim given up (a review's reproducer: 128 rounds in 1000).
TEST(BroadcastStress, BlockProducersWokenByCloseNeverReturnAMessageNobodyReads) {
  const auto deadline = std::chrono::steady_clock::now() + kTimeBudget;
  std::minstd_rand rng(1);
  int rounds = 0;
  for (; rounds < 400 && (rounds < 20 || std::chrono::steady_clock::now() < deadline); ++rounds) {
    Broadcast<int> b(BroadcastOptions{.capacity = 4, .overflow = Overflow::kBlock});
    auto sub = b.subscribe();
    for (int v = 1; v <= 4; ++v) b.publish(v);
    std::array<std::atomic<uint64_t>, 4> returned{};  // 0: threw
    std::vector<std::thread> producers;
    for (size_t i = 0; i < returned.size(); ++i) {
      producers.emplace_back([&, i] {
        try {
          returned[i] = b.publish(static_cast<int>(5 + i));
        } catch (const std::logic_error&) {
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // most of them park: none fits yet
    const unsigned spin = static_cast<unsigned>(rng() % 4000);
    std::thread closer([&] {
      for (unsigned k = 0; k < spin; ++k) detail::cpu_relax();  // a random moment in the drain
      b.close();
    });
    uint64_t last_received = 0;
    for (Received<int> r = sub.recv(); r.status == RecvStatus::kOk; r = sub.recv()) last_received = r.seq;
    closer.join();
    for (auto& p : producers) p.join();
    for (const auto& seq : returned) {
      ASSERT_LE(seq.load(), last_received) << "round " << rounds << ": publish() returned " << seq.load()
                                           << " but the subscriber was closed after " << last_received;
    }
  }
  EXPECT_GE(rounds, 20);
}

}  // namespace
}  // namespace streamcache
