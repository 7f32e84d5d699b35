// The engine behind StreamingMap: one CacheCore and one Broadcast, tied by sequences.
#pragma once

#include <absl/hash/hash.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <stdexcept>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <vector>

#include "streamcache/broadcast.hpp"
#include "streamcache/clock.hpp"
#include "streamcache/streaming_map_types.hpp"
#include "streamcache/detail/cache_core.hpp"
#include "streamcache/detail/mutex.hpp"

namespace streamcache::detail {

/// The commit protocol (../docs/design.md, "StreamingMap"):
///  1. A mutation's sequence is claimed from the ring while the key's shard lock is held,
///     and the cache entry is written with it before the lock is released: per key, cache
///     order = sequence order, and each shard's write-order list is sorted by sequence.
///  2. Still under that lock, a removal is appended to the removal log, and then the event
///     is published into the ring at its sequence. So "published" implies "in the cache"
///     (or "in the removal log").
///  3. A reader takes cutoff = published cursor and subscribes at cutoff + 1. Every
///     mutation <= cutoff is already in the cache; history = entries with seq <= cutoff,
///     merged across shards in sequence order; entries with seq > cutoff arrive live.
/// Ring sequence r carries map sequence initial_seq + r.
template <class K, class V, class Timestamp>
class StreamingMapCore : public std::enable_shared_from_this<StreamingMapCore<K, V, Timestamp>> {
  static_assert(std::is_same_v<Timestamp, uint64_t> || std::is_same_v<Timestamp, uint32_t>,
                "StreamingMap timestamps are uint64_t or uint32_t");

 public:
  using Value = std::shared_ptr<const V>;
  using EventT = Event<K, V>;

  /// The cache extension: each entry keeps its (possibly compact) sequence; the cache
  /// keeps write order for history; evictions and expirations come back to us under the
  /// shard lock so they can take a sequence in order.
  struct Ext {
    struct NodeExtra {
      Timestamp seq{};
    };
    static constexpr bool kWriteOrder = true;
    // Compact timestamps keep the low 32 bits; the high ones live in the cache's epoch
    // markers, so a sequence is exact however long its entry stays unwritten.
    static constexpr bool kOrderEpochs = std::is_same_v<Timestamp, uint32_t>;
    static void set_marker_epoch(NodeExtra& x, uint32_t epoch) { x.seq = static_cast<Timestamp>(epoch); }
    static uint32_t marker_epoch(const NodeExtra& x) { return static_cast<uint32_t>(x.seq); }
    StreamingMapCore* core = nullptr;
    void removed_locked(NodeExtra&, const K& key, const Value&, RemovalCause cause) {
      core->on_evicted_locked(key, cause);
    }
  };
  using Cache = CacheCore<K, Value, absl::Hash<K>, std::equal_to<K>, Ext>;

  static std::shared_ptr<StreamingMapCore> create(StreamingMapOptions options) {
    validate(options);
    return std::shared_ptr<StreamingMapCore>(new StreamingMapCore(std::move(options)));
  }

  // ---- Mutations --------------------------------------------------------------------

  uint64_t insert(K key, V value) {
    Value ptr = std::make_shared<const V>(std::move(value));
    // The event (a copy of the key, which may throw) is built before the cache is touched:
    // the write hook runs after the entry is written and must not throw, or the entry
    // would keep a new value with its old sequence and no event.
    PreparedEvent event{EventT{0, EventKind::kUpsert, key, ptr}, std::nullopt};
    uint64_t seq = 0;
    cache_->insert_with(std::move(key), std::move(ptr),
                        [&](typename Ext::NodeExtra& x, const K&, const Value&) {
                          seq = publish_prepared_locked(std::move(event));
                          x.seq = static_cast<Timestamp>(seq);
                          return seq;  // the order key (its high half goes to an epoch marker)
                        });
    return seq;
  }

  bool remove(const K& key) {
    bool removed = false;
    // As in insert(): the removal's event and log entry (copies of the key, which may
    // throw) are built before the cache is touched, since the hook runs after the entry
    // left the map and must not throw. `key` equals the stored key.
    std::optional<PreparedEvent> event;
    if (options_.publish_removals || options_.publish_expirations) event.emplace(prepare_removal(key));
    cache_->remove_with(key, [&](typename Ext::NodeExtra&, const K&, const Value&, RemovalCause cause) {
      if (cause == RemovalCause::kExplicit) {
        removed = true;
        if (options_.publish_removals) publish_prepared_locked(std::move(*event));
      } else if (options_.publish_expirations) {
        publish_prepared_locked(std::move(*event));  // it had expired: this is its expiration
      }
    });
    return removed;
  }

