// Differential fuzzer for streamcache::StreamingMap (libFuzzer): a byte string decodes to
// map options and a sequence of operations from one thread: mutations (insert, remove,
// clock advance + run_pending_tasks with TTL), get, and up to four streams (stream(),
// stream_n(), stream_from(), stream_batches()) that are created, pulled a few events at
// a time, resumed after LaggedError or a disconnect, and destroyed. The map runs against
// the model in streaming_map_model.hpp:
//  - insert/remove/get results, last_seq(), and the expirations' sequences;
//  - every event against the history + live rule: history = the state at the cutoff in
//    sequence order (a key changed later may be left out), then live events in order with
//    no gap while the ring cannot have overflowed, no duplicate, each event equal to the
//    mutation logged at its seq; kResync / kReset / LaggedError only after possible lag,
//    and under kError recovery only in a stream_from() whose continuation had left the ring;
//  - after catching up, the consumer's rebuilt state equals the map (get() of every key,
//    the very shared_ptr the events carried).
// Any disagreement prints the step and the stream, and aborts.
//
// One thread never waits: a stream is only pulled while the model guarantees an event
// (see StreamChecker::can_pull); catching up first writes a key, so the last sequence is
// an upsert that every stream must deliver, and pulls each stream until it has. A pull
// that waits anyway means the stream withholds an event that must come (a lost event):
// after 5 s a watchdog stops that stream and the fuzzer reports the mismatch.
//
// Input format (missing bytes read as 0):
//   byte 0  bits 0-2 ring_capacity: 1, 2, 3 (-> 4), 4, 5 (-> 8), 8, 16, or 7: invalid
//           options (bits 3-4 say which: ring_capacity 0, snapshot_batch 0, negative
//           time_to_live, negative time_to_idle)
//   byte 1  snapshot_batch: 1, 2, 3, 5, 8, 1024 (b % 6)
//   byte 2  bit 0 LagPolicy::kError, 1 publish_removals off, 2 publish_expirations,
//           3 mark_snapshot_end, 4 time_to_live, 5 uint32_t timestamps, bits 6-7
//           initial_seq: 0, 2^32 - 12 (the 32-bit wrap), 1000, 2^32 - 3
//   byte 3  bits 0-3 key space = 1 + b % 12 keys, bits 4-6 time_to_live = 1 + b % 8 seconds,
//           bit 7 mark_recovery_end
//   then steps: an opcode byte and its argument bytes (see Fuzz::step()).
//
// Replay one input with a trace of every step and event:
//   STREAMING_MAP_FUZZER_TRACE=1 ./streaming_map_fuzzer FILE
#include <streamcache/clock.hpp>
#include <streamcache/generator.hpp>
#include <streamcache/streaming_map.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "streaming_map_model.hpp"

namespace streaming_map_fuzz {
namespace {

using Key = std::string;
using Value = std::string;
using Ev = streamcache::Event<Key, Value>;
using streamcache::Clock;
using streamcache::Generator;
using streamcache::LaggedError;
using streamcache::ManualClock;
using streamcache::StreamingMapOptions;

// Keys and values are strings, half of them too long for the small-string buffer, so
// that ASan sees every copy of the events and the map's nodes. Every value is unique, so
// an event names exactly one write.
std::string key_name(int k) {
  return k % 2 == 0 ? "k" + std::to_string(k) : "a-key-long-enough-for-the-heap-" + std::to_string(k);
}
std::string value_name(uint32_t vid) {
  return vid % 3 == 0 ? "v" + std::to_string(vid) + "-with-a-tail-long-enough-for-the-heap" : "v" + std::to_string(vid);
}
int parse_key(const std::string& s) {
  size_t i = s.size();
  while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9') --i;
  return i == s.size() ? -2 : std::atoi(s.c_str() + i);
}
uint32_t parse_vid(const std::string& s) {
  return static_cast<uint32_t>(std::strtoul(s.c_str() + 1, nullptr, 10));  // after the 'v'
}

/// Reads the input front to back; past the end it yields zeros.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

/// Stops a stream whose pull has waited too long. With one thread nothing can publish
/// while a pull waits, so a wait means the stream withholds an event the model says is
/// there; stopping the stream turns that hang into a reported mismatch.
class Watchdog {
 public:
  static constexpr std::chrono::seconds kLimit{5};  // no legitimate pull takes a millisecond

