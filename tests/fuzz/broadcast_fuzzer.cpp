// Differential fuzzer for streamcache::Broadcast (libFuzzer): a byte string decodes to
// ring options and a sequence of operations from one thread (publish, publish_batch, subscribe,
// subscribe_from, try_recv, recv, recv_for, recv_batch, drop or move a subscriber,
// close, destroy the Broadcast), applied both to a Broadcast and to the reference model
// in broadcast_model.hpp. Every receive must agree with the model exactly: status,
// sequence, the kLagged count, the value (each message names its sequence), what
// recv_batch appends; after every step published_cursor(), and next_seq() and
// missed_total() of every subscriber. Any disagreement prints the step and aborts.
//
// One thread never waits: a blocking receive is only made when the model says it
// returns at once, and a kBlock publish the model says would wait is skipped.
// Capacities are tiny (1 .. 16) so that lag and wrap-around happen all the time.
//
// Input format (missing bytes read as 0):
//   byte 0  bits 0-2 capacity: 1, 2, 3 (-> 4), 4, 5 (-> 8), 8, 16, or 7: invalid options
//           (bits 3-4 say which: capacity 0, capacity 2^40 + 1, bad overflow, bad wait)
//   byte 1  bit 0 Overflow::kBlock, bits 1-2 the WaitStrategy, bit 3 std::string values
//           (a slot guarded by a lock) instead of uint64_t (a seqlock slot)
//   then steps: an opcode byte and its argument bytes (see Fuzz::step()).
//
// Replay one input with a trace of every step: BROADCAST_FUZZER_TRACE=1 ./broadcast_fuzzer FILE
#include <streamcache/broadcast.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <type_traits>
#include <vector>

#include "broadcast_model.hpp"

namespace broadcast_fuzz {
namespace {

using streamcache::Broadcast;
using streamcache::BroadcastOptions;
using streamcache::Overflow;
using streamcache::Received;
using streamcache::Subscriber;
using streamcache::WaitStrategy;

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

// Each message names its sequence, so a message delivered for the wrong sequence (a
// stale or torn slot) is caught. Half of the strings are too long for the small-string
// buffer, so that ASan sees every copy and destruction of a slot's value.
template <class T>
T message(uint64_t seq) {
  if constexpr (std::is_same_v<T, uint64_t>) {
    return seq * 0x9E3779B97F4A7C15ULL;
  } else {
    return seq % 2 == 0 ? "m" + std::to_string(seq) : "m" + std::to_string(seq) + "-long-enough-for-the-heap";
  }
}

template <class T>
std::string show(const T& v) {
  if constexpr (std::is_same_v<T, uint64_t>) {
    return std::to_string(v);
  } else {
    return "'" + v + "'";
  }
}

// The message is a lambda so that it is only built when the check fails.
#define FUZZ_CHECK(cond, message)  \
  do {                             \
    if (!(cond)) fail(message);    \
  } while (0)

template <class T>
class Fuzz {
 public:
  static constexpr int kMaxSteps = 5000;
  static constexpr int kSlots = 6;

  Fuzz(Reader& in, BroadcastOptions options, uint64_t rounded_capacity)
      : in_(in), options_(options), model_(rounded_capacity, options.overflow == Overflow::kBlock) {}

  void run() {
    ring_.emplace(options_);
    if (trace_) {
      std::fprintf(stderr, "config: capacity %zu (-> %llu), %s, wait %d, %s values\n", options_.capacity,
                   static_cast<unsigned long long>(model_.capacity()), model_.blocks() ? "kBlock" : "kOverwrite",
                   static_cast<int>(options_.wait), std::is_same_v<T, uint64_t> ? "uint64_t" : "std::string");
    }
    while (!in_.done() && steps_ < kMaxSteps) step();
    finish();
  }

 private:
  // ---- Steps ----------------------------------------------------------------------------

  void step() {
    ++steps_;
    result_.clear();
    const uint8_t op = in_.byte();
    switch (op % 16) {
      case 0: case 1: case 2: do_publish(); break;
      case 3: do_subscribe(); break;
      case 4: do_subscribe_from(); break;
      case 5: case 6: case 7: do_try_recv(); break;
      case 8: do_recv(); break;
      case 9: case 10: do_recv_batch(); break;
      case 11: do_drop(); break;
      case 12: do_move(); break;
      case 13: do_recv_for_or_cancelled(); break;
      case 14: do_close(); break;
      default: do_destroy_or_noop(); break;
    }
    check_state();
  }