  Value get(const K& key) {
    std::optional<Value> v = cache_->get(key);
    return v ? std::move(*v) : nullptr;
  }

  uint64_t last_seq() const { return options_.initial_seq + ring_.published_cursor(); }
  void run_pending_tasks() { cache_->run_pending_tasks(); }
  void close() { ring_.close(); }

  // ---- Readers ----------------------------------------------------------------------

  class Reader;

  std::unique_ptr<Reader> open_stream() {
    // The cutoff and the subscription must agree: read the cursor, then subscribe right
    // after it. Everything <= cutoff is in the cache (protocol step 2).
    const uint64_t cursor = ring_.published_cursor();
    auto reader = std::make_unique<Reader>(this->shared_from_this(), ring_.subscribe_from(cursor + 1));
    reader->begin_history(options_.initial_seq + cursor);
    return reader;
  }

  std::unique_ptr<Reader> open_stream_from(uint64_t after_seq) {
    const uint64_t last = last_seq();
    if (after_seq > last) {
      throw std::invalid_argument("StreamingMap::stream_from: seq " + std::to_string(after_seq) +
                                  " is newer than last_seq() " + std::to_string(last));
    }
    if (after_seq < options_.initial_seq) {
      // Mutations this map never sequenced (an earlier incarnation's, initial_seq being
      // where a restarted service continues its numbering): nothing can recover them but
      // a relist (found by a review: the stream went on live past them, silently).
      auto reader = std::make_unique<Reader>(this->shared_from_this(), ring_.subscribe_from(1));
      reader->begin_relist(after_seq);
      return reader;
    }
    auto reader = std::make_unique<Reader>(this->shared_from_this(),
                                           ring_.subscribe_from(after_seq - options_.initial_seq + 1));
    reader->begin_resume(after_seq, last);
    return reader;
  }

  /// One subscriber's state machine: history (a k-way merge of the shards' write-order
  /// lists), then live events from the ring, with recovery after lag.
  class Reader {
   public:
    Reader(std::shared_ptr<StreamingMapCore> core, Subscriber<EventT> sub)
        : core_(core), sub_(std::move(sub)), lag_(core->options_.lag),
          mark_snapshot_end_(core->options_.mark_snapshot_end),
          mark_recovery_end_(core->options_.mark_recovery_end), shard_count_(core->cache_->shard_count()),
          per_shard_batch_(std::max<size_t>(1, core->options_.snapshot_batch / shard_count_)) {}

    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;
    ~Reader() { release_cursors(); }

    void begin_history(uint64_t cutoff) {
      next_live_ = cutoff + 1;
      start_pass(EventKind::kSnapshot, 0, cutoff, /*include_all=*/true);
      end_marker_pending_ = mark_snapshot_end_;
      cutoff_ = cutoff;
    }

    /// `published` is last_seq() when stream_from() was called.
    void begin_resume(uint64_t after_seq, uint64_t published) {
      next_live_ = after_seq + 1;
      // The lag policy is waived only for a continuation the ring no longer holds when
      // stream_from() is called (API.md); lag after that follows the policy. So look now,
      // without waiting: kLagged means the ring lost some of it; a first event (kept for
      // the first pull) or nothing new yet means it held all of it. A lost-removal marker
      // is such a loss too when it was published by then (receive_live()): otherwise a
      // kError consumer resuming before one would get LaggedError on every resume.
      waive_markers_through_ = published;
      try {
        Received<EventT> first = sub_.try_recv();
        force_recovery_ = first.status == RecvStatus::kLagged;
        if (first.status == RecvStatus::kOk) {
          live_.push_back(std::move(*first.value));
          live_received_ = true;
        }
      } catch (...) {
        // Copying the event threw (its key's copy, say). That fails the stream's first
        // pull, as it would have without this look ahead: stream_from() itself throws only
        // std::invalid_argument. The subscriber's cursor did not move.
        first_pull_error_ = std::current_exception();
      }
    }

    /// stream_from(after_seq) below initial_seq: recovers at once, whatever the lag policy,
    /// from a seq the removal log never covered (log_floor_), so with kReset and the state.
    void begin_relist(uint64_t after_seq) {
      next_live_ = after_seq + 1;
      recover_pending_ = true;
      force_recovery_ = true;
    }

