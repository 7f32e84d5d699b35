// A map that streams its history and then its live updates, exactly once at the seam.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "streamcache/broadcast.hpp"
#include "streamcache/clock.hpp"
#include "streamcache/generator.hpp"
#include "streamcache/streaming_map_types.hpp"
#include "streamcache/detail/streaming_map_core.hpp"

namespace streamcache {

/// A concurrent map whose every mutation takes the next sequence number (a logical
/// timestamp) and is broadcast to subscribers. A stream delivers the map's history (one
/// kSnapshot per key present at the stream's cutoff, newest value, in sequence order) and
/// then every later mutation (kUpsert / kRemove), with nothing lost and nothing twice at
/// the cutoff. It is the composition of one Cache (the state, with its capacity and
/// expiry) and one Broadcast ring (the live events).
///
/// `Timestamp` is how an entry stores its sequence: uint64_t, or uint32_t to save memory
/// per entry (sequences stay 64-bit outside; see StreamingMapOptions::initial_seq).
///
/// Memory ordering: everything a thread did before insert() returned happens-before what
/// a subscriber does after receiving that insert's event (or the snapshot carrying it).
template <class K, class V, class Timestamp = uint64_t>
class StreamingMap {
  using Core = detail::StreamingMapCore<K, V, Timestamp>;

 public:
  using EventType = Event<K, V>;

  /// Throws std::invalid_argument naming the option when an option is invalid.
  explicit StreamingMap(StreamingMapOptions options = {}) : core_(Core::create(std::move(options))) {}

  StreamingMap(StreamingMap&&) noexcept = default;
  StreamingMap& operator=(StreamingMap&&) noexcept = default;
  StreamingMap(const StreamingMap&) = delete;
  StreamingMap& operator=(const StreamingMap&) = delete;

  /// Streams end (cleanly, after what was already published) when the map goes away.
  ~StreamingMap() {
    if (core_) core_->close();
  }

  /// Inserts or replaces; returns the mutation's sequence.
  uint64_t insert(K key, V value) { return core_->insert(std::move(key), std::move(value)); }

  /// The value, or null when absent or expired. The same shared_ptr the events carry.
  std::shared_ptr<const V> get(const K& key) { return core_->get(key); }

  /// Removes `key`; true if it was present (and not expired). A successful removal takes
  /// the next sequence and is streamed as kRemove unless publish_removals is false. An
  /// expired key found here returns false and leaves as an expiry: with publish_expirations
  /// that takes a sequence too, and is streamed as kRemove all the same.
  bool remove(const K& key) { return core_->remove(key); }

  /// The highest published mutation's sequence; initial_seq before any mutation.
  uint64_t last_seq() const { return core_->last_seq(); }

  /// Runs the cache's maintenance now: expirations and evictions are applied (and, with
  /// publish_expirations, published) before it returns.
  void run_pending_tasks() { core_->run_pending_tasks(); }

  /// History, then live updates, until `stop` is requested or the map is destroyed. The
  /// cutoff is fixed now, not when iteration begins.
  Generator<EventType> stream(std::stop_token stop = {}) {
    return events(core_->open_stream(), std::numeric_limits<size_t>::max(), std::move(stop));
  }

  /// Like stream(), ending right after its n-th event (kSnapshotEnd is not counted).
  Generator<EventType> stream_n(size_t n, std::stop_token stop = {}) {
    return events(core_->open_stream(), n, std::move(stop));
  }

  /// Resumes after a disconnect: the mutations after `after_seq` (the last sequence the
  /// consumer processed), from the ring while it still holds them, otherwise recovered
  /// from the map (kResync / kRemove, or kReset and the whole state) whatever the lag
  /// policy. Lag after the call follows the policy. An after_seq below
  /// StreamingMapOptions::initial_seq (a consumer of an earlier incarnation of a restarted
  /// service, or 0 when it has nothing) gets kReset and the whole state: this map never had
  /// the mutations in between. Throws std::invalid_argument if after_seq > last_seq().
  Generator<EventType> stream_from(uint64_t after_seq, std::stop_token stop = {}) {
    return events(core_->open_stream_from(after_seq), std::numeric_limits<size_t>::max(), std::move(stop));
  }

  /// The same stream as stream(), as non-empty spans of at most `max_batch` events (history
  /// in chunks, live events drained as available). A span is valid until the next
  /// increment. Throws std::invalid_argument if max_batch is 0.
  Generator<std::span<const EventType>> stream_batches(size_t max_batch, std::stop_token stop = {}) {
    if (max_batch == 0) throw std::invalid_argument("StreamingMap::stream_batches: max_batch must be positive");
    return batches(core_->open_stream(), max_batch, std::move(stop));
  }

 private:
  // The reader's state is created (cutoff fixed, ring subscribed) by the caller above, then
  // moved into the coroutine frame; destroying the generator destroys it, which releases
  // the subscription and the history cursors.
  static Generator<EventType> events(std::unique_ptr<typename Core::Reader> reader, size_t limit,
                                     std::stop_token stop) {
    std::vector<EventType> batch;
    size_t counted = 0;
    if (limit == 0) co_return;
    while (reader->next_batch(batch, kEventBatch, stop)) {
      for (EventType& e : batch) {
        co_yield e;
        if (e.kind != EventKind::kSnapshotEnd && ++counted == limit) co_return;
      }
    }
  }

  static Generator<std::span<const EventType>> batches(std::unique_ptr<typename Core::Reader> reader,
                                                       size_t max_batch, std::stop_token stop) {
    std::vector<EventType> batch;
    while (reader->next_batch(batch, max_batch, stop)) {
      co_yield std::span<const EventType>(batch.data(), batch.size());
    }
  }

  static constexpr size_t kEventBatch = 64;

  std::shared_ptr<Core> core_;
};

}  // namespace streamcache
