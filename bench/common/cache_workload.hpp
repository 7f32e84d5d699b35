// The cache throughput workload of ../shared/anchors.md, shared by cache_benchmark and
// tools/cache_interleaved so that both measure exactly the same thing:
//
//   Keys: Zipf s = 0.99 over 2^20 ranks, rank r -> key 1 + (r * 0x9E3779B1 mod 2^20)
//   (zipf.hpp). Thread t replays its own pregenerated stream of 2^22 keys, splitmix64
//   seed 42 + t, from the start, wrapping around.
//   Cache: uint64_t -> uint64_t bounded to 2^16 entries, prefilled with the 2^16 hottest
//   ranks, then settled (our maintenance run), so that a run starts from a steady state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/zipf.hpp"

namespace streamcache::bench::cache_workload {

inline constexpr uint64_t kKeySpace = uint64_t{1} << 20;
inline constexpr uint64_t kCapacity = uint64_t{1} << 16;
inline constexpr size_t kStreamLength = size_t{1} << 22;  // a power of two: positions wrap with a mask
inline constexpr uint64_t kSeed = 42;

/// Thread `t`'s key stream (about half a second to generate).
inline std::vector<uint64_t> make_key_stream(int t) {
  static const ZipfSampler zipf(kKeySpace, 0.99);
  SplitMix64 rng(kSeed + static_cast<uint64_t>(t));
  std::vector<uint64_t> keys(kStreamLength);
  for (uint64_t& key : keys) key = zipf_key(zipf.rank(rng), kKeySpace);
  return keys;
}

/// A new `Impl` (an adapter of cache_baselines.hpp) holding the kCapacity hottest keys.
template <class Impl>
Impl* make_prefilled() {
  auto* impl = new Impl(kCapacity);
  for (uint64_t r = 0; r < kCapacity; ++r) {
    const uint64_t key = zipf_key(r, kKeySpace);
    impl->put(key, key);
  }
  impl->settle();
  return impl;
}

}  // namespace streamcache::bench::cache_workload
