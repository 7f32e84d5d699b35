// Read epochs: the arithmetic of the stamps that let readers skip recording a hit the
// eviction policy has already seen (see CacheCore::applied_this_epoch()).
#pragma once

#include <cstdint>

namespace streamcache::detail {

/// Epochs cycle through 1..255; 0 is a node's "never applied". A node's stamp is the last
/// epoch it covers, at most kMaxEpochsAhead - 1 epochs after the one it was written in.
/// Stamps are hints: a stamp left untouched for a whole cycle (255 epochs, about 64 caches'
/// worth of hits, during which its entry was never read) covers kMaxEpochsAhead epochs
/// again when the cycle comes round, so such an entry's first reads then go unrecorded for
/// up to that long. One byte per node is what the layout has room for.
inline constexpr uint32_t kMaxEpochsAhead = 4;

/// `epoch` advanced by `n` in the cycle 1..255.
constexpr uint8_t epoch_after(uint8_t epoch, uint32_t n) {
  return static_cast<uint8_t>((epoch - 1u + n) % 255u + 1u);
}

/// True when `stamp` covers the current `epoch`: it was written in `epoch`, or in one of
/// the kMaxEpochsAhead - 1 before it and stamped that far ahead.
constexpr bool stamp_covers(uint8_t stamp, uint8_t epoch) {
  // The distance from epoch forward to stamp, in the 255-long cycle (uint8_t arithmetic
  // would count the skipped 0 and be one off across the wrap). A compare and an add, not
  // `% 255`: every hit asks this, and the modulo's multiply and shifts cost 5 of a read's
  // ~370 instructions (callgrind, bench/tools/cache_op_loop).
  int distance = int{stamp} - int{epoch};
  if (distance < 0) distance += 255;
  return stamp != 0 && distance < static_cast<int>(kMaxEpochsAhead);
}

}  // namespace streamcache::detail