  ~Watchdog() {
    if (thread_.joinable()) {
      thread_.request_stop();
      cv_.notify_all();
    }
  }

  void arm(std::stop_source* target) {
    if (!thread_.joinable()) thread_ = std::jthread([this](std::stop_token stop) { watch(stop); });
    std::lock_guard<std::mutex> lock(mu_);
    target_ = target;
    deadline_ = std::chrono::steady_clock::now() + kLimit;
    cv_.notify_all();
  }

  /// Disarms; true if it fired during this pull.
  bool disarm() {
    std::lock_guard<std::mutex> lock(mu_);
    target_ = nullptr;
    return std::exchange(fired_, false);
  }

 private:
  void watch(const std::stop_token& stop) {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop.stop_requested()) {
      if (target_ == nullptr) {
        cv_.wait(lock, [&] { return target_ != nullptr || stop.stop_requested(); });
      } else if (std::chrono::steady_clock::now() >= deadline_) {
        target_->request_stop();
        target_ = nullptr;
        fired_ = true;
      } else {
        cv_.wait_until(lock, deadline_);
      }
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::stop_source* target_ = nullptr;
  std::chrono::steady_clock::time_point deadline_;
  bool fired_ = false;
  std::jthread thread_;  // last: joined before the members it reads go away
};

Watchdog& process_watchdog() {
  static Watchdog watchdog;
  return watchdog;
}

// The message is a lambda so that it is only built when the check fails.
#define FUZZ_CHECK(cond, message)  \
  do {                             \
    if (!(cond)) fail(message);    \
  } while (0)

struct Setup {
  StreamingMapOptions options;
  StreamChecker::Config config;
  int keys = 1;
  bool ttl = false;
};

template <class Timestamp>
class Fuzz {
  using Map = streamcache::StreamingMap<Key, Value, Timestamp>;

  /// One stream and its consumer.
  struct Stream {
    std::unique_ptr<std::stop_source> stop;  // the watchdog's handle (stable address)
    std::string name;  // how it was made, for the trace
    bool batches = false;
    Generator<Ev> events;
    std::optional<typename Generator<Ev>::iterator> it;
    Generator<std::span<const Ev>> spans;
    std::optional<typename Generator<std::span<const Ev>>::iterator> span_it;
    StreamChecker checker;
  };

 public:
  static constexpr int kMaxSteps = 3000;
  static constexpr int kSlots = 4;

  Fuzz(Reader& in, const Setup& setup)
      : in_(in),
        setup_(setup),
        model_(setup.options.initial_seq, setup.options.publish_removals, setup.options.publish_expirations,
               setup.ttl ? std::optional<int64_t>(setup.options.time_to_live->count()) : std::nullopt) {}

  void run() {
    StreamingMapOptions options = setup_.options;
    options.clock = clock_;
    map_.emplace(options);
    if (trace_) {
      const StreamingMapOptions& o = setup_.options;
      std::fprintf(stderr, "config: ring %zu (-> %llu), snapshot_batch %zu, lag %s, publish_removals %d, "
                   "publish_expirations %d, mark_snapshot_end %d, mark_recovery_end %d, ttl %s, %s timestamps, "
                   "initial_seq %llu, keys %d\n",
                   o.ring_capacity, static_cast<unsigned long long>(setup_.config.ring), o.snapshot_batch,
                   o.lag == LagPolicy::kError ? "kError" : "kResync", o.publish_removals, o.publish_expirations,
                   o.mark_snapshot_end, o.mark_recovery_end, setup_.ttl ? std::to_string(o.time_to_live->count()).c_str() : "none",
                   sizeof(Timestamp) == 4 ? "32-bit" : "64-bit", static_cast<unsigned long long>(o.initial_seq),
                   setup_.keys);
    }
    while (!in_.done() && steps_ < kMaxSteps) step();
    finish();
  }

 private:
  // ---- Steps ----------------------------------------------------------------------------

  void step() {
    ++steps_;
    model_.begin_op();
    const uint8_t op = in_.byte();
    switch (op % 16) {
      case 0: case 1: case 2: do_insert(next_key()); break;
      case 3: do_remove(next_key()); break;
      case 4: do_get(next_key()); break;
      case 5: case 6: do_open(); break;
      case 7: case 8: case 9: do_pull(); break;
      case 10: do_catch_up(); break;
      case 11: do_destroy(); break;
      case 12: do_resume(); break;
      case 13: do_advance(); break;
      case 14: do_burst(); break;
      default: do_get_all(); break;
    }
    check_last_seq();
  }

