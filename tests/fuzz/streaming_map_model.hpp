// A reference model of streamcache::StreamingMap for the differential fuzzer, used from
// one thread: the map's state, the log of published mutations by sequence, and a checker
// per stream that holds each event against the history + live rule (API.md, section
// StreamingMap; docs/design.md, "The StreamingMap").
//
// What one thread makes exact, and what stays the map's choice:
//  - every insert, published remove and published expiration takes the next sequence;
//    the model knows each one's key and value, except the order in which one
//    run_pending_tasks() publishes several expirations (the timer wheel's order): those
//    sequences form a group whose keys are known, and the first stream that shows one
//    pins it;
//  - a stream's cutoff is last_seq() when it is made; its history is the state at the
//    cutoff, except that a key mutated after the cutoff may be left out (the pass had not
//    reached it yet) and then comes live;
//  - a stream can only lag (kResync, kReset, LaggedError) once the ring may have overwritten
//    what it had not read: last_seq() ran more than the ring's capacity past the last
//    sequence it delivered. Without that, its live events are exactly cutoff + 1, + 2, ...
//  - after lag the recovered events are checked for order and against the log, and the
//    consumer's rebuilt state against the map once it has caught up (Fuzz::catch_up).
#pragma once

#include <streamcache/streaming_map_types.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace streaming_map_fuzz {

using streamcache::EventKind;
using streamcache::LagPolicy;

inline const char* kind_name(EventKind k) {
  switch (k) {
    case EventKind::kSnapshot: return "kSnapshot";
    case EventKind::kUpsert: return "kUpsert";
    case EventKind::kRemove: return "kRemove";
    case EventKind::kResync: return "kResync";
    case EventKind::kReset: return "kReset";
    case EventKind::kSnapshotEnd: return "kSnapshotEnd";
  }
  return "?";
}

/// One event as the fuzzer saw it: keys and values are decoded back to their numbers
/// (key -1 and value 0 for none).
struct SeenEvent {
  uint64_t seq;
  EventKind kind;
  int key;
  uint32_t vid;
};

inline std::string to_string(const SeenEvent& e) {
  std::string s = std::string(kind_name(e.kind)) + "(" + std::to_string(e.seq);
  if (e.key >= 0) s += ", k" + std::to_string(e.key);
  if (e.vid != 0) s += ", v" + std::to_string(e.vid);
  return s + ")";
}

/// The mutation published at one sequence.
struct Mutation {
  bool upsert = true;  // else a removal (explicit, expiration)
  int key = -1;        // -1: an expiration of `group` not pinned yet
  uint32_t vid = 0;    // upsert: the value written
  int group = -1;      // the expirations of one run_pending_tasks(), in the wheel's order
};

class MapModel {
 public:
  struct Entry {
    uint32_t vid;
    uint64_t seq;
    int64_t deadline;  // TTL: expired once now >= deadline
  };

  MapModel(uint64_t initial_seq, bool publish_removals, bool publish_expirations, std::optional<int64_t> ttl)
      : initial_seq_(initial_seq),
        publish_removals_(publish_removals),
        publish_expirations_(publish_expirations),
        ttl_(ttl) {}

  uint64_t initial_seq() const { return initial_seq_; }
  uint64_t last_seq() const { return initial_seq_ + log_.size(); }
  const std::map<int, Entry>& entries() const { return entries_; }
  uint64_t epoch() const { return epoch_; }

  /// The op counter of the key's last change (published or not); 0 if never changed.
  uint64_t touched(int key) const {
    auto it = touched_.find(key);
    return it == touched_.end() ? 0 : it->second;
  }

  /// Whether the key's write at `seq` may linger in a consumer's state: the key was
  /// removed without a sequence (publish_removals or publish_expirations off) after that
  /// write. A consumer that lagged over the writes in between keeps the older value too.
  bool silently_removed_after(int key, uint64_t seq) const {
    auto it = silent_.find(key);
    return it != silent_.end() && it->second >= seq;
  }