  int next_slot() { return in_.byte() % kSlots; }

  /// A slot holding a subscriber, nearest to the one the input names; -1 if none.
  int live_slot() {
    const int want = next_slot();
    for (int i = 0; i < kSlots; ++i) {
      const int s = (want + i) % kSlots;
      if (subs_[s]) return s;
    }
    return -1;
  }

  /// publish_batch() of `n` messages: one claim, the same result as n publishes.
  void do_publish_batch(uint64_t n) {
    if (!ring_) {
      describe("publish_batch() skipped: the Broadcast was destroyed");
      return;
    }
    if (n > model_.capacity()) {
      describe("publish_batch(" + std::to_string(n) + " messages) beyond the capacity");
      bool threw = false;
      const std::vector<T> values(n, message<T>(1));
      try {
        ring_->publish_batch(values);
      } catch (const std::invalid_argument&) {
        threw = true;
      }
      FUZZ_CHECK(threw, [] { return std::string("publish_batch() beyond the capacity did not throw std::invalid_argument"); });
      return;
    }
    if (model_.publish_would_block(n)) {
      describe("publish_batch() skipped: kBlock would wait for a subscriber");
      return;
    }
    const uint64_t first = model_.published() + 1;
    describe("publish_batch(messages " + std::to_string(first) + " .. " + std::to_string(first + n - 1) + ")");
    std::vector<T> values;
    for (uint64_t k = 0; k < n; ++k) values.push_back(message<T>(first + k));
    std::optional<uint64_t> got;
    bool threw_logic = false;
    try {
      got = ring_->publish_batch(values);
    } catch (const std::logic_error&) {
      threw_logic = true;
    }
    std::optional<uint64_t> want = model_.publish();  // nullopt: closed, must throw
    if (!want) {
      FUZZ_CHECK(threw_logic, [] { return std::string("publish_batch() after close() did not throw std::logic_error"); });
      return;
    }
    for (uint64_t k = 1; k < n; ++k) model_.publish();
    FUZZ_CHECK(!threw_logic && got == want, [&] {
      return "publish_batch() returned " + (got ? std::to_string(*got) : std::string("a logic_error")) +
             ", expected " + std::to_string(*want);
    });
  }

  /// Publishes 1 .. 8 messages (bursts make lag frequent); with the argument's high bit
  /// set, as one publish_batch().
  void do_publish() {
    const uint8_t arg = in_.byte();
    const int count = 1 + arg % 8;
    if ((arg & 0x80) != 0) {
      do_publish_batch(static_cast<uint64_t>(count));
      return;
    }
    for (int i = 0; i < count; ++i) {
      if (!ring_) {
        describe("publish() skipped: the Broadcast was destroyed");
        return;
      }
      if (model_.publish_would_block()) {
        describe("publish() skipped: kBlock would wait for a subscriber");
        return;
      }
      const uint64_t seq = model_.published() + 1;
      describe("publish(message " + std::to_string(seq) + ")");
      std::optional<uint64_t> got;
      bool threw_logic = false;
      try {
        got = ring_->publish(message<T>(seq));
      } catch (const std::logic_error&) {
        threw_logic = true;
      }
      const std::optional<uint64_t> want = model_.publish();  // nullopt: closed, must throw
      if (!want) {
        FUZZ_CHECK(threw_logic, [] { return std::string("publish() after close() did not throw std::logic_error"); });
        return;
      }
      FUZZ_CHECK(!threw_logic && got == want, [&] {
        return "publish() returned " + (got ? std::to_string(*got) : std::string("a logic_error")) + ", expected " +
               std::to_string(*want);
      });
    }
  }

  void do_subscribe() {
    const int slot = next_slot();
    if (!ring_) return describe("subscribe() skipped: the Broadcast was destroyed");
    describe("s" + std::to_string(slot) + " = subscribe()");
    subs_[slot].reset();
    subs_[slot].emplace(ring_->subscribe());
    model_.subscribe(slot);
  }