  int next_key() { return in_.byte() % setup_.keys; }
  int next_slot() { return in_.byte() % kSlots; }
  int64_t now() const { return clock_->now().time_since_epoch().count(); }

  /// Every stream's checker learns of each mutation before anything is pulled.
  void mutated() {
    for (auto& s : streams_) {
      if (s) s->checker.after_mutation(model_);
    }
  }

  void do_insert(int k) {
    const uint32_t vid = next_vid_++;
    describe("insert(k" + std::to_string(k) + ", v" + std::to_string(vid) + ")");
    const uint64_t got = map_->insert(key_name(k), value_name(vid));
    const uint64_t want = model_.insert(k, vid, now());
    FUZZ_CHECK(got == want, [&] { return "insert returned " + std::to_string(got) + ", expected " + std::to_string(want); });
    mutated();
  }

  void do_remove(int k) {
    describe("remove(k" + std::to_string(k) + ")");
    const bool got = map_->remove(key_name(k));
    const bool want = model_.remove(k);
    FUZZ_CHECK(got == want, [&] { return std::string("remove returned ") + (got ? "true" : "false"); });
    mutated();
  }

  void do_get(int k) {
    describe("get(k" + std::to_string(k) + ")");
    check_get(k);
  }

  void do_get_all() {
    describe("get() of every key");
    for (int k = 0; k < setup_.keys; ++k) check_get(k);
  }

  /// 2 .. 17 mutations in a row (a sliding window of inserts with some removes), enough
  /// to overflow the small rings between two pulls.
  void do_burst() {
    const uint8_t arg = in_.byte();
    const int count = 2 + arg % 16;
    for (int i = 0; i < count; ++i) {
      const int k = (arg / 16 + i) % setup_.keys;
      if (i % 5 == 4) {
        do_remove((k + 1) % setup_.keys);
      } else {
        do_insert(k);
      }
      check_last_seq();
    }
    describe("burst of " + std::to_string(count));
  }

  /// With TTL: the clock moves, then run_pending_tasks() expires (and maybe publishes)
  /// every entry due. Without: run_pending_tasks() alone, which must change nothing.
  void do_advance() {
    const uint8_t arg = in_.byte();
    if (setup_.ttl) {
      static constexpr std::array<int64_t, 8> kSteps = {0, 1, 499, 500, 1000, 2000, 3000, 9000};  // ms
      const int64_t d = kSteps[arg % 8] * 1'000'000;
      describe("advance(" + std::to_string(d / 1'000'000) + " ms) + run_pending_tasks()");
      clock_->advance(Clock::duration(d));
    } else {
      describe("run_pending_tasks()");
    }
    const uint64_t before = map_->last_seq();
    map_->run_pending_tasks();
    const std::vector<int> expired = model_.expire(now());
    const uint64_t taken = setup_.options.publish_expirations ? expired.size() : 0;
    FUZZ_CHECK(map_->last_seq() == before + taken, [&] {
      return std::to_string(expired.size()) + " entries expired, last_seq() went from " + std::to_string(before) +
             " to " + std::to_string(map_->last_seq());
    });
    mutated();
  }

  // ---- Streams --------------------------------------------------------------------------