  /// The keys whose state changed in (seq, last_seq()]: published mutations, every still
  /// unpinned member of an expiration group among them. (Silent removals are not listed;
  /// check_state() lets a consumer keep a silently removed key.)
  std::set<int> changed_after(uint64_t seq) const {
    std::set<int> keys;
    for (uint64_t s = seq + 1; s <= last_seq(); ++s) {
      const Mutation& m = *at(s);
      if (m.key >= 0) {
        keys.insert(m.key);
      } else {
        keys.insert(groups_[m.group].begin(), groups_[m.group].end());
      }
    }
    return keys;
  }

  const Mutation* at(uint64_t seq) const {
    if (seq <= initial_seq_ || seq > last_seq()) return nullptr;
    return &log_[seq - initial_seq_ - 1];
  }

  /// Every model operation starts here, so that touched() orders changes against
  /// stream creation.
  void begin_op() { ++epoch_; }

  uint64_t insert(int key, uint32_t vid, int64_t now) {
    const int64_t deadline = ttl_ ? now + *ttl_ : std::numeric_limits<int64_t>::max();
    log_.push_back(Mutation{true, key, vid, -1});
    entries_[key] = Entry{vid, last_seq(), deadline};
    touched_[key] = epoch_;
    return last_seq();
  }

  /// What remove() returns.
  bool remove(int key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return false;
    if (publish_removals_) {
      log_.push_back(Mutation{false, key, 0, -1});
    } else {
      silent_[key] = last_seq();
    }
    entries_.erase(it);
    touched_[key] = epoch_;
    return true;
  }

  /// The clock reached `now` and run_pending_tasks() ran: every expired entry is gone,
  /// published (as one group, in an order the model learns) or silently. Returns them.
  std::vector<int> expire(int64_t now) {
    std::vector<int> expired;
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (now < it->second.deadline) {
        ++it;
        continue;
      }
      expired.push_back(it->first);
      if (!publish_expirations_) silent_[it->first] = last_seq();
      touched_[it->first] = epoch_;
      it = entries_.erase(it);
    }
    if (publish_expirations_ && !expired.empty()) {
      const int group = static_cast<int>(groups_.size());
      groups_.push_back(expired);
      for (size_t i = 0; i < expired.size(); ++i) log_.push_back(Mutation{false, -1, 0, group});
    }
    return expired;
  }

  /// A kRemove of `key` at `seq` in an expiration group: pins an unpinned sequence, or
  /// checks a pinned one. Returns an error, or "".
  std::string pin(uint64_t seq, int key) {
    Mutation& m = log_[seq - initial_seq_ - 1];
    if (m.key >= 0) return m.key == key ? "" : "the expiration at this seq was k" + std::to_string(m.key);
    std::vector<int>& members = groups_[m.group];
    auto it = std::find(members.begin(), members.end(), key);
    if (it == members.end()) return "k" + std::to_string(key) + " did not expire here (or is already pinned)";
    members.erase(it);  // each expired key takes exactly one sequence of its group
    m.key = key;
    return "";
  }

  /// What a consumer that applied every published mutation <= seq holds, and the
  /// sequence it really is at: a seq inside an expiration group (whose order may be
  /// unknown) is moved back to before the group.
  std::pair<uint64_t, std::map<int, std::pair<uint64_t, uint32_t>>> state_at(uint64_t seq) const {
    while (seq > initial_seq_ && at(seq)->group >= 0 && seq < last_seq() && at(seq + 1)->group == at(seq)->group) {
      --seq;
    }
    std::map<int, std::pair<uint64_t, uint32_t>> state;
    for (uint64_t s = initial_seq_ + 1; s <= seq; ++s) {
      const Mutation& m = *at(s);
      if (m.upsert) {
        state[m.key] = {s, m.vid};
      } else if (m.group < 0 || m.key >= 0) {
        state.erase(m.key);
      }
    }
    // Expiration groups wholly <= seq: every member of the group is gone, pinned or not.
    for (uint64_t s = initial_seq_ + 1; s <= seq; ++s) {
      const Mutation& m = *at(s);
      if (m.group >= 0 && m.key < 0) {
        for (int k : groups_[m.group]) {
          auto it = state.find(k);
          if (it != state.end() && it->second.first < s) state.erase(it);
        }
      }
    }
    return {seq, state};
  }

 private:
  const uint64_t initial_seq_;
  const bool publish_removals_;
  const bool publish_expirations_;
  const std::optional<int64_t> ttl_;
  std::vector<Mutation> log_;            // log_[i] is sequence initial_seq_ + 1 + i
  std::vector<std::vector<int>> groups_;  // the still unpinned keys of each expiration group
  std::map<int, Entry> entries_;
  std::map<int, uint64_t> touched_;
  std::map<int, uint64_t> silent_;  // key -> last_seq() at its last removal without a sequence
  uint64_t epoch_ = 0;
};

