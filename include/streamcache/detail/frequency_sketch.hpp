// TinyLFU's popularity estimate: a 4-bit count-min sketch with periodic aging.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "streamcache/detail/prefetch.hpp"

namespace streamcache::detail {

/// Estimates how often each key was seen recently, in 4 bits per counter (0..15), with four
/// counters per key whose minimum is the estimate (a count-min sketch). Written after the design
/// of Caffeine's FrequencySketch (the code is our own):
///
/// - Layout: the table is an array of 64-byte blocks (one cache line, eight 64-bit words of
///   sixteen 4-bit counters). A key's four counters all live in one block, chosen by the low
///   bits of its hash, so an estimate touches one cache line. Counter i is in word 2i or 2i+1,
///   at a nibble chosen by byte i of the key's 32-bit fingerprint.
/// - Sizing: one 64-bit word per expected entry (16 counters per entry) rounded up to a power of
///   two, capped at kMaxCapacity words; the error is bounded by table size, not by key count.
/// - Aging: after sample_size() = 10 x expected entries successful increments, every counter is halved
///   (reset()), so the sketch reflects recent popularity and an old hot key fades out.
///
/// Only a 32-bit fingerprint of the hash is used (Caffeine likewise works from Java's 32-bit
/// hashCode). fingerprint() is idempotent, so a caller may keep fingerprint(hash) (4 bytes) per
/// entry instead of the whole hash and pass it back later: it gives the same counters.
///
/// Not thread-safe: the cache calls it under its maintenance lock.
class FrequencySketch {
 public:
  /// 2^22 words = 32 MiB. Enough for ~4M hot entries at 16 counters each; a larger cache still
  /// works, with a somewhat noisier estimate.
  static constexpr uint64_t kMaxCapacity = uint64_t{1} << 22;
  static constexpr uint32_t kMaxFrequency = 15;

  /// An empty sketch: every estimate is 0 and increments are dropped until ensure_capacity().
  FrequencySketch() = default;
  /// `aging_factor`: increments between agings, per expected entry (Caffeine: 10).
  explicit FrequencySketch(uint64_t expected_entries, uint32_t aging_factor = kDefaultAgingFactor)
      : aging_factor_(aging_factor) {
    ensure_capacity(expected_entries);
  }
  static constexpr uint32_t kDefaultAgingFactor = 10;
  void set_aging_factor(uint32_t aging_factor) { aging_factor_ = std::max<uint32_t>(aging_factor, 1); }

  /// Folds a 64-bit hash to the 32 bits the sketch uses; fingerprint(fingerprint(h)) ==
  /// fingerprint(h) because the fold of a value below 2^32 is the value itself.
  static constexpr uint64_t fingerprint(uint64_t hash) {
    return static_cast<uint32_t>(hash ^ (hash >> 32));
  }

  /// Sizes the table for `expected_entries` (capped at kMaxCapacity words). Only ever grows;
  /// growing forgets every count (as in Caffeine: a resize happens once or twice while a cache
  /// first fills, when there is little history to lose).
  void ensure_capacity(uint64_t expected_entries) {
    const uint64_t entries = std::clamp<uint64_t>(expected_entries, 1, kMaxCapacity);
    const uint64_t words = std::bit_ceil(std::max(entries, kWordsPerBlock));
    if (words <= capacity()) return;
    table_.assign(words / kWordsPerBlock, Block{});
    block_mask_ = table_.size() - 1;
    // From the entries, not the rounded-up table: aging (and the policy's sample period) keeps
    // to the cache's own scale.
    sample_size_ = aging_factor_ * entries;
    additions_ = 0;
  }

  bool initialized() const { return !table_.empty(); }
  /// The table size in 64-bit words (about the number of entries it is sized for).
  uint64_t capacity() const { return table_.size() * kWordsPerBlock; }
  /// Increments between two agings; also the period over which the policy samples its hit rate.
  uint64_t sample_size() const { return sample_size_; }
  /// Increments since the last aging (halved, not zeroed, by an aging; see reset()).
  uint64_t additions() const { return additions_; }

  /// The estimated recent frequency of `hash`, 0..15.
  uint32_t frequency(uint64_t hash) const {
    if (table_.empty()) return 0;
    const Slots slots = slots_of(hash);
    const Block& block = table_[slots.block];
    uint32_t result = kMaxFrequency;
    for (uint32_t i = 0; i < 4; ++i) {
      result = std::min(result, static_cast<uint32_t>((block.words[slots.word(i)] >> slots.shift(i)) & 0xF));
    }
    return result;
  }