  /// subscribe_from() at the interesting places: 0, 1, around the oldest message held,
  /// the newest, one past it (valid) and two past it (must throw).
  void do_subscribe_from() {
    const int slot = next_slot();
    const uint8_t arg = in_.byte();
    if (!ring_) return describe("subscribe_from() skipped: the Broadcast was destroyed");
    const uint64_t p = model_.published();
    const uint64_t oldest = model_.oldest_held();
    const std::array<uint64_t, 8> choices = {0, 1, oldest > 1 ? oldest - 1 : 0, oldest, p, p + 1, p + 2,
                                             arg % (p + 2)};
    const uint64_t seq = choices[arg % 8];
    describe("s" + std::to_string(slot) + " = subscribe_from(" + std::to_string(seq) + ")");
    std::optional<Subscriber<T>> sub;
    bool threw = false;
    try {
      sub.emplace(ring_->subscribe_from(seq));
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    const bool valid = seq <= p + 1;
    FUZZ_CHECK(threw != valid, [&] {
      return std::string("subscribe_from(") + std::to_string(seq) + ") with published_cursor() " + std::to_string(p) +
             (valid ? " threw" : " did not throw std::invalid_argument");
    });
    if (!valid) return;
    subs_[slot].reset();
    subs_[slot] = std::move(sub);
    model_.subscribe_from(slot, seq);
  }

  /// try_recv() 1 .. 4 times.
  void do_try_recv() {
    const int slot = live_slot();
    const int count = 1 + in_.byte() % 4;
    if (slot < 0) return describe("try_recv() skipped: no subscriber");
    for (int i = 0; i < count; ++i) {
      describe("s" + std::to_string(slot) + ".try_recv()");
      check_received(subs_[slot]->try_recv(), model_.try_recv(slot));
    }
  }

  void do_recv() {
    const int slot = live_slot();
    if (slot < 0) return describe("recv() skipped: no subscriber");
    if (!model_.ready(slot)) return describe("recv() skipped: it would wait");
    describe("s" + std::to_string(slot) + ".recv()");
    check_received(subs_[slot]->recv(), model_.try_recv(slot));
  }

  /// recv_for() with a zero timeout, or recv() with a stop already requested: a receive
  /// that would wait reports kTimeout / kCancelled; anything else as try_recv().
  void do_recv_for_or_cancelled() {
    const int slot = live_slot();
    const bool cancelled = in_.byte() % 2 == 1;
    if (slot < 0) return describe("recv_for() skipped: no subscriber");
    const bool waits = !model_.ready(slot);
    Received<T> got;
    if (cancelled) {
      describe("s" + std::to_string(slot) + ".recv(stopped token)");
      std::stop_source stop;
      stop.request_stop();
      got = subs_[slot]->recv(stop.get_token());
    } else {
      describe("s" + std::to_string(slot) + ".recv_for(0)");
      got = subs_[slot]->recv_for(std::chrono::nanoseconds(0));
    }
    if (waits) {
      const uint64_t next = model_.subscribers().at(slot).next;
      check_received(got, Outcome{cancelled ? RecvStatus::kCancelled : RecvStatus::kTimeout, next, 0});
    } else {
      check_received(got, model_.try_recv(slot));
    }
  }

  /// recv_batch(out, max) with max 0 .. 7 into a vector that already holds 0 .. 2
  /// elements (it must append).
  void do_recv_batch() {
    const int slot = live_slot();
    const uint8_t arg = in_.byte();
    if (slot < 0) return describe("recv_batch() skipped: no subscriber");
    const size_t max = arg % 8;
    if (max != 0 && !model_.ready(slot)) return describe("recv_batch() skipped: it would wait");
    std::vector<T> out;
    const size_t prefix = (arg >> 3) % 3;
    for (size_t i = 0; i < prefix; ++i) out.push_back(message<T>(1000000 + i));
    describe("s" + std::to_string(slot) + ".recv_batch(max " + std::to_string(max) + ")");
    const size_t n = subs_[slot]->recv_batch(out, max);
    const std::vector<uint64_t> want = model_.recv_batch(slot, max);
    result_ = " appended " + std::to_string(n);
    FUZZ_CHECK(n == want.size() && out.size() == prefix + n, [&] {
      return "recv_batch returned " + std::to_string(n) + " and left " + std::to_string(out.size()) +
             " elements, expected " + std::to_string(want.size()) + " appended to " + std::to_string(prefix) +
             (want.empty() ? std::string() : " (sequences " + std::to_string(want.front()) + ".." +
                                                  std::to_string(want.back()) + ")");
    });
    for (size_t i = 0; i < prefix; ++i) {
      FUZZ_CHECK(out[i] == message<T>(1000000 + i), [] { return std::string("recv_batch changed what out held"); });
    }
    for (size_t i = 0; i < n; ++i) {
      FUZZ_CHECK(out[prefix + i] == message<T>(want[i]), [&] {
        return "recv_batch element " + std::to_string(i) + " is " + show(out[prefix + i]) + ", expected message " +
               std::to_string(want[i]) + " " + show(message<T>(want[i]));
      });
    }
  }

  void do_drop() {
    const int slot = live_slot();
    if (slot < 0) return describe("drop skipped: no subscriber");
    describe("drop s" + std::to_string(slot));
    subs_[slot].reset();
    model_.drop(slot);
  }

  /// Move-assigns (or move-constructs) one subscriber into another slot.
  void do_move() {
    const int from = live_slot();
    const int to = next_slot();
    if (from < 0 || from == to) return describe("move skipped");
    describe("s" + std::to_string(to) + " = std::move(s" + std::to_string(from) + ")");
    if (subs_[to]) {
      *subs_[to] = std::move(*subs_[from]);
    } else {
      subs_[to].emplace(std::move(*subs_[from]));
    }
    subs_[from].reset();  // a moved-from Subscriber's state is unspecified: only destroy it
    model_.move(from, to);
  }

  void do_close() {
    if (!ring_) return describe("close() skipped: the Broadcast was destroyed");
    describe("close()");
    ring_->close();
    model_.close();
  }

  /// Rarely: destroys the Broadcast; its live subscribers drain what is held, then
  /// report kClosed.
  void do_destroy_or_noop() {
    if (in_.byte() % 8 != 0 || !ring_) return describe("no-op");
    describe("destroy the Broadcast");
    ring_.reset();
    model_.close();
  }

  // ---- Checks ---------------------------------------------------------------------------

  void check_received(const Received<T>& got, const Outcome& want) {
    const Outcome seen{got.status, got.seq, got.missed};
    result_ += " " + to_string(seen);
    FUZZ_CHECK(seen == want, [&] { return "got " + to_string(seen) + ", expected " + to_string(want); });
    if (want.status == RecvStatus::kOk) {
      FUZZ_CHECK(got.value && *got.value == message<T>(want.seq), [&] {
        return "message " + std::to_string(want.seq) + " carries " + (got.value ? show(*got.value) : "no value") +
               ", expected " + show(message<T>(want.seq));
      });
    } else {
      FUZZ_CHECK(!got.value, [] { return std::string("a value with a status other than kOk"); });
    }
  }

  void check_state() {
    if (ring_) {
      FUZZ_CHECK(ring_->published_cursor() == model_.published(), [&] {
        return "published_cursor() " + std::to_string(ring_->published_cursor()) + ", expected " +
               std::to_string(model_.published());
      });
    }
    for (const auto& entry : model_.subscribers()) {
      const int slot = entry.first;
      const SubscriberModel& s = entry.second;
      const Subscriber<T>& sub = *subs_[slot];
      FUZZ_CHECK(sub.next_seq() == s.next && sub.missed_total() == s.missed_total, [&] {
        return "s" + std::to_string(slot) + ": next_seq() " + std::to_string(sub.next_seq()) + ", missed_total() " +
               std::to_string(sub.missed_total()) + "; expected " + std::to_string(s.next) + ", " +
               std::to_string(s.missed_total);
      });
    }
    if (trace_) {
      std::fprintf(stderr, "%4d %-30s ->%-40s [published %llu%s]\n", steps_, description_.c_str(), result_.c_str(),
                   static_cast<unsigned long long>(model_.published()), model_.closed() ? ", closed" : "");
    }
  }

  /// The end of the input: close, then every subscriber drains to kClosed, through
  /// recv_batch or try_recv as the input's last byte says.
  void finish() {
    ++steps_;
    if (ring_) {
      ring_->close();
      model_.close();
    }
    const bool batches = in_.byte() % 2 == 1;
    for (int slot = 0; slot < kSlots; ++slot) {
      if (!subs_[slot]) continue;
      for (int guard = 0;; ++guard) {
        result_.clear();
        FUZZ_CHECK(guard < 100000, [] { return std::string("a subscriber never reached kClosed"); });
        if (batches) {
          describe("s" + std::to_string(slot) + ".recv_batch(4) at the end");
          std::vector<T> out;
          const size_t n = subs_[slot]->recv_batch(out, 4);
          const std::vector<uint64_t> want = model_.recv_batch(slot, 4);
          FUZZ_CHECK(n == want.size() && out.size() == n, [&] {
            return "recv_batch returned " + std::to_string(n) + ", expected " + std::to_string(want.size());
          });
          for (size_t i = 0; i < n; ++i) {
            FUZZ_CHECK(out[i] == message<T>(want[i]), [&] { return "recv_batch element " + show(out[i]); });
          }
          if (n == 0) break;
        } else {
          describe("s" + std::to_string(slot) + ".try_recv() at the end");
          const Outcome want = model_.try_recv(slot);
          check_received(subs_[slot]->try_recv(), want);
          if (want.status == RecvStatus::kClosed) break;
        }
        check_state();
      }
    }
  }

  // ---- Reporting ------------------------------------------------------------------------

  void describe(std::string d) { description_ = std::move(d); }

  template <class Message>
  [[noreturn]] void fail(Message message_text) {
    std::fprintf(stderr, "\nbroadcast_fuzzer: MISMATCH at step %d, %s:\n  %s\n", steps_, description_.c_str(),
                 message_text().c_str());
    std::fprintf(stderr, "  model: capacity %llu, %s, published %llu, oldest held %llu%s\n",
                 static_cast<unsigned long long>(model_.capacity()), model_.blocks() ? "kBlock" : "kOverwrite",
                 static_cast<unsigned long long>(model_.published()),
                 static_cast<unsigned long long>(model_.oldest_held()), model_.closed() ? ", closed" : "");
    for (const auto& [slot, s] : model_.subscribers()) {
      std::fprintf(stderr, "    s%d: next %llu, missed %llu, pending %llu%s\n", slot,
                   static_cast<unsigned long long>(s.next), static_cast<unsigned long long>(s.missed_total),
                   static_cast<unsigned long long>(s.pending_missed), s.born_closed ? ", born closed" : "");
    }
    std::fprintf(stderr, "  replay with BROADCAST_FUZZER_TRACE=1 for the whole sequence\n");
    std::abort();
  }

  Reader& in_;
  const bool trace_ = std::getenv("BROADCAST_FUZZER_TRACE") != nullptr;
  const BroadcastOptions options_;
  BroadcastModel model_;
  int steps_ = 0;
  std::string description_;
  std::string result_;  // what this step's receives returned, for the trace
  std::optional<Broadcast<T>> ring_;
  // Last: destroyed first. Some outlive ring_ on purpose (do_destroy_or_noop).
  std::array<std::optional<Subscriber<T>>, kSlots> subs_;
};

#undef FUZZ_CHECK

/// Invalid options must throw std::invalid_argument naming the option.
void check_invalid_options(uint8_t which) {
  BroadcastOptions o;
  const char* name = "capacity";
  switch (which % 4) {
    case 0: o.capacity = 0; break;
    case 1: o.capacity = (size_t{1} << 40) + 1; break;
    case 2: o.overflow = static_cast<Overflow>(7); name = "overflow"; break;
    default: o.wait = static_cast<WaitStrategy>(9); name = "wait"; break;
  }
  bool named = false;
  try {
    Broadcast<uint64_t> b(o);
  } catch (const std::invalid_argument& e) {
    named = std::string(e.what()).find(name) != std::string::npos;
  }
  if (!named) {
    std::fprintf(stderr, "broadcast_fuzzer: invalid option %s did not throw std::invalid_argument naming it\n", name);
    std::abort();
  }
}

}  // namespace
}  // namespace broadcast_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace broadcast_fuzz;
  Reader in(data, size);
  const uint8_t shape = in.byte();
  const uint8_t flags = in.byte();
  if ((shape & 7) == 7) {
    check_invalid_options(static_cast<uint8_t>(shape >> 3));
    return 0;
  }
  static constexpr std::array<size_t, 7> kCapacities = {1, 2, 3, 4, 5, 8, 16};
  BroadcastOptions options;
  options.capacity = kCapacities[shape & 7];
  options.overflow = (flags & 1) ? Overflow::kBlock : Overflow::kOverwrite;
  static constexpr std::array<WaitStrategy, 4> kWaits = {WaitStrategy::kBlocking, WaitStrategy::kYield,
                                                         WaitStrategy::kSpin, WaitStrategy::kBlocking};
  options.wait = kWaits[(flags >> 1) & 3];
  const uint64_t rounded = std::bit_ceil(options.capacity);
  if (flags & 8) {
    Fuzz<std::string>(in, options, rounded).run();
  } else {
    Fuzz<uint64_t>(in, options, rounded).run();
  }
  return 0;
}