/// One stream's consumer: applies each event to its state after checking it against the
/// model. Errors come back as text ("" when fine).
class StreamChecker {
 public:
  using State = std::map<int, std::pair<uint64_t, uint32_t>>;  // key -> (seq, vid)

  struct Config {
    uint64_t ring;  // ring capacity, rounded up to a power of two
    LagPolicy lag;
    bool mark_snapshot_end;
    bool mark_recovery_end;
  };

  /// stream(), stream_n(limit), stream_batches(): history at the cutoff last_seq().
  static StreamChecker history(const MapModel& m, Config c, std::optional<size_t> limit) {
    StreamChecker s(c);
    s.cutoff_ = m.last_seq();
    s.in_history_ = true;
    s.exact_at_ = s.cutoff_;
    s.created_epoch_ = m.epoch();
    for (const auto& [k, e] : m.entries()) s.expected_snapshot_[k] = {e.seq, e.vid};
    s.position_ = s.cutoff_;
    s.known_next_ = s.cutoff_ + 1;
    s.limit_ = limit;
    s.after_mutation(m);
    return s;
  }

  /// stream_from(after): a consumer whose state is `state` at `after`.
  static StreamChecker resume(const MapModel& m, Config c, uint64_t after, State state) {
    StreamChecker s(c);
    s.cutoff_ = after;
    s.state_ = std::move(state);
    s.position_ = after;
    s.delivered_top_ = after;
    s.last_ = after;
    // The ring still holds after + 1 onward: the continuation is plain live events, and lag
    // after the call follows the policy. Otherwise it recovers whatever the policy.
    if (m.last_seq() - after <= c.ring) {
      s.known_next_ = after + 1;
      s.exact_at_ = after;
    } else {
      s.forced_window_ = true;
      s.recovery_possible_ = true;
    }
    s.position_exact_ = s.known_next_.has_value();
    s.after_mutation(m);
    return s;
  }

  const State& state() const { return state_; }
  uint64_t cutoff() const { return cutoff_; }
  bool lag_possible() const { return lag_possible_; }
  bool done() const { return done_; }
  uint64_t delivered_top() const { return delivered_top_; }
  std::optional<uint64_t> resume_point() const { return resume_point_; }
  void set_resume_point(uint64_t seq) { resume_point_ = seq; }

  /// After every mutation: the ring may now have overwritten what this stream had not
  /// read, once last_seq() is more than the ring's capacity past its position.
  void after_mutation(const MapModel& m) {
    if (m.last_seq() - position_ > config_.ring) lag_possible_ = recovery_possible_ = true;
  }

