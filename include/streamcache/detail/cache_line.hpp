// The cache-line size every padded structure aligns to.
#pragma once

#include <cstddef>

namespace streamcache::detail {

// Cursors and counters written by different threads live on separate lines of this size.
// 64 bytes on x86-64 and most AArch64 parts. Not std::hardware_destructive_interference_size:
// g++ warns that its value may change between compiler versions, which would silently
// change the ABI.
inline constexpr size_t kCacheLine = 64;

}  // namespace streamcache::detail