    /// Replaces `out` with the next events (at least one, at most `max`). Returns false
    /// when the stream is over: stopped, or the map is gone. Throws LaggedError (kError).
    bool next_batch(std::vector<EventT>& out, size_t max, const std::stop_token& stop) {
      out.clear();
      if (stop.stop_requested()) return false;
      while (pass_active_) {
        if (!fill_from_pass(out, max)) return false;  // the map is gone
        if (!out.empty()) return true;
        if (stop.stop_requested()) return false;
      }
      if (end_marker_pending_) return deliver_end_marker(out);
      return receive_live(out, max, stop);
    }

   private:
    // ---- History passes (the first one, and recoveries) ------------------------------

    void start_pass(EventKind kind, uint64_t lower, uint64_t upper, bool include_all) {
      release_cursors();
      pass_kind_ = kind;
      pass_lower_ = lower;
      pass_upper_ = upper;
      pass_all_ = include_all;
      cursors_.assign(shard_count_, HistoryCursor{});
      buffers_.assign(shard_count_, {});
      positions_.assign(shard_count_, 0);
      heap_ = {};
      heap_primed_ = false;
      pass_active_ = true;
    }

    /// Appends history events (in sequence order) to `out`; false if the map is gone.
    bool fill_from_pass(std::vector<EventT>& out, size_t max) {
      std::shared_ptr<StreamingMapCore> core = core_.lock();
      if (!core) return false;
      if (reset_pending_) {  // kReset goes before the relisted state, whatever its sequence
        reset_pending_ = false;
        out.push_back(EventT{pass_upper_, EventKind::kReset, K{}, nullptr});
      }
      if (!heap_primed_) {
        for (size_t s = 0; s < shard_count_; ++s) {
          refill(*core, s);
          push_head(s);
        }
        heap_primed_ = true;
      }
      while (out.size() < max) {
        const bool entries_left = !heap_.empty();
        if (!removals_.empty() && (!entries_left || removals_.front().seq < heap_.top().first)) {
          out.push_back(std::move(removals_.front()));
          removals_.pop_front();
          continue;
        }
        if (!entries_left) {
          finish_pass();
          break;
        }
        const size_t shard = heap_.top().second;
        heap_.pop();
        out.push_back(std::move(buffers_[shard][positions_[shard]++]));
        if (positions_[shard] == buffers_[shard].size()) refill(*core, shard);
        push_head(shard);
      }
      return true;
    }

    void push_head(size_t shard) {
      if (positions_[shard] < buffers_[shard].size()) heap_.push({buffers_[shard][positions_[shard]].seq, shard});
    }

    /// Reads the shard's next non-empty batch, skipping entries at or below the pass's
    /// lower bound; leaves the buffer empty when the shard has nothing more.
    void refill(StreamingMapCore& core, size_t shard) {
      auto& buf = buffers_[shard];
      buf.clear();
      positions_[shard] = 0;
      HistoryCursor& cursor = cursors_[shard];
      if (!pass_all_ && cursor.marker == kNoNode) {
        // A recovery wants only entries newer than pass_lower_: start past the older ones.
        core.cache_->seek_history(shard, cursor, [&](const typename Ext::NodeExtra& x, uint32_t epoch) {
          return StreamingMapCore::expand(x.seq, epoch) <= pass_lower_;
        });
      }
      std::exception_ptr error;
      while (buf.empty() && !cursor.done) {
        // The visit must not throw: read_history() has unlinked the cursor's marker and
        // relinks it after the walk, so an exception escaping it would leave the marker
        // out of the shard's write-order list (release_history() would then corrupt the
        // list). A failed copy of a key (or a failed push_back) stops the walk here and is
        // rethrown once the marker is back in place; the stream then ends.
        // A recovery's incremental pass visits entries that have expired but are not
        // removed yet: their expiry has no seq yet, so as of the cutoff they hold the value
        // they are sent with (with publish_expirations the kRemove follows live). Skipped,
        // the consumer would keep the value the entry's last write replaced (found by a
        // review). Full passes skip them: the consumer's state starts empty, and get()
        // does not return them either.
        const auto expired = pass_all_ ? Cache::ExpiredEntries::kSkip : Cache::ExpiredEntries::kVisit;
        core.cache_->read_history(shard, cursor, per_shard_batch_, expired,
                                  [&](const typename Ext::NodeExtra& x, uint32_t epoch, const K& k,
                                      const Value& v) noexcept {
                                    const uint64_t seq = StreamingMapCore::expand(x.seq, epoch);
                                    if (seq > pass_upper_) return false;  // written after the cutoff: live
                                    if (pass_all_ || seq > pass_lower_) {
                                      try {
                                        buf.push_back(EventT{seq, pass_kind_, k, v});
                                      } catch (...) {
                                        error = std::current_exception();
                                        return false;
                                      }
                                    }
                                    return true;
                                  });
        if (error) std::rethrow_exception(error);
      }
    }