  /// The mutation at last_seq() reaches this stream for sure (as an event with that seq,
  /// or as the kReset of a recovery cut there): pulling until it has cannot block.
  bool can_pull(const MapModel& m) const {
    if (done_) return false;
    if (limit_ && counted_ == *limit_) return true;  // the generator ends without waiting
    if (in_history_) {
      for (const auto& [k, se] : expected_snapshot_) {
        if (!delivered_keys_.count(k) && m.touched(k) <= created_epoch_) return true;  // must still come
      }
    }
    const uint64_t p = m.last_seq();
    const Mutation* top = m.at(p);
    if (delivered_top_ >= p || top == nullptr) return false;
    if (top->upsert) {
      // Live, recovered, relisted after a kReset, or (p == cutoff) the history's last.
      auto it = m.entries().find(top->key);
      return it != m.entries().end() && it->second.seq == p;  // not removed silently since
    }
    // A published removal comes live, from the removal log, or as a kReset cut at p.
    return p > cutoff_ && last_reset_ < p;
  }

  /// Checks one event and applies it.
  std::string on_event(MapModel& m, const SeenEvent& e) {
    if (done_) return "an event after the stream ended";
    if (limit_ && counted_ == *limit_) return "stream_n delivered more than n counted events";
    if (e.kind != EventKind::kSnapshotEnd) ++counted_;
    ++events_;
    std::string error;
    switch (e.kind) {
      case EventKind::kSnapshotEnd: return on_marker(m, e);
      case EventKind::kSnapshot: error = on_snapshot(e); break;
      case EventKind::kUpsert:
      case EventKind::kRemove: error = on_live(m, e); break;
      case EventKind::kResync: error = on_recovered(m, e); break;
      case EventKind::kReset: return on_recovered(m, e);
    }
    if (error.empty() && e.seq == m.last_seq()) reached_end(e.seq);
    return error;
  }

  /// The generator ended. Only stream_n ends on its own, right after its n-th event.
  std::string on_end() {
    done_ = true;
    if (limit_ && counted_ == *limit_) return "";
    return "the stream ended early (" + std::to_string(counted_) + " counted events)";
  }

  /// The stream threw LaggedError(reported).
  std::string on_lagged(const MapModel& m, uint64_t reported) {
    done_ = true;
    if (config_.lag != LagPolicy::kError) return "LaggedError from a kResync stream";
    if (!lag_possible_) return "LaggedError although the ring cannot have overwritten anything unread";
    if (forced_window_ && events_ == 0) return "LaggedError from stream_from before any event (it must recover)";
    if (reported < position_ || reported > m.last_seq()) {
      return "LaggedError::last_delivered_seq() " + std::to_string(reported) + ", the consumer is at " +
             std::to_string(position_);
    }
    if (position_exact_ && reported != position_) {
      return "LaggedError::last_delivered_seq() " + std::to_string(reported) + ", expected " +
             std::to_string(position_);
    }
    resume_point_ = reported;
    return "";
  }

  /// The consumer caught up with last_seq(): its state must be the map's, except for keys
  /// the map dropped without a sequence (its state keeps those) and for `unsettled` keys.
  std::string check_state(const MapModel& m, const std::set<int>& unsettled = {}) const {
    for (const auto& [k, e] : m.entries()) {
      if (unsettled.count(k)) continue;
      auto it = state_.find(k);
      if (it == state_.end() || it->second.second != e.vid) {
        return "the consumer's state has k" + std::to_string(k) + " = " +
               (it == state_.end() ? std::string("nothing") : "v" + std::to_string(it->second.second)) +
               ", the map v" + std::to_string(e.vid);
      }
    }
    for (const auto& [k, sv] : state_) {
      if (!unsettled.count(k) && !m.entries().count(k) && !m.silently_removed_after(k, sv.first)) {
        return "the consumer's state has k" + std::to_string(k) + " = v" + std::to_string(sv.second) +
               ", which the map removed";
      }
    }
    return "";
  }