  /// Opens a stream in a slot: stream(), stream_n(0 .. 15), stream_from(a) for a consumer
  /// whose state is the log replayed to a, or stream_batches(1 .. 8); also the calls
  /// that must throw (stream_from beyond last_seq(), stream_batches(0)).
  void do_open() {
    const int slot = next_slot();
    const uint8_t kind = in_.byte();
    const uint8_t arg = in_.byte();
    const StreamChecker::Config& c = setup_.config;
    streams_[slot].reset();
    switch (kind % 4) {
      case 0: {
        describe("s" + std::to_string(slot) + " = stream()");
        auto stop = std::make_unique<std::stop_source>();
        const std::stop_token token = stop->get_token();
        streams_[slot].emplace(Stream{std::move(stop), "stream()", false, map_->stream(token), {}, {}, {},
                                      StreamChecker::history(model_, c, std::nullopt)});
        break;
      }
      case 1: {
        const size_t n = arg % 16;
        describe("s" + std::to_string(slot) + " = stream_n(" + std::to_string(n) + ")");
        auto stop = std::make_unique<std::stop_source>();
        const std::stop_token token = stop->get_token();
        streams_[slot].emplace(Stream{std::move(stop), "stream_n(" + std::to_string(n) + ")", false,
                                      map_->stream_n(n, token), {}, {}, {},
                                      StreamChecker::history(model_, c, n)});
        break;
      }
      case 2: open_from(slot, arg); break;
      default: {
        const size_t max = arg % 9;
        describe("s" + std::to_string(slot) + " = stream_batches(" + std::to_string(max) + ")");
        if (max == 0) {
          bool threw = false;
          try {
            (void)map_->stream_batches(0);
          } catch (const std::invalid_argument& e) {
            threw = std::string(e.what()).find("max_batch") != std::string::npos;
          }
          FUZZ_CHECK(threw, [] { return std::string("stream_batches(0) must throw std::invalid_argument naming max_batch"); });
          return;
        }
        auto stop = std::make_unique<std::stop_source>();
        const std::stop_token token = stop->get_token();
        streams_[slot].emplace(Stream{std::move(stop), "stream_batches(" + std::to_string(max) + ")", true, {}, {},
                                      map_->stream_batches(max, token), {},
                                      StreamChecker::history(model_, c, std::nullopt)});
        break;
      }
    }
  }

  void open_from(int slot, uint8_t arg) {
    const uint64_t first = model_.initial_seq();
    const uint64_t last = model_.last_seq();
    const uint64_t ring = setup_.config.ring;
    const std::array<uint64_t, 8> choices = {last, last > first ? last - 1 : last, last - std::min(last - first, ring),
                                             last - std::min(last - first, ring + 1), first,
                                             first + arg % (last - first + 1), last + 1, last + 1 + arg};
    const uint64_t a = choices[arg % 8];
    describe("s" + std::to_string(slot) + " = stream_from(" + std::to_string(a) + ")");
    if (a > last) {
      bool threw = false;
      try {
        (void)map_->stream_from(a);
      } catch (const std::invalid_argument&) {
        threw = true;
      }
      FUZZ_CHECK(threw, [] { return std::string("stream_from(a > last_seq()) must throw std::invalid_argument"); });
      return;
    }
    auto [at, state] = model_.state_at(a);  // `at` <= a: not inside an expiration group
    describe("s" + std::to_string(slot) + " = stream_from(" + std::to_string(at) + ")");
    auto stop = std::make_unique<std::stop_source>();
    const std::stop_token token = stop->get_token();
    streams_[slot].emplace(Stream{std::move(stop), "stream_from(" + std::to_string(at) + ")", false,
                                  map_->stream_from(at, token), {}, {}, {},
                                  StreamChecker::resume(model_, setup_.config, at, std::move(state))});
  }

  void do_destroy() {
    const int slot = next_slot();
    describe("destroy s" + std::to_string(slot));
    streams_[slot].reset();
  }

  /// A consumer reconnects: its stream is replaced by stream_from(where its state is
  /// exact), keeping its state (after LaggedError, a catch-up, or an exact live event).
  void do_resume() {
    const int slot = next_slot();
    if (!streams_[slot] || !streams_[slot]->checker.resume_point()) return describe("resume skipped");
    resume(slot);
  }

  void resume(int slot) {
    Stream& old = *streams_[slot];
    const uint64_t a = *old.checker.resume_point();
    describe("s" + std::to_string(slot) + " = stream_from(" + std::to_string(a) + "), resuming");
    StreamChecker::State state = old.checker.state();
    streams_[slot].reset();  // the old subscription goes first, as a reconnecting client's would
    auto stop = std::make_unique<std::stop_source>();
    const std::stop_token token = stop->get_token();
    streams_[slot].emplace(Stream{std::move(stop), "stream_from(" + std::to_string(a) + ")", false,
                                  map_->stream_from(a, token), {}, {}, {},
                                  StreamChecker::resume(model_, setup_.config, a, std::move(state))});
  }

  /// Pulls 1 .. 8 times from one stream, while the model guarantees an event.
  void do_pull() {
    const int slot = next_slot();
    const int count = 1 + in_.byte() % 8;
    describe("pull s" + std::to_string(slot) + " x" + std::to_string(count));
    if (!streams_[slot]) return;
    for (int i = 0; i < count && streams_[slot]->checker.can_pull(model_); ++i) pull(slot);
  }