    /// The kSnapshotEnd that ends a history or a recovery pass (mark_snapshot_end,
    /// mark_recovery_end): its seq is the pass's cutoff.
    bool deliver_end_marker(std::vector<EventT>& out) {
      end_marker_pending_ = false;
      out.push_back(EventT{cutoff_, EventKind::kSnapshotEnd, K{}, nullptr});
      return true;
    }

    void finish_pass() {
      release_cursors();
      pass_active_ = false;
      buffers_.clear();
      positions_.clear();
    }

    void release_cursors() {
      if (cursors_.empty()) return;
      if (std::shared_ptr<StreamingMapCore> core = core_.lock()) {
        for (size_t s = 0; s < cursors_.size(); ++s) core->cache_->release_history(s, cursors_[s]);
      }
      cursors_.clear();
    }

    // ---- Live ----------------------------------------------------------------------

    bool receive_live(std::vector<EventT>& out, size_t max, const std::stop_token& stop) {
      if (first_pull_error_) std::rethrow_exception(std::exchange(first_pull_error_, nullptr));
      for (;;) {
        if (!recover_pending_) {
          if (!std::exchange(live_received_, false)) {
            live_.clear();
            const size_t n = sub_.recv_batch(live_, max, stop);
            if (n == 0) return false;  // closed (the map is gone) or stopped
          }
          if (live_.front().seq != next_live_) {
            recover_pending_ = true;  // lagged
          } else {
            // Deliver up to a lost-removal marker (publish_lost_removal_locked()), if any;
            // from there on, recover as from a lag at its sequence.
            const auto lost = std::find_if(live_.begin(), live_.end(),
                                           [](const EventT& e) { return e.kind == EventKind::kReset; });
            recover_pending_ = lost != live_.end();
            const bool waived = recover_pending_ && lost->seq <= waive_markers_through_;
            if (lost != live_.begin()) {
              next_live_ = std::prev(lost)->seq + 1;
              force_recovery_ = waived;
              for (auto e = live_.begin(); e != lost; ++e) out.push_back(std::move(*e));
              return true;
            }
            force_recovery_ = force_recovery_ || waived;
          }
        }
        recover_pending_ = false;
        recover();  // from next_live_ - 1, delivered last; throws LaggedError under kError
        while (pass_active_) {
          if (!fill_from_pass(out, max)) return false;
          if (!out.empty()) return true;  // next_batch() delivers the end marker, if any
        }
        if (end_marker_pending_) return deliver_end_marker(out);  // a recovery with nothing to send
      }
    }

    /// The subscriber fell behind (or stream_from's continuation left the ring): rebuild
    /// the consumer's state from the cache and the removal log, then go on live.
    void recover() {
      const uint64_t last_delivered = next_live_ - 1;
      if (lag_ == LagPolicy::kError && !force_recovery_) throw LaggedError(last_delivered);
      force_recovery_ = false;
      std::shared_ptr<StreamingMapCore> core = core_.lock();
      if (!core) return;
      const uint64_t cursor = core->ring_.published_cursor();
      const uint64_t new_cutoff = core->options_.initial_seq + cursor;
      sub_ = core->ring_.subscribe_from(cursor + 1);
      next_live_ = new_cutoff + 1;
      cutoff_ = new_cutoff;
      end_marker_pending_ = mark_recovery_end_;
      removals_.clear();
      if (core->removals_since(last_delivered, new_cutoff, removals_)) {
        start_pass(EventKind::kResync, last_delivered, new_cutoff, /*include_all=*/false);
      } else {
        // The removal log no longer reaches back: relist (Kubernetes' 410 Gone).
        removals_.clear();
        start_pass(EventKind::kResync, 0, new_cutoff, /*include_all=*/true);
        reset_pending_ = true;
      }
    }