  std::string describe() const {
    std::string s = "cutoff " + std::to_string(cutoff_) + ", position " + std::to_string(position_) + ", last " +
                    std::to_string(last_) + ", top " + std::to_string(delivered_top_);
    if (known_next_) s += ", next " + std::to_string(*known_next_);
    if (reset_cutoff_) s += ", relisting to " + std::to_string(*reset_cutoff_);
    if (in_history_) s += ", in history";
    if (lag_possible_) s += ", may have lagged";
    return s;
  }

 private:
  explicit StreamChecker(Config c) : config_(c) {}

  /// The stream delivered the newest mutation: whichever way it came (history at a cutoff
  /// there, live, a recovery cut there, or a relist), everything before it came first and
  /// the stream now reads the ring from seq + 1, so it is exact again.
  void reached_end(uint64_t seq) {
    position_ = seq;
    position_exact_ = true;
    known_next_ = seq + 1;
    lag_possible_ = false;
    forced_window_ = false;
    resume_point_ = seq;
  }

  std::string end_history(const MapModel& m) {
    if (!in_history_) return "";
    in_history_ = false;
    for (const auto& [k, se] : expected_snapshot_) {
      if (!delivered_keys_.count(k) && m.touched(k) <= created_epoch_) {
        return "the history left out k" + std::to_string(k) + " (v" + std::to_string(se.second) + " at seq " +
               std::to_string(se.first) + "), which was not changed after the cutoff";
      }
    }
    return "";
  }

  std::string on_marker(const MapModel& m, const SeenEvent& e) {
    if (in_history_ && config_.mark_snapshot_end && !marker_seen_) {
      if (e.seq != cutoff_) return "kSnapshotEnd's seq is not the cutoff " + std::to_string(cutoff_);
      marker_seen_ = true;
      return end_history(m);
    }
    if (!config_.mark_recovery_end) {
      return config_.mark_snapshot_end ? "kSnapshotEnd not right after the history"
                                       : "kSnapshotEnd without mark_snapshot_end or mark_recovery_end";
    }
    return on_recovery_end(m, e);
  }

  /// mark_recovery_end: the recovery is over, and its cutoff (the marker's seq) is where the
  /// stream reads the ring from: keys not changed since are exact there, the others follow
  /// live, and the next live event is seq + 1 unless the stream lags again.
  std::string on_recovery_end(const MapModel& m, const SeenEvent& e) {
    if (std::string err = end_history(m); !err.empty()) return err;
    if (!recovery_possible_) return "a recovery's kSnapshotEnd although the ring cannot have overwritten anything unread";
    if (e.seq < position_ || e.seq < delivered_top_) {
      return "a recovery's kSnapshotEnd before what the stream delivered (position " + std::to_string(position_) +
             ", top " + std::to_string(delivered_top_) + ")";
    }
    if (e.seq > m.last_seq()) return "a recovery's kSnapshotEnd newer than last_seq()";
    if (reset_cutoff_ && e.seq != *reset_cutoff_) {
      return "a relisting's kSnapshotEnd is not at its kReset's seq " + std::to_string(*reset_cutoff_);
    }
    // Keys the map changed after the cutoff may still be older (their live events follow);
    // every other key must be as of the cutoff, which is its value now.
    if (std::string err = check_state(m, m.changed_after(e.seq)); !err.empty()) {
      return "at the recovery's kSnapshotEnd, among the keys not changed since: " + err;
    }
    reset_cutoff_.reset();
    exact_at_ = e.seq;
    recovered_since_marker_ = false;
    last_ = e.seq;
    position_ = e.seq;
    position_exact_ = true;
    known_next_ = e.seq + 1;
    lag_possible_ = recovery_possible_ = m.last_seq() - e.seq > config_.ring;
    forced_window_ = false;
    resume_point_ = e.seq;
    return "";
  }

