// A reference model of streamcache::Broadcast for the differential fuzzer, used from one
// thread, written for clarity rather than speed.
//
// With one thread the ring's behaviour is a pure function of the operations (API.md,
// section Broadcast):
//  - publish number P gets sequence P; the ring holds the last `capacity` of them,
//    sequences max(1, P - capacity + 1) .. P;
//  - a subscriber at `next` receives `next` while the ring holds it; when `next` was
//    overwritten (kOverwrite), it gets kLagged with missed = target - next and continues
//    at target = the oldest sequence still held (and at least next + 1);
//  - kBlock never overwrites: a publish that would overwrite a live subscriber's next
//    message waits (the model predicts it, the fuzzer skips that publish, since one
//    thread would wait forever); subscribe_from() behind the window starts at the oldest
//    held message and reports the gap as one kLagged first;
//  - close(): subscribers drain what is held, then kClosed; a subscriber created after
//    close() reports kClosed at once.
#pragma once

#include <streamcache/broadcast.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace broadcast_fuzz {

using streamcache::RecvStatus;

inline const char* status_name(RecvStatus s) {
  switch (s) {
    case RecvStatus::kOk: return "kOk";
    case RecvStatus::kEmpty: return "kEmpty";
    case RecvStatus::kLagged: return "kLagged";
    case RecvStatus::kClosed: return "kClosed";
    case RecvStatus::kTimeout: return "kTimeout";
    case RecvStatus::kCancelled: return "kCancelled";
  }
  return "?";
}

/// One receive's observable outcome, without the value (the fuzzer checks the value
/// against the sequence it names).
struct Outcome {
  RecvStatus status;
  uint64_t seq;
  uint64_t missed;
  bool operator==(const Outcome&) const = default;
};

inline std::string to_string(const Outcome& o) {
  return std::string(status_name(o.status)) + "(seq " + std::to_string(o.seq) + ", missed " + std::to_string(o.missed) +
         ")";
}

struct SubscriberModel {
  uint64_t next = 1;            // next_seq()
  uint64_t missed_total = 0;    // missed_total(), pending included
  uint64_t pending_missed = 0;  // kBlock subscribe_from() behind the window: one kLagged first
  bool born_closed = false;     // subscribed after close(): kClosed at once
};

class BroadcastModel {
 public:
  BroadcastModel(uint64_t capacity, bool block) : capacity_(capacity), block_(block) {}

  uint64_t capacity() const { return capacity_; }
  bool blocks() const { return block_; }
  uint64_t published() const { return published_; }
  bool closed() const { return closed_; }
  const std::map<int, SubscriberModel>& subscribers() const { return subs_; }

  /// The oldest sequence the ring still holds (published_ + 1 when none is).
  uint64_t oldest_held() const { return published_ >= capacity_ ? published_ - capacity_ + 1 : 1; }

  // ---- Producer side ----------------------------------------------------------------

  /// kBlock: the next publish would overwrite the message a live subscriber reads next,
  /// so it waits (with one thread, forever).
  /// True when publishing `n` more messages (one publish_batch) would wait under kBlock.
  bool publish_would_block(uint64_t n = 1) const {
    if (!block_ || closed_) return false;
    const uint64_t seq = published_ + n;  // the batch's last message
    if (seq <= capacity_) return false;
    for (const auto& [slot, s] : subs_) {
      if (!s.born_closed && s.next <= seq - capacity_) return true;
    }
    return false;
  }

  /// The sequence publish() returns, or nullopt when it must throw std::logic_error.
  std::optional<uint64_t> publish() {
    if (closed_) return std::nullopt;
    return ++published_;
  }

  void close() { closed_ = true; }

  // ---- Subscribing ------------------------------------------------------------------

  void subscribe(int slot) { subscribe_at(slot, published_ + 1); }

  /// False when subscribe_from(seq) must throw std::invalid_argument.
  bool subscribe_from(int slot, uint64_t seq) {
    if (seq > published_ + 1) return false;
    subscribe_at(slot, seq == 0 ? 1 : seq);
    return true;
  }

  void drop(int slot) { subs_.erase(slot); }

  /// Move-assigns the subscriber in `from` to `to` (dropping what `to` held); `from` is
  /// then gone.
  void move(int from, int to) {
    SubscriberModel s = subs_.at(from);
    subs_.erase(from);
    subs_[to] = s;
  }

  // ---- Receiving --------------------------------------------------------------------

  /// try_recv(): never waits.
  Outcome try_recv(int slot) {
    SubscriberModel& s = subs_.at(slot);
    if (s.pending_missed != 0) {
      const uint64_t missed = s.pending_missed;
      s.pending_missed = 0;
      return {RecvStatus::kLagged, s.next, missed};
    }
    if (s.born_closed) return {RecvStatus::kClosed, s.next, 0};
    if (s.next <= published_) {
      if (s.next < oldest_held()) {
        const uint64_t from = s.next;
        s.next = std::max(from + 1, oldest_held());
        s.missed_total += s.next - from;
        return {RecvStatus::kLagged, s.next, s.next - from};
      }
      return {RecvStatus::kOk, s.next++, 0};
    }
    return {closed_ ? RecvStatus::kClosed : RecvStatus::kEmpty, s.next, 0};
  }

  /// A blocking receive (recv, recv_batch) returns without waiting: a lag report, a
  /// message, or the end of a closed ring is there.
  bool ready(int slot) const {
    const SubscriberModel& s = subs_.at(slot);
    return s.pending_missed != 0 || s.born_closed || closed_ || s.next <= published_;
  }

  /// recv_batch(out, max) when ready() (or max == 0): the sequences it appends, one
  /// contiguous run; lag before the run is skipped and counted in missed_total.
  std::vector<uint64_t> recv_batch(int slot, size_t max) {
    std::vector<uint64_t> run;
    if (max == 0) return run;
    SubscriberModel& s = subs_.at(slot);
    s.pending_missed = 0;  // already in missed_total
    if (s.born_closed) return run;
    if (s.next <= published_ && s.next < oldest_held()) {
      const uint64_t from = s.next;
      s.next = std::max(from + 1, oldest_held());
      s.missed_total += s.next - from;
    }
    while (run.size() < max && s.next <= published_) run.push_back(s.next++);
    return run;
  }

 private:
  void subscribe_at(int slot, uint64_t from) {
    SubscriberModel s;
    s.next = from;
    s.born_closed = closed_;
    if (block_ && !closed_ && from < oldest_held()) {
      // kBlock: producers may already be overwriting `from`; it starts at the oldest
      // message held and reports the rest as lag.
      s.next = oldest_held();
      s.pending_missed = s.next - from;
      s.missed_total = s.pending_missed;
    }
    subs_[slot] = s;
  }

  const uint64_t capacity_;  // rounded up to a power of two
  const bool block_;
  uint64_t published_ = 0;
  bool closed_ = false;
  std::map<int, SubscriberModel> subs_;  // by the fuzzer's slot
};

}  // namespace broadcast_fuzz
