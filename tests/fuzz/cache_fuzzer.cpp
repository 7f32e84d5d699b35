// Differential fuzzer for streamcache::Cache (libFuzzer): a byte string decodes to a
// cache configuration and a sequence of operations, applied both to a Cache on a
// ManualClock and to the reference model in cache_model.hpp. After every step the
// observable behaviour must agree: returned values, the listener's notifications and
// causes, the Expiry hooks' arguments, entry_count(), contains_key() for every key and
// the stats counters; after run_pending_tasks() and set_max_capacity() also "no expired
// entry left", the size bound and weighted_size(). Any disagreement prints the step and aborts.
//
// Input format (missing bytes read as 0):
//   byte 0  capacity: see decode_capacity() (set_max_capacity()'s argument byte too)
//   byte 1  bit 0 weigher, 1 time_to_live, 2 time_to_idle, 3 per-entry Expiry,
//           4 a listener that throws on every third call
//   byte 2  time_to_live = (b % 17) units; byte 3 time_to_idle likewise
//   byte 4  key space = 1 + b % 16 keys
//   byte 5  bits 0-2 the time unit (ns ... minutes), bits 3-7 the shard count
//   then steps: an opcode byte and its argument bytes (see Fuzz::step()); one opcode is a
//   burst of up to 512 get/insert steps over up to 16x the key space.
//
// Replay one input with a trace of every step: CACHE_FUZZER_TRACE=1 ./cache_fuzzer FILE
#include <streamcache/cache.hpp>
#include <streamcache/clock.hpp>

#include <absl/status/status.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cache_model.hpp"

namespace cache_fuzz {
namespace {

using Key = std::string;
using Value = std::string;
using FuzzCache = streamcache::Cache<Key, Value>;
using streamcache::Clock;
using streamcache::ManualClock;

// Keys and values are strings, half of them too long for the small-string buffer, so
// that ASan sees every copy, move and destruction of the cache's nodes. Every value is
// unique, so a notification names exactly one write.
std::string key_name(int k) {
  return k % 2 == 0 ? "k" + std::to_string(k) : "a-key-long-enough-for-the-heap-" + std::to_string(k);
}
std::string value_name(uint32_t vid) {
  return vid % 3 == 0 ? "v" + std::to_string(vid) + "-with-a-tail-long-enough-for-the-heap" : "v" + std::to_string(vid);
}
// A capacity byte: % 16 = 0 unbounded, 1 zero, n > 1 -> n - 1 (entries, or weight).
std::optional<uint64_t> decode_capacity(uint8_t b) {
  if (b % 16 == 0) return std::nullopt;
  return b % 16 - 1;
}

int parse_key(const std::string& s) {
  size_t i = s.size();
  while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9') --i;
  return std::atoi(s.c_str() + i);
}
uint32_t parse_vid(const std::string& s) {
  return static_cast<uint32_t>(std::strtoul(s.c_str() + 1, nullptr, 10));  // after the 'v'
}

struct LoaderError : std::runtime_error {
  LoaderError() : std::runtime_error("fuzz loader failed") {}
};

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

/// The Expiry the cache calls: records each call and answers from the Scenario, the
/// same pure functions the model uses.
class RecordingExpiry : public streamcache::Expiry<Key, Value> {
 public:
  RecordingExpiry(Scenario scenario, std::vector<HookCall>* calls) : scenario_(scenario), calls_(calls) {}

  std::optional<Clock::duration> expire_after_create(const Key& k, const Value& v, Clock::time_point now) override {
    calls_->push_back(HookCall{Hook::kCreate, parse_key(k), parse_vid(v), ns(now), std::nullopt});
    return to_duration(scenario_.after_create(parse_key(k), parse_vid(v), ns(now)));
  }
  std::optional<Clock::duration> expire_after_read(const Key& k, const Value& v, Clock::time_point now,
                                                   std::optional<Clock::duration> remaining) override {
    calls_->push_back(HookCall{Hook::kRead, parse_key(k), parse_vid(v), ns(now), count(remaining)});
    return to_duration(scenario_.after_read(parse_key(k), parse_vid(v), ns(now), count(remaining)));
  }
  std::optional<Clock::duration> expire_after_update(const Key& k, const Value& v, Clock::time_point now,
                                                     std::optional<Clock::duration> remaining) override {
    calls_->push_back(HookCall{Hook::kUpdate, parse_key(k), parse_vid(v), ns(now), count(remaining)});
    return to_duration(scenario_.after_update(parse_key(k), parse_vid(v), ns(now), count(remaining)));
  }