  /// Starts loading the cache line increment(hash) and frequency(hash) will touch, so that a
  /// caller with a batch of keys overlaps their misses.
  void prefetch(uint64_t hash) const {
    if (!table_.empty()) prefetch_for_write(&table_[slots_of(hash).block]);
  }

  /// Counts one occurrence of `hash` and returns its estimate afterwards, frequency(hash)
  /// (the policy asks for it after every read it applies; from here it costs no second
  /// hashing of the key). Every one of its four counters below 15 is incremented
  /// (Caffeine's rule); when at least one was, the increment counts towards the aging period.
  uint32_t increment(uint64_t hash) {
    if (table_.empty()) return 0;
    const Slots slots = slots_of(hash);
    Block& block = table_[slots.block];
    // Written without branches (which counters are saturated is a coin toss per key; the
    // compiler may still choose to branch): the four counters are in four different
    // words, so each is one load, add and store.
    uint32_t added = 0;
    uint32_t estimate = kMaxFrequency;
    for (uint32_t i = 0; i < 4; ++i) {
      uint64_t& word = block.words[slots.word(i)];
      const uint32_t shift = slots.shift(i);
      const auto count = static_cast<uint32_t>((word >> shift) & 0xF);
      const uint32_t below_max = count != kMaxFrequency ? 1 : 0;
      word += uint64_t{below_max} << shift;
      added |= below_max;
      estimate = std::min(estimate, count + below_max);
    }
    if (added && ++additions_ >= sample_size_) {
      reset();
      return frequency(hash);
    }
    return estimate;
  }

  /// Aging: halves every counter. additions_ is halved too, after subtracting the increments
  /// lost to truncation (a key's four odd counters lose half a count each: count/4 per key).
  void reset() {
    uint64_t odd = 0;
    for (Block& block : table_) {
      for (uint64_t& word : block.words) {
        odd += static_cast<uint64_t>(std::popcount(word & kOneMask));
        word = (word >> 1) & kResetMask;
      }
    }
    const uint64_t lost = odd / 4;
    additions_ = (additions_ > lost ? additions_ - lost : 0) / 2;
  }

 private:
  static constexpr uint64_t kWordsPerBlock = 8;
  static constexpr uint64_t kResetMask = 0x7777777777777777ULL;  // clears each nibble's top bit after >> 1
  static constexpr uint64_t kOneMask = 0x1111111111111111ULL;    // each nibble's low bit

  struct alignas(64) Block {
    uint64_t words[kWordsPerBlock] = {};
  };
  static_assert(sizeof(Block) == 64);

  /// Where a key's counters are: counter i is in word 2i or 2i + 1 of the block, at the
  /// nibble that byte i of counter_hash picks. Computed per counter rather than kept in
  /// arrays: with the loops unrolled, everything stays in registers (arrays of words and
  /// shifts went through memory: 156 instructions per increment in a loop of increments
  /// under callgrind, 135 now; docs/notes/cache_benchmarks.md, session 20).
  struct Slots {
    size_t block;
    uint32_t counter_hash;
    uint32_t word(uint32_t i) const { return (i << 1) + ((counter_hash >> (i << 3)) & 1); }
    uint32_t shift(uint32_t i) const { return ((counter_hash >> ((i << 3) + 1)) & 15) << 2; }
  };

  Slots slots_of(uint64_t hash) const {
    const auto fp = static_cast<uint32_t>(fingerprint(hash));
    // The block comes from the fingerprint's bits spread by a multiply; the counters from a
    // second, independent-looking mix of the same 32 bits (Caffeine's spread/rehash pair).
    const uint32_t block_hash = spread(fp);
    return Slots{block_hash & block_mask_, rehash(block_hash)};
  }

  static constexpr uint32_t spread(uint32_t x) {
    x ^= x >> 17;
    x *= 0xed5ad4bbU;
    x ^= x >> 11;
    x *= 0xac4c1b51U;
    x ^= x >> 15;
    return x;
  }
  static constexpr uint32_t rehash(uint32_t x) {
    x *= 0x31848babU;
    x ^= x >> 14;
    return x;
  }

  std::vector<Block> table_;
  size_t block_mask_ = 0;
  uint64_t sample_size_ = 0;
  uint64_t additions_ = 0;
  uint32_t aging_factor_ = kDefaultAgingFactor;
};

}  // namespace streamcache::detail