  std::string on_snapshot(const SeenEvent& e) {
    if (!in_history_) return "kSnapshot after the history";
    if (e.seq > cutoff_) return "kSnapshot newer than the cutoff " + std::to_string(cutoff_);
    auto it = expected_snapshot_.find(e.key);
    if (it == expected_snapshot_.end() || it->second != std::make_pair(e.seq, e.vid)) {
      return it == expected_snapshot_.end()
                 ? "kSnapshot of a key absent at the cutoff"
                 : "kSnapshot is not the key's newest write at the cutoff (v" + std::to_string(it->second.second) +
                       " at seq " + std::to_string(it->second.first) + ")";
    }
    if (!delivered_keys_.insert(e.key).second) return "the same key twice in the history";
    if (e.seq <= last_) return "history out of sequence order (after " + std::to_string(last_) + ")";
    last_ = e.seq;
    delivered_top_ = std::max(delivered_top_, e.seq);
    state_[e.key] = {e.seq, e.vid};
    return "";
  }

  /// kUpsert and kRemove: live, or (kRemove) recovered from the removal log.
  std::string on_live(MapModel& m, const SeenEvent& e) {
    if (std::string err = end_history(m); !err.empty()) return err;
    if (e.seq <= cutoff_) return "a live event at or before the cutoff " + std::to_string(cutoff_);
    if (reset_cutoff_ && e.seq <= *reset_cutoff_) return "a live event at or before the kReset";
    if (e.seq <= last_) return "out of order (after " + std::to_string(last_) + ")";
    const Mutation* mu = m.at(e.seq);
    if (mu == nullptr) return "no mutation has this seq (last_seq " + std::to_string(m.last_seq()) + ")";
    if (e.kind == EventKind::kUpsert) {
      if (!mu->upsert || mu->key != e.key || mu->vid != e.vid) return "not the mutation at this seq " + show(*mu);
    } else {
      if (mu->upsert) return "not the mutation at this seq " + show(*mu);
      if (std::string err = m.pin(e.seq, e.key); !err.empty()) return err;
    }
    if (known_next_ && !lag_possible_ && e.seq != *known_next_) {
      return "a gap: expected seq " + std::to_string(*known_next_) + " (the ring cannot have overwritten it)";
    }
    if (e.kind == EventKind::kUpsert) {
      if (config_.mark_recovery_end && recovered_since_marker_) return "a live event before the recovery's kSnapshotEnd";
      // With recovery markers a live upsert always follows the last seq delivered: lag
      // shows as a recovery, which ends with a marker at its cutoff.
      if (config_.mark_recovery_end && exact_at_ && e.seq != *exact_at_ + 1) {
        return "a live event after " + std::to_string(*exact_at_) + " (a recovery without its kSnapshotEnd?)";
      }
      // Only the ring delivers kUpsert: the next event is seq + 1 unless lag (which needs
      // last_seq() to run more than the ring past it).
      known_next_ = e.seq + 1;
      lag_possible_ = recovery_possible_ = m.last_seq() - e.seq > config_.ring;
      forced_window_ = false;
      position_exact_ = true;
    } else if (known_next_ && !lag_possible_) {
      known_next_ = e.seq + 1;
    } else {
      known_next_.reset();
      position_exact_ = false;  // maybe recovered: the recovery's cutoff is not known
    }
    if (reset_cutoff_ && e.seq > *reset_cutoff_) reset_cutoff_.reset();
    last_ = e.seq;
    exact_at_ = e.seq;  // a recovered kRemove is followed by its recovery's marker, which resets it
    position_ = std::max(position_, e.seq);
    delivered_top_ = std::max(delivered_top_, e.seq);
    if (e.kind == EventKind::kUpsert) {
      state_[e.key] = {e.seq, e.vid};
    } else {
      state_.erase(e.key);
    }
    resume_point_.reset();
    if (!lag_possible_ && known_next_ == e.seq + 1) resume_point_ = e.seq;  // state exact at e.seq
    return "";
  }