 private:
  static int64_t ns(Clock::time_point t) { return t.time_since_epoch().count(); }
  static std::optional<int64_t> count(std::optional<Clock::duration> d) {
    return d ? std::optional<int64_t>(d->count()) : std::nullopt;
  }
  static std::optional<Clock::duration> to_duration(std::optional<int64_t> d) {
    return d ? std::optional<Clock::duration>(Clock::duration(*d)) : std::nullopt;
  }

  Scenario scenario_;
  std::vector<HookCall>* calls_;
};

// The message is a lambda so that it is only built when the check fails.
#define FUZZ_CHECK(cond, message)  \
  do {                             \
    if (!(cond)) fail(message);    \
  } while (0)

class Fuzz {
 public:
  // The clock is kept below 2^62 ns (~146 years) so that no deadline arithmetic of the
  // model or the cache can overflow except on purpose (the saturating hooks).
  static constexpr int64_t kClockLimit = int64_t{1} << 62;
  static constexpr int kMaxSteps = 6000;  // bursts included: ~0.1 s at most under ASan

  explicit Fuzz(Reader& in) : in_(in) {
    const uint8_t cap = in_.byte();
    const uint8_t flags = in_.byte();
    const uint8_t ttl = in_.byte();
    const uint8_t tti = in_.byte();
    keys_ = 1 + in_.byte() % 16;
    const uint8_t tuning = in_.byte();

    static constexpr std::array<int64_t, 8> kUnits = {
        1'000'000, int64_t{1} << 20, 1'000, 1'000'000'000, 60'000'000'000, 1, int64_t{1} << 26, 1'000'000};
    scenario_.unit = kUnits[tuning & 7];
    // 0 is automatic; 3 (about one input in 32) is invalid and must make build() throw.
    static constexpr std::array<size_t, 7> kShards = {1, 2, 4, 0, 8, 256, 1};
    shards_ = (tuning >> 3) == 31 ? 3 : kShards[(tuning >> 3) % 7];

    ModelConfig mc;
    mc.capacity = decode_capacity(cap);
    mc.weigher = flags & 1;
    if (flags & 2) mc.ttl = (ttl % 17) * scenario_.unit;
    if (flags & 4) mc.tti = (tti % 17) * scenario_.unit;
    mc.expiry = flags & 8;
    listener_throws_ = flags & 16;
    model_.emplace(mc, scenario_, clock_->now().time_since_epoch().count());
  }

  void run() {
    if (!build()) return;
    while (!in_.done() && steps_ < kMaxSteps) step();
    finish();
  }

 private:
  // ---- Setup ----------------------------------------------------------------------------

  bool build() {
    const ModelConfig& mc = model_->config();
    auto b = FuzzCache::builder();
    b.clock(clock_).shards(shards_);
    if (mc.capacity) b.max_capacity(*mc.capacity);
    if (mc.ttl) b.time_to_live(Clock::duration(*mc.ttl));
    if (mc.tti) b.time_to_idle(Clock::duration(*mc.tti));
    if (mc.weigher) {
      b.weigher([s = scenario_](const Key& k, const Value& v) { return s.weight(parse_key(k), parse_vid(v)); });
    }
    if (mc.expiry) b.expiry(std::make_shared<RecordingExpiry>(scenario_, &hooks_));
    b.eviction_listener([this](const Key& k, const Value& v, streamcache::RemovalCause cause) { on_removal(k, v, cause); });
    if (shards_ == 3) {
      bool threw = false;
      try {
        b.build();
      } catch (const std::invalid_argument& e) {
        threw = std::string(e.what()).find("shards") != std::string::npos;
      }
      FUZZ_CHECK(threw, [] { return std::string("shards(3) must throw std::invalid_argument naming 'shards'"); });
      return false;
    }
    cache_.emplace(b.build());
    if (trace_) {
      std::fprintf(stderr, "config: capacity %s, weigher %d, ttl %s, tti %s, expiry %d, throwing listener %d, "
                   "keys %d, unit %lld ns, shards %zu\n",
                   mc.capacity ? std::to_string(*mc.capacity).c_str() : "unbounded", mc.weigher,
                   mc.ttl ? std::to_string(*mc.ttl).c_str() : "none", mc.tti ? std::to_string(*mc.tti).c_str() : "none",
                   mc.expiry, listener_throws_, keys_, static_cast<long long>(scenario_.unit), shards_);
    }
    return true;
  }

  void on_removal(const Key& k, const Value& v, streamcache::RemovalCause cause) {
    // The listener is never called under a shard lock: calling back must not deadlock
    // (a deadlock shows up as a libFuzzer timeout).
    (void)cache_->contains_key(k);
    FUZZ_CHECK(v == value_name(parse_vid(v)) && k == key_name(parse_key(k)),
               [&] { return "listener got a corrupted entry: key '" + k + "' value '" + v + "'"; });
    removals_.push_back(Removal{parse_key(k), parse_vid(v), cause});
    ++cause_counts_[static_cast<size_t>(cause)];
    ++notifications_;
    if (listener_throws_ && notifications_ % 3 == 0) throw std::runtime_error("fuzz listener throws");
  }

  // ---- Steps ----------------------------------------------------------------------------

  void step() {
    begin_step();
    const uint8_t op = in_.byte();
    switch (op % 20) {
      case 0: case 1: case 2: do_insert(next_key()); break;
      case 3: do_get_all(); break;
      case 4: do_compute(); break;
      case 5: case 6: case 7: do_get(next_key()); break;
      case 8: do_set_max_capacity(); break;
      case 9: do_get_with(); break;
      case 10: do_try_get_with(); break;
      case 11: do_optionally_get_with(); break;
      case 12: do_remove(/*invalidate=*/false); break;
      case 13: do_remove(/*invalidate=*/true); break;
      case 14: do_invalidate_if(); break;
      case 15: do_invalidate_all_or_for_each(); break;
      case 16: case 17: do_advance(); break;
      case 18: do_run_pending_tasks(); break;
      default: do_burst(); return;  // settles each of its steps
    }
    settle();
  }

  void begin_step() {
    ++steps_;
    removals_.clear();
    hooks_.clear();
  }

  int next_key() { return in_.byte() % keys_; }

  void do_insert(int k) {
    const uint32_t vid = next_vid_++;
    describe("insert(k" + std::to_string(k) + ", v" + std::to_string(vid) + ")");
    cache_->insert(key_name(k), value_name(vid));
    model_->insert(k, vid);
    ++writes_;
  }

  void do_get(int k) {
    describe("get(k" + std::to_string(k) + ")");
    const std::optional<Value> got = cache_->get(key_name(k));
    const std::optional<uint32_t> want = model_->get(k);
    check_value("get", got, want);
  }

  // The loaders: mode 0 fails (throws / error status / nullopt), mode 1 throws for
  // try_get_with, anything else loads a new value.
  void do_get_with() {
    const int k = next_key();
    const int mode = in_.byte() % 4;
    const uint32_t vid = next_vid_;
    describe("get_with(k" + std::to_string(k) + (mode == 0 ? ", throws)" : ", loads v" + std::to_string(vid) + ")"));
    bool ran = false;
    bool threw = false;
    std::optional<Value> got;
    try {
      got = cache_->get_with(key_name(k), [&]() -> Value {
        ran = true;
        if (mode == 0) throw LoaderError();
        return value_name(vid);
      });
    } catch (const LoaderError&) {
      threw = true;
    }
    after_load(k, vid, ran, /*failed=*/threw, mode == 0, got);
  }

  void do_try_get_with() {
    const int k = next_key();
    const int mode = in_.byte() % 4;
    const uint32_t vid = next_vid_;
    describe("try_get_with(k" + std::to_string(k) + (mode == 0 ? ", error)" : mode == 1 ? ", throws)" : ", loads v" + std::to_string(vid) + ")"));
    bool ran = false;
    bool failed = false;
    std::optional<Value> got;
    try {
      absl::StatusOr<Value> r = cache_->try_get_with(key_name(k), [&]() -> absl::StatusOr<Value> {
        ran = true;
        if (mode == 0) return absl::UnavailableError("fuzz loader error");
        if (mode == 1) throw LoaderError();
        return value_name(vid);
      });
      if (r.ok()) {
        got = *r;
      } else {
        FUZZ_CHECK(r.status().code() == absl::StatusCode::kUnavailable && mode == 0,
                   [&] { return "try_get_with returned an unexpected status: " + r.status().ToString(); });
        failed = true;
      }
    } catch (const LoaderError&) {
      FUZZ_CHECK(mode == 1, [] { return std::string("try_get_with threw although its loader did not"); });
      failed = true;
    }
    after_load(k, vid, ran, failed, mode <= 1, got);
  }

  void do_optionally_get_with() {
    const int k = next_key();
    const int mode = in_.byte() % 4;
    const uint32_t vid = next_vid_;
    describe("optionally_get_with(k" + std::to_string(k) + (mode == 0 ? ", nullopt)" : ", loads v" + std::to_string(vid) + ")"));
    bool ran = false;
    const std::optional<Value> got = cache_->optionally_get_with(key_name(k), [&]() -> std::optional<Value> {
      ran = true;
      if (mode == 0) return std::nullopt;
      return value_name(vid);
    });
    after_load(k, vid, ran, /*failed=*/!got, mode == 0, got);
  }

  // get_all() of 1-4 keys (repeats allowed). The loader, mode 0, throws; mode 1 leaves
  // out its even keys; mode 3 adds a pair for a key it was not given, if that key is not
  // live either. (A live one could be evicted by the call's own writes and then written
  // afresh within the step, which the step's reconciliation cannot tell from a
  // replacement.)
  void do_get_all() {
    const size_t n = 1 + in_.byte() % 4;
    std::vector<int> ks;
    std::vector<Key> names;
    for (size_t i = 0; i < n; ++i) {
      ks.push_back(next_key());
      names.push_back(key_name(ks.back()));
    }
    const int mode = in_.byte() % 4;
    const int extra = next_key();
    const bool extra_is_dead = !model_->peek(extra);
    std::string what = "get_all(";
    for (int k : ks) what += "k" + std::to_string(k) + " ";
    describe(what + (mode == 0 ? "throws)" : mode == 1 ? "leaves out even keys)" : mode == 3 ? "with extra k" + std::to_string(extra) + ")" : "loads)"));
    std::optional<std::vector<int>> asked;
    std::vector<std::pair<int, uint32_t>> returned;  // in the order the loader returned them
    bool threw = false;
    std::vector<std::optional<Value>> got;
    try {
      got = cache_->get_all(std::span<const Key>(names), [&](std::span<const Key> missing) {
        asked.emplace();
        for (const Key& m : missing) asked->push_back(parse_key(m));
        if (mode == 0) throw LoaderError();
        std::vector<std::pair<Key, Value>> out;
        const auto give = [&](int k) {
          returned.emplace_back(k, next_vid_);
          out.emplace_back(key_name(k), value_name(next_vid_++));
        };
        for (int k : *asked) {
          if (mode != 1 || k % 2 != 0) give(k);
        }
        if (mode == 3 && extra_is_dead && std::find(asked->begin(), asked->end(), extra) == asked->end()) give(extra);
        return out;
      });
    } catch (const LoaderError&) {
      threw = true;
    }
    // The model: every key's lookup in order; the first miss of each key is loaded.
    std::vector<std::optional<uint32_t>> want(n);
    std::vector<int> to_load;
    for (size_t i = 0; i < n; ++i) {
      want[i] = model_->get(ks[i]);
      if (!want[i] && std::find(to_load.begin(), to_load.end(), ks[i]) == to_load.end()) to_load.push_back(ks[i]);
    }
    FUZZ_CHECK(asked.has_value() == !to_load.empty(),
               [] { return std::string("get_all called its loader although every key was cached, or the reverse"); });
    FUZZ_CHECK(!asked || *asked == to_load, [] { return std::string("get_all's loader was not given exactly the missing keys"); });
    FUZZ_CHECK(threw == (mode == 0 && !to_load.empty()), [] { return std::string("get_all threw although its loader did not, or the reverse"); });
    const auto loaded = [&](int k) -> std::optional<uint32_t> {
      for (const auto& [rk, vid] : returned) {
        if (rk == k) return vid;
      }
      return std::nullopt;
    };
    for (int k : to_load) {
      if (threw || !loaded(k)) {
        model_->load_failed();
      } else {
        ++writes_;
        model_->load_succeeded(k, *loaded(k));
      }
    }
    if (threw) return;
    for (const auto& [k, vid] : returned) {
      if (std::find(to_load.begin(), to_load.end(), k) == to_load.end()) {
        ++writes_;
        model_->insert(k, vid);
      }
    }
    FUZZ_CHECK(got.size() == n, [] { return std::string("get_all returned a vector of the wrong size"); });
    for (size_t i = 0; i < n; ++i) check_value("get_all", got[i], want[i] ? want[i] : loaded(ks[i]));
  }

  /// The model's side of a load, and the checks common to the three loaders.
  void after_load(int k, uint32_t vid, bool ran, bool failed, bool should_fail, const std::optional<Value>& got) {
    const std::optional<uint32_t> hit = model_->get(k);  // the lookup that precedes a load
    if (hit) {
      FUZZ_CHECK(!ran, [] { return std::string("the loader ran although the key was cached"); });
      check_value("loader hit", got, hit);
      return;
    }
    FUZZ_CHECK(ran, [] { return std::string("the loader did not run although the key was absent or expired"); });
    if (should_fail) {
      FUZZ_CHECK(failed && !got, [] { return std::string("a failing loader's outcome was not passed on"); });
      model_->load_failed();
      return;
    }
    FUZZ_CHECK(!failed, [] { return std::string("a succeeding loader's value was not returned"); });
    check_value("loaded", got, vid);
    ++next_vid_;
    ++writes_;
    model_->load_succeeded(k, vid);
  }

  // compute(): mode 0 nop, 1 remove, 2 put, 3 the function throws, 4 upsert_with. In one
  // thread the function runs exactly once, on the live value.
  void do_compute() {
    const int k = next_key();
    const int mode = in_.byte() % 5;
    const uint32_t vid = next_vid_;
    static constexpr std::array<const char*, 5> kModes = {"nop", "remove", "put v", "throws", "upsert_with v"};
    describe(std::string(mode == 4 ? "upsert_with(k" : "compute(k") + std::to_string(k) + ", " + kModes[static_cast<size_t>(mode)] +
             (mode == 2 || mode == 4 ? std::to_string(vid) : "") + ")");
    const std::optional<uint32_t> live = model_->peek(k);
    int calls = 0;
    const auto saw = [&](const std::optional<Value>& current) {
      ++calls;
      check_value("compute's function got", current, live);
    };
    if (mode == 4) {
      const Value got = cache_->upsert_with(key_name(k), [&](const std::optional<Value>& current) {
        saw(current);
        return value_name(vid);
      });
      check_value("upsert_with", got, vid);
    } else {
      using Op = streamcache::ComputeOp<Value>;
      bool threw = false;
      std::optional<streamcache::ComputeResult<Value>> r;
      try {
        r = cache_->compute(key_name(k), [&](const std::optional<Value>& current) {
          saw(current);
          if (mode == 3) throw LoaderError();
          return mode == 0 ? Op::nop() : mode == 1 ? Op::remove() : Op::put(value_name(vid));
        });
      } catch (const LoaderError&) {
        threw = true;
      }
      FUZZ_CHECK(threw == (mode == 3), [] { return std::string("compute's function threw but compute did not, or the reverse"); });
      if (r) {
        using O = streamcache::ComputeOutcome;
        const O want = mode == 2 ? (live ? O::kReplaced : O::kInserted)
                       : live   ? (mode == 1 ? O::kRemoved : O::kUnchanged)
                                : O::kStillAbsent;
        FUZZ_CHECK(r->outcome == want, [&] { return "compute's outcome " + std::to_string(static_cast<int>(r->outcome)) +
                                                    ", expected " + std::to_string(static_cast<int>(want)); });
        check_value("compute", r->value, mode == 2 ? std::optional<uint32_t>(vid) : live);
      }
    }
    FUZZ_CHECK(calls == 1, [&] { return "compute's function ran " + std::to_string(calls) + " times in one thread"; });
    if (mode == 2 || mode == 4) {
      ++next_vid_;
      ++writes_;
      model_->insert(k, vid);
    } else if (mode == 1 && live) {
      model_->remove(k);
    }
  }

  void do_remove(bool invalidate) {
    const int k = next_key();
    describe((invalidate ? "invalidate(k" : "remove(k") + std::to_string(k) + ")");
    const std::optional<uint32_t> want = model_->remove(k);
    if (invalidate) {
      cache_->invalidate(key_name(k));
    } else {
      check_value("remove", cache_->remove(key_name(k)), want);
    }
  }

  void do_invalidate_if() {
    const uint8_t arg = in_.byte();
    const uint32_t m = 1 + arg % 4;
    const uint32_t r = (arg / 4) % m;
    describe("invalidate_if((key + vid) % " + std::to_string(m) + " == " + std::to_string(r) + ")");
    auto pred = [m, r](int k, uint32_t vid) { return (static_cast<uint32_t>(k) + vid) % m == r; };
    cache_->invalidate_if([&](const Key& k, const Value& v) { return pred(parse_key(k), parse_vid(v)); });
    model_->invalidate_if(pred);
  }

  void do_invalidate_all_or_for_each() {
    if (in_.byte() % 4 == 0) {
      describe("invalidate_all()");
      cache_->invalidate_all();
      model_->invalidate_all();
    } else {
      describe("for_each()");
      check_for_each();
    }
  }

  void do_advance() {
    // Steps around the time unit (TTLs are 0..16 units), and jumps across every level
    // of the timer wheel (2^20 ns buckets, 64 per level) up to its overflow list.
    // Entries 3..9 are in units; 1 is one nanosecond, 2 one unit less a nanosecond.
    static constexpr std::array<int64_t, 16> kSteps = {
        0, 1, 0, 1, 1, 2, 3, 5, 13, 64, int64_t{1} << 26, int64_t{1} << 32,
        int64_t{1} << 38, int64_t{1} << 44, int64_t{1} << 50, int64_t{1} << 57};
    const size_t i = in_.byte() % 16;
    int64_t d = kSteps[i];
    if (i == 2) d = scenario_.unit - 1;
    if (i >= 3 && i <= 9) d *= scenario_.unit;
    const int64_t now = clock_->now().time_since_epoch().count();
    if (d > kClockLimit - now) d = 0;
    describe("advance(" + std::to_string(d) + " ns)");
    clock_->advance(Clock::duration(d));
    model_->set_now(now + d);
  }

  /// A burst of get-then-insert-on-miss steps over more keys than the other steps use
  /// (up to 16x the key space), long enough for the eviction policy's sampling periods
  /// to end, so that its window adaptation runs: a recency-biased sliding window (which
  /// favours LRU) or a loop larger than the cache (which favours frequency).
  void do_burst() {
    const uint8_t arg = in_.byte();
    const int count = 32 * (1 + arg % 8);
    const int span = keys_ * (1 + (arg >> 3) % 16);
    const bool sliding = (arg & 0x80) == 0;
    for (int i = 0; i < count && steps_ < kMaxSteps; ++i) {
      const int k = sliding ? static_cast<int>((i / 3 + mix(static_cast<uint64_t>(i), 0, 0) % 3) % static_cast<uint64_t>(span))
                            : i % span;
      begin_step();
      do_get(k);
      settle(k);
      if (!model_->contains_key(k)) {
        begin_step();
        do_insert(k);
        settle(k);
      }
    }
    check_entry_count();
    check_contains_every_key();
  }

  void do_run_pending_tasks() {
    describe("run_pending_tasks()");
    cache_->run_pending_tasks();
  }

  // Evicts down to the new bound and delivers before it returns: checked as after
  // run_pending_tasks(). From now on the model judges writes and evictions by it.
  void do_set_max_capacity() {
    const std::optional<uint64_t> capacity = decode_capacity(in_.byte());
    describe("set_max_capacity(" + (capacity ? std::to_string(*capacity) : std::string("unbounded")) + ")");
    cache_->set_max_capacity(capacity.value_or(std::numeric_limits<uint64_t>::max()));
    model_->set_capacity(capacity);
    last_was_maintenance_ = true;
    FUZZ_CHECK(cache_->policy().max_capacity == capacity, [] { return std::string("policy().max_capacity is not the bound set"); });
  }

  // ---- Checks ---------------------------------------------------------------------------

  /// Matches this step's notifications against the model, then checks the state:
  /// entry_count() and contains_key() of every key, or (inside a burst, to keep it fast:
  /// entry_count() locks every shard) only contains_key(only_key).
  void settle(std::optional<int> only_key = std::nullopt) {
    std::vector<Removal> expected = model_->take_expected_removals();
    for (const Removal& r : removals_) {
      auto it = std::find(expected.begin(), expected.end(), r);
      if (it != expected.end()) {
        expected.erase(it);
        continue;
      }
      const std::string error = model_->accept_maintenance(r);
      FUZZ_CHECK(error.empty(), [&] { return error + "; this step should report " + list(expected); });
    }
    FUZZ_CHECK(expected.empty(), [&] { return "missing notifications " + list(expected); });

    const std::vector<HookCall> want_hooks = model_->take_expected_hooks();
    FUZZ_CHECK(hooks_ == want_hooks, [&] { return "Expiry calls " + list(hooks_) + ", expected " + list(want_hooks); });

    const auto& entries = model_->entries();
    if (only_key) {
      check_contains(*only_key);
    } else {
      check_entry_count();
      check_contains_every_key();
    }
    check_stats();

    if (last_was_maintenance_) {
      const std::string error = model_->check_after_maintenance();
      FUZZ_CHECK(error.empty(), [&] { return error; });
      FUZZ_CHECK(cache_->weighted_size() == model_->total_weight(), [&] {
        return "weighted_size() " + std::to_string(cache_->weighted_size()) + " after run_pending_tasks(), expected " +
               std::to_string(model_->total_weight());
      });
      check_for_each();
    }
    if (trace_) {
      std::fprintf(stderr, "%4d %-40s ->", steps_, description_.c_str());
      for (const Removal& r : removals_) std::fprintf(stderr, " %s", to_string(r).c_str());
      std::fprintf(stderr, "  [%zu entries, weight %llu]\n", entries.size(),
                   static_cast<unsigned long long>(model_->total_weight()));
    }
  }

  void check_entry_count() {
    FUZZ_CHECK(cache_->entry_count() == model_->entries().size(), [&] {
      return "entry_count() " + std::to_string(cache_->entry_count()) + ", expected " +
             std::to_string(model_->entries().size());
    });
  }

  void check_contains(int k) {
    FUZZ_CHECK(cache_->contains_key(key_name(k)) == model_->contains_key(k), [&] {
      return "contains_key(k" + std::to_string(k) + ") returned " + (model_->contains_key(k) ? "false" : "true") +
             ", the model says the opposite";
    });
  }

  /// The step key space, and every key a burst left behind.
  void check_contains_every_key() {
    for (int k = 0; k < keys_; ++k) check_contains(k);
    for (const auto& [k, e] : model_->entries()) {
      if (k >= keys_) check_contains(k);
    }
  }

  void check_stats() {
    const streamcache::CacheStats s = cache_->stats();
    auto show = [](const char* name, uint64_t got, uint64_t want) {
      return std::string(name) + " " + std::to_string(got) + ", expected " + std::to_string(want);
    };
    FUZZ_CHECK(s.hits == model_->hits(), [&] { return show("stats().hits", s.hits, model_->hits()); });
    FUZZ_CHECK(s.misses == model_->misses(), [&] { return show("stats().misses", s.misses, model_->misses()); });
    FUZZ_CHECK(s.load_successes == model_->load_successes(),
               [&] { return show("stats().load_successes", s.load_successes, model_->load_successes()); });
    FUZZ_CHECK(s.load_failures == model_->load_failures(),
               [&] { return show("stats().load_failures", s.load_failures, model_->load_failures()); });
    auto count = [&](streamcache::RemovalCause c) { return cause_counts_[static_cast<size_t>(c)]; };
    FUZZ_CHECK(s.evictions_expired == count(RemovalCause::kExpired),
               [&] { return show("stats().evictions_expired", s.evictions_expired, count(RemovalCause::kExpired)); });
    FUZZ_CHECK(s.evictions_size == count(RemovalCause::kSize),
               [&] { return show("stats().evictions_size", s.evictions_size, count(RemovalCause::kSize)); });
    FUZZ_CHECK(s.invalidations == count(RemovalCause::kExplicit),
               [&] { return show("stats().invalidations", s.invalidations, count(RemovalCause::kExplicit)); });
    FUZZ_CHECK(s.replacements == count(RemovalCause::kReplaced),
               [&] { return show("stats().replacements", s.replacements, count(RemovalCause::kReplaced)); });
  }

  void check_for_each() {
    std::map<int, uint32_t> seen;
    bool twice = false;
    cache_->for_each([&](const Key& k, const Value& v) { twice |= !seen.emplace(parse_key(k), parse_vid(v)).second; });
    std::map<int, uint32_t> live;
    for (const auto& [k, e] : model_->entries()) {
      if (!model_->expired(e)) live.emplace(k, e.vid);
    }
    FUZZ_CHECK(!twice && seen == live, [&] { return "for_each() saw " + show(seen) + ", expected " + show(live); });
  }

  void check_value(const char* what, const std::optional<Value>& got, std::optional<uint32_t> want) {
    FUZZ_CHECK(got.has_value() == want.has_value() && (!got || *got == value_name(*want)), [&] {
      return std::string(what) + " returned " + (got ? "'" + *got + "'" : std::string("nullopt")) + ", expected " +
             (want ? "'" + value_name(*want) + "'" : std::string("nullopt"));
    });
  }

  /// The end of the input: everything left must come out exactly once (conservation:
  /// every write is either still present or was reported once).
  void finish() {
    removals_.clear();
    hooks_.clear();
    describe("invalidate_all() at the end");
    cache_->invalidate_all();
    model_->invalidate_all();
    settle();
    removals_.clear();
    describe("run_pending_tasks() at the end");
    cache_->run_pending_tasks();
    settle();
    FUZZ_CHECK(cache_->entry_count() == 0 && model_->entries().empty(),
               [] { return std::string("entries left after invalidate_all()"); });
    FUZZ_CHECK(notifications_ == writes_, [&] {
      return std::to_string(writes_) + " values written but " + std::to_string(notifications_) + " notifications";
    });
  }

  // ---- Reporting ------------------------------------------------------------------------

  void describe(std::string d) {
    description_ = std::move(d);
    last_was_maintenance_ = description_.rfind("run_pending_tasks", 0) == 0;
  }

  template <class T>
  static std::string list(const std::vector<T>& xs) {
    std::string s = "[";
    for (const T& x : xs) s += (s.size() > 1 ? ", " : "") + to_string(x);
    return s + "]";
  }
  static std::string show(const std::map<int, uint32_t>& m) {
    std::string s = "{";
    for (const auto& [k, v] : m) s += (s.size() > 1 ? ", k" : "k") + std::to_string(k) + "=v" + std::to_string(v);
    return s + "}";
  }

  template <class Message>
  [[noreturn]] void fail(Message message) {
    std::fprintf(stderr, "\ncache_fuzzer: MISMATCH at step %d, %s:\n  %s\n", steps_, description_.c_str(),
                 message().c_str());
    std::fprintf(stderr, "  notifications this step: %s\n  model (now %lld):\n", list(removals_).c_str(),
                 static_cast<long long>(model_->now()));
    for (const auto& [k, e] : model_->entries()) {
      std::fprintf(stderr, "    k%d = v%u weight %u %s%s\n", k, e.vid, e.weight, model_->deadlines(e).c_str(),
                   model_->expired(e) ? " (expired)" : "");
    }
    std::fprintf(stderr, "  replay with CACHE_FUZZER_TRACE=1 for the whole sequence\n");
    std::abort();
  }

  Reader& in_;
  const bool trace_ = std::getenv("CACHE_FUZZER_TRACE") != nullptr;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  Scenario scenario_;
  size_t shards_ = 1;
  int keys_ = 1;
  bool listener_throws_ = false;
  std::optional<CacheModel> model_;
  std::vector<Removal> removals_;  // this step's notifications, in delivery order
  std::vector<HookCall> hooks_;    // this step's Expiry calls
  std::array<uint64_t, 4> cause_counts_{};
  uint64_t notifications_ = 0;
  uint64_t writes_ = 0;  // values offered to the cache (insert or successful load)
  uint32_t next_vid_ = 1;
  int steps_ = 0;
  std::string description_;
  bool last_was_maintenance_ = false;
  std::optional<FuzzCache> cache_;  // last: destroyed first, while the rest still lives
};

}  // namespace
}  // namespace cache_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cache_fuzz::Reader in(data, size);
  cache_fuzz::Fuzz fuzz(in);
  fuzz.run();
  return 0;
}