  /// Writes one key (so that every stream must deliver last_seq()), pulls every stream
  /// (or the one the input names) up to it, resuming after LaggedError, and checks each
  /// consumer's state against the map.
  void do_catch_up() {
    const uint8_t arg = in_.byte();
    do_insert(arg % setup_.keys);
    const uint64_t target = model_.last_seq();
    for (int slot = 0; slot < kSlots; ++slot) {
      if ((arg & 0x80) != 0 && slot != (arg >> 4) % kSlots) continue;
      for (int guard = 0; streams_[slot] && !streams_[slot]->checker.done(); ++guard) {
        FUZZ_CHECK(guard < 100000, [] { return std::string("catch-up never ends"); });
        if (streams_[slot]->checker.delivered_top() >= target) break;
        FUZZ_CHECK(streams_[slot]->checker.can_pull(model_),
                   [&] { return "s" + std::to_string(slot) + " cannot reach seq " + std::to_string(target); });
        pull(slot);
        if (streams_[slot]->checker.done() && streams_[slot]->checker.resume_point()) resume(slot);
      }
      if (!streams_[slot] || streams_[slot]->checker.done()) continue;
      describe("catch up s" + std::to_string(slot) + " to " + std::to_string(target));
      check_consumer(slot);
      streams_[slot]->checker.set_resume_point(target);
    }
    describe("catch up to " + std::to_string(target));
  }

  /// One resume of the stream's generator: its events are checked and applied.
  void pull(int slot) {
    Stream& s = *streams_[slot];
    const std::string where = "s" + std::to_string(slot) + " " + s.name;
    bool ended = false;
    std::vector<const Ev*> got;
    watchdog_.arm(s.stop.get());
    try {
      if (s.batches) {
        if (!s.span_it) {
          s.span_it = s.spans.begin();
        } else {
          ++*s.span_it;
        }
        ended = *s.span_it == std::default_sentinel;
        if (!ended) {
          const std::span<const Ev> span = **s.span_it;
          FUZZ_CHECK(!span.empty() && span.size() <= max_batch(s.name),
                     [&] { return where + " yielded a span of " + std::to_string(span.size()) + " events"; });
          for (const Ev& e : span) got.push_back(&e);
        }
      } else {
        if (!s.it) {
          s.it = s.events.begin();
        } else {
          ++*s.it;
        }
        ended = *s.it == std::default_sentinel;
        if (!ended) got.push_back(&**s.it);
      }
    } catch (const LaggedError& e) {
      check_watchdog(where, s);
      trace_event(where, "LaggedError(" + std::to_string(e.last_delivered_seq()) + ")");
      const std::string error = s.checker.on_lagged(model_, e.last_delivered_seq());
      FUZZ_CHECK(error.empty(), [&] { return where + ": " + error; });
      return;
    }
    check_watchdog(where, s);
    if (ended) {
      trace_event(where, "end");
      const std::string error = s.checker.on_end();
      FUZZ_CHECK(error.empty(), [&] { return where + ": " + error; });
      return;
    }
    for (const Ev* e : got) on_event(slot, where, *e);
  }

  void check_watchdog(const std::string& where, const Stream& s) {
    FUZZ_CHECK(!watchdog_.disarm(), [&] {
      return where + " waited " + std::to_string(Watchdog::kLimit.count()) +
             " s for an event the model says must come (lost?)\n  stream: " + s.checker.describe();
    });
  }

  static size_t max_batch(const std::string& name) {  // "stream_batches(N)"
    return static_cast<size_t>(std::atoi(name.c_str() + name.find('(') + 1));
  }

  void on_event(int slot, const std::string& where, const Ev& e) {
    const bool carries = e.kind == EventKind::kSnapshot || e.kind == EventKind::kUpsert || e.kind == EventKind::kResync;
    const bool keyed = e.kind != EventKind::kReset && e.kind != EventKind::kSnapshotEnd;
    SeenEvent seen{e.seq, e.kind, keyed ? parse_key(e.key) : -1, e.value ? parse_vid(*e.value) : 0};
    trace_event(where, to_string(seen));
    FUZZ_CHECK(carries == (e.value != nullptr), [&] { return where + ": " + to_string(seen) + (carries ? " has no value" : " has a value"); });
    FUZZ_CHECK(keyed ? (seen.key >= 0 && seen.key < setup_.keys && e.key == key_name(seen.key)) : e.key.empty(),
               [&] { return where + ": " + to_string(seen) + " has the key '" + e.key + "'"; });
    if (carries) {
      FUZZ_CHECK(*e.value == value_name(seen.vid), [&] { return where + ": a corrupted value '" + *e.value + "'"; });
      check_pointer(seen.vid, e.value, where);
    }
    const std::string error = streams_[slot]->checker.on_event(model_, seen);
    FUZZ_CHECK(error.empty(), [&] {
      return where + ": " + to_string(seen) + ": " + error + "\n  stream: " + streams_[slot]->checker.describe();
    });
  }

