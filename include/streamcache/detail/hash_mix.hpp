// One 64-bit mixing function for every place that needs well-spread hash bits.
#pragma once

#include <cstdint>

namespace streamcache::detail {

/// murmur3's 64-bit finalizer: every input bit affects every output bit. Used on users'
/// hashes (std::hash is the identity for integers, and the cache takes its shard from the
/// top bits and the policy's sketch from the low ones) and as a deterministic hash in tools.
constexpr uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

}  // namespace streamcache::detail
