// The vocabulary of StreamingMap: events, lag policy, options.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "streamcache/clock.hpp"

namespace streamcache {

enum class EventKind {
  kSnapshot,     ///< history: the key's newest value at the stream's cutoff
  kUpsert,       ///< live: inserted or replaced
  kRemove,       ///< live (or recovered): removed; `value` is null
  kResync,       ///< recovered after lag: the key's current value
  kReset,        ///< recovered after lag: drop your state; the whole state follows as kResync
  kSnapshotEnd,  ///< optional marker that ends the history (mark_snapshot_end) or a recovery
                 ///< (mark_recovery_end); seq = its cutoff; no key or value
};

template <class K, class V>
struct Event {
  /// The mutation's logical timestamp; strictly increasing per stream, with two
  /// exceptions: the whole state relisted after a kReset restarts the order (its kResync
  /// events may be older than the kReset's seq, which is the relisting's cutoff), and
  /// kSnapshotEnd repeats its cutoff, which the event before it may carry too. To resume with
  /// stream_from(), keep the seq of the last event applied other than kReset.
  uint64_t seq = 0;
  EventKind kind = EventKind::kUpsert;
  K key{};
  std::shared_ptr<const V> value;  ///< shared with the map and every subscriber; null for kRemove
};

enum class LagPolicy {
  kResync,  ///< recover from the map (kResync / kRemove, or kReset + the whole state); also
            ///< how a stream gets past a removal lost to a throwing key copy (LaggedError)
  kError,   ///< throw LaggedError from the stream
};

/// Thrown by a LagPolicy::kError stream whose subscriber fell more than ring_capacity
/// behind, or, without any lag, when maintenance could not tell an expiry or eviction
/// because copying its key threw (publish_expirations; the removal is lost to the ring).
/// Resume with stream_from(last_delivered_seq()): that recovers from the map.
class LaggedError : public std::runtime_error {
 public:
  explicit LaggedError(uint64_t last_delivered)
      : std::runtime_error("streamcache::StreamingMap: stream lagged behind the ring after seq " +
                           std::to_string(last_delivered)),
        last_delivered_(last_delivered) {}
  uint64_t last_delivered_seq() const noexcept { return last_delivered_; }

 private:
  uint64_t last_delivered_;
};

/// Every knob of a StreamingMap, with its trade-off.
struct StreamingMapOptions {
  /// Entries kept for history (the map's size bound, evicted by W-TinyLFU). Live events
  /// are streamed whether or not their entry is kept.
  uint64_t max_capacity = UINT64_MAX;

  /// History entries expire this long after their write / last access. Expired entries
  /// leave the history; streams learn of it only with publish_expirations.
  std::optional<Clock::duration> time_to_live;
  std::optional<Clock::duration> time_to_idle;

  /// The time source for expiry; null means Clock::system().
  std::shared_ptr<Clock> clock;

  /// Live events held for slow subscribers (rounded up to a power of two). A subscriber
  /// further behind than this lags and recovers per `lag`. Larger rings cost memory
  /// (about 48 bytes a slot plus the key) and make lag rarer. Also the number of recent
  /// removals remembered for recovery. 0 is invalid.
  size_t ring_capacity = 65536;

  /// What a lagging stream does.
  LagPolicy lag = LagPolicy::kResync;

  /// Explicit removes take a sequence and are streamed as kRemove. When false they take
  /// none and are never streamed (a consumer's state then keeps removed keys).
  bool publish_removals = true;

  /// Expirations and size evictions take a sequence and are streamed as kRemove, so a
  /// consumer's state tracks the map's exactly. Off by default: a cache-like map whose
  /// consumers only want fresh values need not pay for them.
  bool publish_expirations = false;

  /// History is read this many entries at a time (spread over the shards), each under a
  /// short shard lock: smaller batches hold locks for less time, larger ones read faster.
  /// 0 is invalid.
  size_t snapshot_batch = 1024;

  /// The first mutation gets initial_seq + 1. Tests use it to force the 32-bit timestamp
  /// wrap; a restarted service can use it to continue its numbering.
  uint64_t initial_seq = 0;

  /// Emit one kSnapshotEnd (seq = cutoff, default key, no value) after the history.
  bool mark_snapshot_end = false;

  /// Emit a kSnapshotEnd after each recovery from lag (the kResync / kRemove events, or the
  /// kReset and the relisted state), stream_from()'s included, even when the recovery had
  /// nothing to send; no live event comes between a recovery's events and it. Its seq is
  /// the recovery's cutoff C, and live events go on from C + 1 unless the stream lags
  /// again. At the marker every key the map has not changed since C has its value as of C
  /// in the consumer's state; a key changed after C (while the recovery was read) keeps an
  /// older value until its live event, which follows. So on a map not written during the
  /// recovery the state at the marker is exactly the map's, as after a history. Without
  /// it a consumer learns that a relisting is over only from the next live event, which on
  /// a quiet map may be long in coming. stream_n does not count it.
  bool mark_recovery_end = false;
};

}  // namespace streamcache