  // ---- Checks ---------------------------------------------------------------------------

  /// get() returns the model's value, as the same shared_ptr the events carry.
  void check_get(int k) {
    const std::shared_ptr<const Value> got = map_->get(key_name(k));
    auto it = model_.entries().find(k);
    const bool want = it != model_.entries().end();
    FUZZ_CHECK(want == (got != nullptr) && (!got || *got == value_name(it->second.vid)), [&] {
      return "get(k" + std::to_string(k) + ") returned " + (got ? "'" + *got + "'" : std::string("null")) +
             ", expected " + (want ? "'" + value_name(it->second.vid) + "'" : std::string("null"));
    });
    if (got) check_pointer(it->second.vid, got, "get");
  }

  void check_pointer(uint32_t vid, const std::shared_ptr<const Value>& p, const std::string& where) {
    auto [it, first] = pointers_.emplace(vid, p);
    FUZZ_CHECK(first || it->second == p, [&] {
      return where + ": v" + std::to_string(vid) + " arrived in another shared_ptr than the map's";
    });
  }

  void check_consumer(int slot) {
    const std::string error = streams_[slot]->checker.check_state(model_);
    FUZZ_CHECK(error.empty(), [&] {
      return "s" + std::to_string(slot) + " " + streams_[slot]->name + " caught up to " +
             std::to_string(model_.last_seq()) + ": " + error + "\n  stream: " + streams_[slot]->checker.describe();
    });
    for (const auto& [k, e] : model_.entries()) check_get(k);
  }

  void check_last_seq() {
    FUZZ_CHECK(map_->last_seq() == model_.last_seq(), [&] {
      return "last_seq() " + std::to_string(map_->last_seq()) + ", expected " + std::to_string(model_.last_seq());
    });
    if (trace_) std::fprintf(stderr, "%4d %s [last_seq %llu]\n", steps_, description_.c_str(),
                             static_cast<unsigned long long>(model_.last_seq()));
  }

  /// The end of the input: everything caught up and checked; then the map is destroyed
  /// under its streams (or the streams first, as the input's last byte says), and each
  /// stream must end cleanly, showing nothing the rule forbids on the way.
  void finish() {
    ++steps_;
    model_.begin_op();
    const uint8_t arg = in_.byte();
    do_catch_up();
    check_last_seq();
    if (arg % 4 == 0) {
      describe("destroy every stream, then the map");
      for (auto& s : streams_) s.reset();
      map_.reset();
      return;
    }
    describe("destroy the map under its streams");
    map_.reset();
    for (int slot = 0; slot < kSlots; ++slot) {
      for (int guard = 0; streams_[slot] && !streams_[slot]->checker.done(); ++guard) {
        FUZZ_CHECK(guard < 100000, [] { return std::string("a stream did not end after the map was destroyed"); });
        Stream& s = *streams_[slot];
        bool ended = false;
        if (s.batches) {
          if (!s.span_it) {
            s.span_it = s.spans.begin();
          } else {
            ++*s.span_it;
          }
          ended = *s.span_it == std::default_sentinel;
        } else {
          if (!s.it) {
            s.it = s.events.begin();
          } else {
            ++*s.it;
          }
          ended = *s.it == std::default_sentinel;
          // Everything published was delivered by the catch-up; only the marker may remain.
          FUZZ_CHECK(ended || (*s.it)->kind == EventKind::kSnapshotEnd, [&] {
            return "s" + std::to_string(slot) + " delivered an event after the map was destroyed";
          });
        }
        if (ended) break;
      }
      streams_[slot].reset();
    }
  }

  // ---- Reporting ------------------------------------------------------------------------

  void describe(std::string d) { description_ = std::move(d); }

