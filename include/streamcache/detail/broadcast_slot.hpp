// One cell of the broadcast ring: a value plus the stamp saying which sequence it
// holds. Two implementations, chosen by the value type:
//   SeqlockSlot  trivially copyable T: readers never write shared memory, they copy
//                optimistically and re-check the stamp (a seqlock).
//   LockedSlot   any other T: a seqlock would copy a std::string while its buffer
//                is being freed, so readers take a per-slot shared lock (tokio does
//                the same with a per-slot RwLock). A reader never waits for a writer:
//                finding one means the message is being overwritten, i.e. lag.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

#include "streamcache/detail/backoff.hpp"

namespace streamcache::detail {

// Stamp encoding: 0 = never written; 2s - 1 = being written with sequence s;
// 2s = holds sequence s. A slot's writers are strictly ordered (the writer of
// s + capacity waits for stamp 2s), so a slot's stamp only grows, and
// "stamp >= 2s" means "s was completely written, and may have been overwritten since".
constexpr uint64_t stable_stamp(uint64_t seq) noexcept { return 2 * seq; }
constexpr uint64_t writing_stamp(uint64_t seq) noexcept { return 2 * seq - 1; }

enum class ReadStatus { kOk, kNotReady, kOverwritten };

/// Values copied as bytes under a seqlock; any other T lives in a LockedSlot. (The read
/// builds its value with bit_cast, so T needs no default constructor.)
template <class T>
inline constexpr bool kUseSeqlock = std::is_trivially_copyable_v<T>;

/// The state both slot kinds share.
class SlotStamp {
 public:
  /// The stamp the previous lap's writer leaves behind; the writer of `seq` waits for it.
  static constexpr uint64_t predecessor_stamp(uint64_t seq, uint64_t capacity) noexcept {
    return seq > capacity ? stable_stamp(seq - capacity) : 0;
  }

  /// True once `seq` is completely written (possibly overwritten since).
  bool complete(uint64_t seq) const noexcept {
    return stamp_.load(std::memory_order_acquire) >= stable_stamp(seq);  // acquire: pairs with the release store ending write()
  }

  /// Waits until the previous lap's writer is done with this slot. It only waits in
  /// the rare case of a producer still writing the same slot one lap earlier. Returns
  /// false, at once, if `give_up()` says that writer will never come (a claim close()
  /// made its producer abandon).
  template <class GiveUp>
  bool wait_for_predecessor(uint64_t seq, uint64_t capacity, GiveUp&& give_up) const noexcept {
    const uint64_t expected = predecessor_stamp(seq, capacity);
    // acquire: pairs with the release store ending the previous writer's write(), so
    // our overwrite is ordered after its stores (and its destruction of the old value).
    Backoff backoff;
    while (stamp_.load(std::memory_order_acquire) != expected) {
      if (give_up()) return false;
      backoff.pause();
    }
    return true;
  }

 protected:
  std::atomic<uint64_t> stamp_{0};
};

/// Seqlock slot for trivially copyable T. The value is stored as relaxed atomic
/// words so that the racy optimistic copy is not a data race (and TSan agrees).
template <class T>
class SeqlockSlot : public SlotStamp {
  static constexpr size_t kWords = (sizeof(T) + sizeof(uint64_t) - 1) / sizeof(uint64_t);

 public:
  /// Only the writer owning `seq`, after wait_for_predecessor(). Never throws.
  void write(uint64_t seq, const T& value) noexcept {
    uint64_t words[kWords] = {};
    std::memcpy(words, &value, sizeof(T));
    stamp_.store(writing_stamp(seq), std::memory_order_relaxed);  // relaxed: ordered before the data by the fence below
    // release: pairs with the acquire fence in read(): a reader that copied any of
    // the words below sees at least the odd stamp above on its re-check.
    std::atomic_thread_fence(std::memory_order_release);
    for (size_t i = 0; i < kWords; ++i) words_[i].store(words[i], std::memory_order_relaxed);  // relaxed: published by the stamp store below
    stamp_.store(stable_stamp(seq), std::memory_order_release);  // release: pairs with the acquire stamp loads in read() and complete()
  }