  std::string on_recovered(MapModel& m, const SeenEvent& e) {
    if (std::string err = end_history(m); !err.empty()) return err;
    if (!lag_possible_) return "recovery although the ring cannot have overwritten anything unread";
    if (config_.lag == LagPolicy::kError && !forced_window_) {
      return "recovery in a kError stream (only a stream_from whose continuation had left the ring may recover)";
    }
    known_next_.reset();
    exact_at_.reset();
    position_exact_ = false;
    resume_point_.reset();
    recovered_since_marker_ = true;
    if (e.kind == EventKind::kReset) {
      // Its seq is the new cutoff: the published cursor, past everything delivered.
      if (e.seq <= position_) return "kReset at or before the consumer's position " + std::to_string(position_);
      if (e.seq > m.last_seq()) return "kReset newer than last_seq()";
      state_.clear();
      last_ = 0;  // the relist restarts the order
      reset_cutoff_ = e.seq;
      last_reset_ = std::max(last_reset_, e.seq);
      position_ = std::max(position_, e.seq);
      return "";
    }
    if (e.seq <= last_) return "out of order (after " + std::to_string(last_) + ")";
    const Mutation* mu = m.at(e.seq);
    if (mu == nullptr || !mu->upsert || mu->key != e.key || mu->vid != e.vid) {
      return mu == nullptr ? "no mutation has this seq" : "not the mutation at this seq " + show(*mu);
    }
    if (!reset_cutoff_ && e.seq <= cutoff_) return "kResync at or before the cutoff without a kReset";
    if (reset_cutoff_ && e.seq > *reset_cutoff_) reset_cutoff_.reset();
    last_ = e.seq;
    position_ = std::max(position_, e.seq);
    delivered_top_ = std::max(delivered_top_, e.seq);
    state_[e.key] = {e.seq, e.vid};
    return "";
  }

  static std::string show(const Mutation& mu) {
    if (mu.upsert) return "(upsert k" + std::to_string(mu.key) + " v" + std::to_string(mu.vid) + ")";
    return mu.key >= 0 ? "(remove k" + std::to_string(mu.key) + ")" : "(an expiration)";
  }

  const Config config_;
  uint64_t cutoff_ = 0;          // history: last_seq() at creation; stream_from: after_seq
  bool in_history_ = false;      // no event but kSnapshot seen yet
  bool marker_seen_ = false;
  uint64_t created_epoch_ = 0;
  std::map<int, std::pair<uint64_t, uint32_t>> expected_snapshot_;
  std::set<int> delivered_keys_;
  State state_;                  // the consumer's rebuilt state
  uint64_t last_ = 0;            // order: the next seq must be greater (0 after a kReset)
  std::optional<uint64_t> reset_cutoff_;  // relisting after this kReset
  uint64_t last_reset_ = 0;
  uint64_t position_ = 0;        // the ring sequence the stream is known to have reached
  bool position_exact_ = true;   // position_ is exactly what LaggedError must report
  uint64_t delivered_top_ = 0;   // the highest seq delivered in an event (not kReset)
  std::optional<uint64_t> known_next_;  // without lag, the next live event's seq
  bool lag_possible_ = false;
  bool forced_window_ = false;   // stream_from whose continuation had left the ring, before its
                                 // first live event: recovers whatever the policy
  // mark_recovery_end: a recovery (and so its end marker) may come: lag became possible (or
  // a forced window began) after the last marker or exact live event; lag_possible_ alone
  // does not say it, since delivering the newest mutation clears it mid-recovery.
  bool recovery_possible_ = false;
  bool recovered_since_marker_ = false;  // a kResync or kReset since the last recovery marker
  // mark_recovery_end: the seq the next live upsert must follow (the cutoff, the last live
  // event or recovery marker); unknown inside a recovery and in a forced window.
  std::optional<uint64_t> exact_at_;
  std::optional<size_t> limit_;  // stream_n
  size_t counted_ = 0;            // events but kSnapshotEnd
  size_t events_ = 0;
  bool done_ = false;
  std::optional<uint64_t> resume_point_;  // the consumer's state is exact at this seq
};

}  // namespace streaming_map_fuzz