  void trace_event(const std::string& where, const std::string& what) {
    if (trace_) std::fprintf(stderr, "       %s -> %s\n", where.c_str(), what.c_str());
  }

  template <class Message>
  [[noreturn]] void fail(Message message) {
    std::fprintf(stderr, "\nstreaming_map_fuzzer: MISMATCH at step %d, %s:\n  %s\n", steps_, description_.c_str(),
                 message().c_str());
    std::fprintf(stderr, "  model: last_seq %llu, entries:", static_cast<unsigned long long>(model_.last_seq()));
    for (const auto& [k, e] : model_.entries()) {
      std::fprintf(stderr, " k%d=v%u@%llu", k, e.vid, static_cast<unsigned long long>(e.seq));
    }
    std::fprintf(stderr, "\n  replay with STREAMING_MAP_FUZZER_TRACE=1 for the whole sequence\n");
    std::abort();
  }

  Reader& in_;
  const bool trace_ = std::getenv("STREAMING_MAP_FUZZER_TRACE") != nullptr;
  const Setup setup_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  MapModel model_;
  uint32_t next_vid_ = 1;
  int steps_ = 0;
  std::string description_;
  std::map<uint32_t, std::shared_ptr<const Value>> pointers_;  // the first shared_ptr seen per value
  std::optional<Map> map_;
  std::array<std::optional<Stream>, kSlots> streams_;
  // One for the process (a thread per input would cost more than most inputs); idle
  // between pulls.
  Watchdog& watchdog_ = process_watchdog();
};

#undef FUZZ_CHECK

/// Invalid options must throw std::invalid_argument naming the option.
void check_invalid_options(uint8_t which) {
  StreamingMapOptions o;
  const char* name = "ring_capacity";
  switch (which % 4) {
    case 0: o.ring_capacity = 0; break;
    case 1: o.snapshot_batch = 0; name = "snapshot_batch"; break;
    case 2: o.time_to_live = std::chrono::seconds(-1); name = "time_to_live"; break;
    default: o.time_to_idle = std::chrono::nanoseconds(-1); name = "time_to_idle"; break;
  }
  bool named = false;
  try {
    streamcache::StreamingMap<Key, Value> map(o);
  } catch (const std::invalid_argument& e) {
    named = std::string(e.what()).find(name) != std::string::npos;
  }
  if (!named) {
    std::fprintf(stderr, "streaming_map_fuzzer: invalid %s did not throw std::invalid_argument naming it\n", name);
    std::abort();
  }
}

}  // namespace
}  // namespace streaming_map_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace streaming_map_fuzz;
  Reader in(data, size);
  const uint8_t ring = in.byte();
  const uint8_t batch = in.byte();
  const uint8_t flags = in.byte();
  const uint8_t shape = in.byte();
  if ((ring & 7) == 7) {
    check_invalid_options(static_cast<uint8_t>(ring >> 3));
    return 0;
  }
  static constexpr std::array<size_t, 7> kRings = {1, 2, 3, 4, 5, 8, 16};
  static constexpr std::array<size_t, 6> kBatches = {1, 2, 3, 5, 8, 1024};
  static constexpr std::array<uint64_t, 4> kInitial = {0, (uint64_t{1} << 32) - 12, 1000, (uint64_t{1} << 32) - 3};
  Setup setup;
  StreamingMapOptions& o = setup.options;
  o.ring_capacity = kRings[ring & 7];
  o.snapshot_batch = kBatches[batch % 6];
  o.lag = (flags & 1) ? LagPolicy::kError : LagPolicy::kResync;
  o.publish_removals = (flags & 2) == 0;
  o.publish_expirations = (flags & 4) != 0;
  o.mark_snapshot_end = (flags & 8) != 0;
  setup.ttl = (flags & 16) != 0;
  if (setup.ttl) o.time_to_live = std::chrono::seconds(1 + (shape >> 4) % 8);
  o.initial_seq = kInitial[flags >> 6];
  setup.keys = 1 + (shape & 15) % 12;
  o.mark_recovery_end = (shape & 0x80) != 0;
  setup.config = StreamChecker::Config{std::bit_ceil(o.ring_capacity), o.lag, o.mark_snapshot_end, o.mark_recovery_end};
  if (flags & 32) {
    Fuzz<uint32_t>(in, setup).run();
  } else {
    Fuzz<uint64_t>(in, setup).run();
  }
  return 0;
}
