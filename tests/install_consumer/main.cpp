// One small program that uses streamcache as a downstream user would, through the umbrella
// header only. It is built three ways by scripts/check-install: against an installed prefix
// with find_package, via add_subdirectory (tests/subdirectory_consumer) and with pkg-config
// flags. Each exercise_* function covers one component; add one per component as it lands
// and call it from main(). Exits non-zero on the first failed check.
#include <streamcache/streamcache.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "consumer check failed: %s\n", what);
    std::exit(EXIT_FAILURE);
  }
}

// Clock and ManualClock are compiled into the library (src/clock.cpp), so this also proves
// the archive is found and linked.
void exercise_clock() {
  auto manual = std::make_shared<streamcache::ManualClock>();
  std::shared_ptr<streamcache::Clock> clock = manual;  // injectable as the base type
  const auto t0 = clock->now();
  manual->advance(std::chrono::seconds(15));
  check(clock->now() - t0 == std::chrono::seconds(15), "ManualClock advances by exactly 15s");

  auto system = streamcache::Clock::system();
  check(system != nullptr && system == streamcache::Clock::system(), "Clock::system() is shared");
}

streamcache::Generator<int> countdown(int from) {
  for (int i = from; i > 0; --i) co_yield i;
}

void exercise_generator() {
  int sum = 0;
  for (int v : countdown(4)) sum += v;
  check(sum == 4 + 3 + 2 + 1, "Generator yields 4, 3, 2, 1");
}

// Header-only templates over abseil: this proves the exported include paths and the
// abseil link dependencies (hash, synchronization, status) reach a consumer.
void exercise_cache() {
  using namespace std::chrono_literals;
  auto clock = std::make_shared<streamcache::ManualClock>();
  int removed_expired = 0;
  auto cache = streamcache::Cache<std::string, int>::builder()
                   .max_capacity(100)
                   .time_to_live(10s)
                   .clock(clock)
                   .eviction_listener([&](const std::string&, const int&, streamcache::RemovalCause cause) {
                     if (cause == streamcache::RemovalCause::kExpired) ++removed_expired;
                   })
                   .build();
  cache.insert("a", 1);
  check(cache.get("a") == 1, "Cache::get returns the inserted value");
  check(cache.get_with("b", [] { return 2; }) == 2, "Cache::get_with runs the loader on a miss");
  check(cache.get_with("b", [] { return 3; }) == 2, "Cache::get_with returns the cached value on a hit");
  const absl::StatusOr<int> failed =
      cache.try_get_with("c", [] { return absl::StatusOr<int>(absl::NotFoundError("no c")); });
  check(!failed.ok() && !cache.contains_key("c"), "Cache::try_get_with returns the error, caches nothing");
  clock->advance(10s);  // 10 s: the TTL has passed for both entries.
  check(!cache.get("a").has_value() && !cache.contains_key("b"), "entries expire after the TTL");
  cache.run_pending_tasks();
  check(removed_expired == 2 && cache.entry_count() == 0, "the listener saw both expirations");
  check(cache.stats().evictions_expired == 2, "CacheStats counts the expirations");

  bool threw = false;
  try {
    streamcache::Cache<int, int>::builder().shards(3).build();
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "an invalid option throws std::invalid_argument");
}

// A 4-slot ring and one thread: publish 6, so the subscriber lags by exactly 2.
void exercise_broadcast() {
  streamcache::BroadcastOptions options;
  options.capacity = 4;
  streamcache::Broadcast<int> ring(options);
  auto sub = ring.subscribe();
  for (int i = 1; i <= 6; ++i) ring.publish(i * 10);
  check(ring.published_cursor() == 6, "Broadcast::published_cursor counts the publishes");

  const streamcache::Received<int> lagged = sub.try_recv();
  check(lagged.status == streamcache::RecvStatus::kLagged && lagged.missed == 2 && lagged.seq == 3,
        "a subscriber 2 behind a full ring gets kLagged with missed == 2, resuming at seq 3");
  const streamcache::Received<int> third = sub.try_recv();
  check(third.status == streamcache::RecvStatus::kOk && third.seq == 3 && third.value == 30,
        "after kLagged it continues at the oldest message held");
  std::vector<int> rest;
  check(sub.recv_batch(rest, 10) == 3 && rest == std::vector<int>{40, 50, 60}, "recv_batch drains the rest");
  check(sub.try_recv().status == streamcache::RecvStatus::kEmpty, "an empty ring gives kEmpty");
  ring.close();
  check(sub.recv().status == streamcache::RecvStatus::kClosed, "a drained, closed ring gives kClosed");
  check(sub.missed_total() == 2, "Subscriber::missed_total counts the lag");
}

// One thread: a stream's cutoff is fixed when stream_n() is called, so mutations made
// afterwards arrive live without a second thread. Then a resume, lag under kError, and a
// bad option.
void exercise_streaming_map() {
  using Kind = streamcache::EventKind;
  streamcache::StreamingMapOptions options;
  options.mark_snapshot_end = true;
  streamcache::StreamingMap<std::string, int> map(options);
  check(map.insert("a", 1) == 1 && map.insert("b", 2) == 2, "StreamingMap::insert returns sequences 1, 2");
  auto stream = map.stream_n(4);  // history: a, b (then kSnapshotEnd, not counted)
  map.insert("c", 3);             // new keys after the cutoff: live
  map.insert("d", 4);
  std::vector<Kind> kinds;
  uint64_t last = 0;
  for (const auto& e : stream) {
    kinds.push_back(e.kind);
    last = e.seq;
    if (e.key == "d") check(e.value == map.get("d"), "events share the map's value object");
  }
  check(kinds == std::vector<Kind>{Kind::kSnapshot, Kind::kSnapshot, Kind::kSnapshotEnd, Kind::kUpsert,
                                   Kind::kUpsert},
        "stream_n: history, kSnapshotEnd, then the live upserts");
  check(map.remove("b") && !map.remove("b"), "StreamingMap::remove of an absent key returns false");
  for (const auto& e : map.stream_from(last)) {
    check(e.kind == Kind::kRemove && e.seq == 5 && e.key == "b" && !e.value, "stream_from resumes after last");
    break;
  }

  options.ring_capacity = 2;
  options.lag = streamcache::LagPolicy::kError;
  streamcache::StreamingMap<std::string, int> small(options);
  auto lagging = small.stream_n(1);  // cutoff 0: no history; ends after one event if it does not throw
  for (int i = 0; i < 3; ++i) small.insert("k", i);
  bool lagged = false;
  try {
    for ([[maybe_unused]] const auto& e : lagging) {
    }
  } catch (const streamcache::LaggedError& error) {
    lagged = error.last_delivered_seq() == 0;
  }
  check(lagged, "a kError stream that fell behind a 2-slot ring throws LaggedError");

  bool threw = false;
  try {
    options.ring_capacity = 0;
    streamcache::StreamingMap<int, int> invalid(options);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "ring_capacity 0 throws std::invalid_argument");
}

}  // namespace

int main() {
  exercise_clock();
  exercise_generator();
  exercise_cache();
  exercise_broadcast();
  exercise_streaming_map();
  std::puts("streamcache consumer: ok");
  return EXIT_SUCCESS;
}