    using HeapItem = std::pair<uint64_t, size_t>;  // (head seq, shard), min-heap
    std::weak_ptr<StreamingMapCore> core_;
    Subscriber<EventT> sub_;
    const LagPolicy lag_;
    const bool mark_snapshot_end_;
    const bool mark_recovery_end_;
    const size_t shard_count_;
    const size_t per_shard_batch_;
    uint64_t next_live_ = 1;
    uint64_t cutoff_ = 0;  // of the history or of the last recovery: the end marker's seq
    bool force_recovery_ = false;
    uint64_t waive_markers_through_ = 0;  // stream_from(): markers up to last_seq() at the call
    bool end_marker_pending_ = false;
    bool reset_pending_ = false;
    bool recover_pending_ = false;  // lagged, or a lost-removal marker follows what was delivered
    bool live_received_ = false;    // live_ holds begin_resume()'s first event, not yet delivered
    std::exception_ptr first_pull_error_;  // begin_resume()'s read threw: the first pull rethrows it

    bool pass_active_ = false;
    bool pass_all_ = true;
    bool heap_primed_ = false;
    EventKind pass_kind_ = EventKind::kSnapshot;
    uint64_t pass_lower_ = 0;
    uint64_t pass_upper_ = 0;
    std::vector<HistoryCursor> cursors_;
    std::vector<std::vector<EventT>> buffers_;
    std::vector<size_t> positions_;
    std::priority_queue<HeapItem, std::vector<HeapItem>, std::greater<HeapItem>> heap_;
    std::deque<EventT> removals_;  // recovery: kRemove events (or one kReset) to merge in
    std::vector<EventT> live_;
  };

 private:
  explicit StreamingMapCore(StreamingMapOptions options)
      : options_(std::move(options)),
        ring_(BroadcastOptions{options_.ring_capacity, Overflow::kOverwrite, WaitStrategy::kBlocking}) {
    CacheConfig<K, Value> config;
    config.max_weight = options_.max_capacity;
    config.time_to_live = options_.time_to_live;
    config.time_to_idle = options_.time_to_idle;
    config.clock = options_.clock;
    removal_log_.resize(options_.ring_capacity);
    cache_ = std::make_unique<Cache>(std::move(config), Ext{this});
  }

  static void validate(const StreamingMapOptions& o) {
    if (o.ring_capacity == 0) throw std::invalid_argument("StreamingMap: ring_capacity must be positive");
    if (o.ring_capacity > (size_t{1} << 40)) {
      throw std::invalid_argument("StreamingMap: ring_capacity must be at most 2^40");
    }
    if (o.initial_seq > (uint64_t{1} << 63)) {
      throw std::invalid_argument("StreamingMap: initial_seq must be at most 2^63 (sequences must not wrap)");
    }
    if (o.lag != LagPolicy::kResync && o.lag != LagPolicy::kError) {
      throw std::invalid_argument("StreamingMap: lag must be LagPolicy::kResync or LagPolicy::kError");
    }
    if (o.snapshot_batch == 0) throw std::invalid_argument("StreamingMap: snapshot_batch must be positive");
    if (o.time_to_live && o.time_to_live->count() < 0) {
      throw std::invalid_argument("StreamingMap: time_to_live must not be negative");
    }
    if (o.time_to_idle && o.time_to_idle->count() < 0) {
      throw std::invalid_argument("StreamingMap: time_to_idle must not be negative");
    }
  }

  /// An event built ahead of its publication (building copies the key, which may throw),
  /// with the removal log's copy of the key for a kRemove.
  struct PreparedEvent {
    EventT event;
    std::optional<K> logged_key;
  };

  static PreparedEvent prepare_removal(const K& key) {
    return PreparedEvent{EventT{0, EventKind::kRemove, key, nullptr}, std::optional<K>(key)};
  }

  /// Under the key's shard lock: claims the next sequence and publishes the prepared
  /// event at it. Nothing here may throw (moves of K and of the event are assumed
  /// noexcept): a claimed, unpublished sequence would stall every reader, and the
  /// cache's hooks that call this must not throw.
  uint64_t publish_prepared_locked(PreparedEvent&& prepared) {
    const uint64_t r = ring_.claim();
    prepared.event.seq = options_.initial_seq + r;
    const uint64_t seq = prepared.event.seq;
    if (prepared.logged_key) log_removal(seq, std::move(*prepared.logged_key));
    ring_.publish_claimed(r, std::move(prepared.event));
    return seq;
  }