  /// Copies the message `seq` into sink(const T&) if the slot still holds it.
  template <class Sink>
  ReadStatus read(uint64_t seq, Sink&& sink) const {
    const uint64_t want = stable_stamp(seq);
    const uint64_t before = stamp_.load(std::memory_order_acquire);  // acquire: pairs with the release store ending write()
    if (before != want) return before > want ? ReadStatus::kOverwritten : ReadStatus::kNotReady;
    uint64_t words[kWords];
    for (size_t i = 0; i < kWords; ++i) words[i] = words_[i].load(std::memory_order_relaxed);  // relaxed: validated by the stamp re-check
    // acquire: pairs with the release fence in write(): if a newer writer's words were
    // copied, the re-check below sees its stamp.
    std::atomic_thread_fence(std::memory_order_acquire);
    if (stamp_.load(std::memory_order_relaxed) != want) return ReadStatus::kOverwritten;  // relaxed: ordered by the fence above
    // Through bytes and bit_cast rather than a memcpy into a T: a T with a const member
    // cannot be written that way.
    std::array<unsigned char, sizeof(T)> bytes;
    std::memcpy(bytes.data(), words, sizeof(T));
    sink(std::bit_cast<T>(bytes));
    return ReadStatus::kOk;
  }

 private:
  std::atomic<uint64_t> words_[kWords];
};

/// Slot for any copyable T, guarded by a per-slot reader/writer spin lock. Written
/// by hand rather than with absl::Mutex or std::shared_mutex because a reader must
/// never wait for a writer (it only tries), and the lock is one word per slot.
template <class T>
class LockedSlot : public SlotStamp {
  static constexpr uint32_t kWriter = 1u << 31;

 public:
  LockedSlot() = default;

  /// Only the writer owning `seq`, after wait_for_predecessor(). If T's move
  /// constructor throws, the slot is completed without a value (subscribers count the
  /// message as missed) and the exception propagates.
  void write(uint64_t seq, T&& value) noexcept(std::is_nothrow_move_constructible_v<T>) {
    write_with(seq, [&](std::optional<T>& slot_value) { slot_value.emplace(std::move(value)); });
  }

  /// Completes `seq` without a value: readers count the message as missed.
  void write_lost(uint64_t seq) noexcept {
    write_with(seq, [](std::optional<T>&) noexcept {});
  }

  template <class Sink>
  ReadStatus read(uint64_t seq, Sink&& sink) const {
    const uint64_t want = stable_stamp(seq);
    const uint64_t before = stamp_.load(std::memory_order_acquire);  // acquire: pairs with the release store ending write()
    if (before != want) return before > want ? ReadStatus::kOverwritten : ReadStatus::kNotReady;
    // acquire: pairs with the writer's release unlock, so the value we copy is complete.
    const uint32_t prev = lock_.fetch_add(1, std::memory_order_acquire);
    struct Unlock {
      const LockedSlot* slot;
      // release: pairs with the writer's acquire wait, so our copy precedes the overwrite.
      ~Unlock() { slot->lock_.fetch_sub(1, std::memory_order_release); }
    } unlock{this};
    // `seq` was complete, so a writer here (or a changed stamp) is its overwriter.
    if ((prev & kWriter) != 0) return ReadStatus::kOverwritten;
    if (stamp_.load(std::memory_order_relaxed) != want) return ReadStatus::kOverwritten;  // relaxed: ordered by the lock acquire
    if (!value_) return ReadStatus::kOverwritten;  // its writer's move threw: the message is lost
    sink(*value_);
    return ReadStatus::kOk;
  }

 private:
  /// The writer's protocol; `emplace(value_)` stores the new value (or nothing). If it
  /// throws, the slot is still completed, empty.
  template <class Emplace>
  void write_with(uint64_t seq, Emplace&& emplace) noexcept(noexcept(emplace(std::declval<std::optional<T>&>()))) {
    lock_.fetch_or(kWriter, std::memory_order_relaxed);  // relaxed: the acquire loads below complete the lock
    // acquire: pairs with the release fetch_sub of each departing reader, so their
    // copies of the old value happen before we destroy it.
    while (lock_.load(std::memory_order_acquire) != kWriter) std::this_thread::yield();
    stamp_.store(writing_stamp(seq), std::memory_order_relaxed);  // relaxed: readers see it through the lock's release below
    struct Complete {
      LockedSlot* slot;
      uint64_t seq;
      ~Complete() {
        // An RMW, not a store of 0: readers that saw the writer bit are still
        // backing out their increments. Before the stable stamp, which is what
        // releases the next lap's writer.
        slot->lock_.fetch_and(~kWriter, std::memory_order_release);  // release: pairs with readers' acquire fetch_add in read()
        slot->stamp_.store(stable_stamp(seq), std::memory_order_release);  // release: pairs with the acquire stamp loads in read() and complete()
      }
    } complete{this, seq};
    value_.reset();
    emplace(value_);
  }

  mutable std::atomic<uint32_t> lock_{0};  // kWriter | number of readers
  std::optional<T> value_;
};

template <class T>
using SlotFor = std::conditional_t<kUseSeqlock<T>, SeqlockSlot<T>, LockedSlot<T>>;

}  // namespace streamcache::detail