  /// A removal the cache decided on (eviction, expiry), called by maintenance under the
  /// shard lock once the entry has left the map: the key can only be copied here. If that
  /// copy throws, the removal cannot be told and maintenance must not fail half-way: a
  /// lost-removal marker takes the sequence instead (see receive_live()).
  void on_evicted_locked(const K& key, RemovalCause cause) {
    if (!options_.publish_expirations || (cause != RemovalCause::kExpired && cause != RemovalCause::kSize)) return;
    std::optional<PreparedEvent> event;
    try {
      event.emplace(prepare_removal(key));
    } catch (...) {
      publish_lost_removal_locked();
      return;
    }
    publish_prepared_locked(std::move(*event));
  }

  /// In the ring, kReset marks a removal published without its key (no writer publishes a
  /// kReset otherwise): a live stream that reads one recovers from the sequence before it.
  /// The removal log stops covering anything older, so that recovery relists the whole
  /// state (kReset, then kResync) rather than replaying removals that would miss this one.
  /// The marker is built before its sequence is claimed: a claimed sequence left
  /// unpublished would stall every reader. (K{} is expected not to throw, as streams
  /// already need it for kSnapshotEnd and kReset; if it does, nothing is claimed.)
  void publish_lost_removal_locked() {
    EventT marker{0, EventKind::kReset, K{}, nullptr};
    const uint64_t r = ring_.claim();
    marker.seq = options_.initial_seq + r;
    {
      WriterLock<Mutex> lock(removal_mu_);
      log_floor_ = std::max(log_floor_, marker.seq);
    }
    ring_.publish_claimed(r, std::move(marker));
  }

  // ---- The removal log: what recovery cannot read from the cache -----------------------

  /// A fixed ring of the last removal_log_capacity_ published removals: preallocated, so
  /// logging between claim and publish cannot fail.
  void log_removal(uint64_t seq, K&& key) {
    WriterLock<Mutex> lock(removal_mu_);
    auto& slot = removal_log_[removal_log_next_ % removal_log_.size()];
    if (removal_log_next_ >= removal_log_.size()) log_floor_ = std::max(log_floor_, slot.first);
    slot.first = seq;
    slot.second = std::move(key);
    ++removal_log_next_;
  }

  /// Appends the kRemove events with seq in (after, upto], in order. False when the log
  /// no longer covers everything after `after`.
  bool removals_since(uint64_t after, uint64_t upto, std::deque<EventT>& out) {
    std::vector<EventT> found;
    {
      WriterLock<Mutex> lock(removal_mu_);
      if (log_floor_ > after) return false;
      const size_t used = std::min<size_t>(removal_log_next_, removal_log_.size());
      for (size_t i = 0; i < used; ++i) {
        const auto& [seq, key] = removal_log_[i];
        if (seq > after && seq <= upto) found.push_back(EventT{seq, EventKind::kRemove, key, nullptr});
      }
    }
    // Shards append concurrently, so the log is only nearly sorted.
    std::sort(found.begin(), found.end(), [](const EventT& a, const EventT& b) { return a.seq < b.seq; });
    for (EventT& e : found) out.push_back(std::move(e));
    return true;
  }

  // ---- Compact timestamps --------------------------------------------------------------

  /// The 64-bit sequence a stored timestamp stands for, given the high half the history
  /// walk found in the entry's epoch marker (Ext::kOrderEpochs).
  static uint64_t expand(Timestamp stored, uint32_t epoch) {
    if constexpr (std::is_same_v<Timestamp, uint64_t>) {
      return stored;
    } else {
      return (static_cast<uint64_t>(epoch) << 32) | stored;
    }
  }

  const StreamingMapOptions options_;
  Broadcast<EventT> ring_;
  std::unique_ptr<Cache> cache_;

  Mutex removal_mu_;
  std::vector<std::pair<uint64_t, K>> removal_log_ ABSL_GUARDED_BY(removal_mu_);  // a ring
  uint64_t removal_log_next_ ABSL_GUARDED_BY(removal_mu_) = 0;  // removals logged so far
  // The highest seq overwritten; from initial_seq, since the log holds no removal of an
  // earlier incarnation's (see open_stream_from()).
  uint64_t log_floor_ ABSL_GUARDED_BY(removal_mu_) = options_.initial_seq;
};

}  // namespace streamcache::detail
