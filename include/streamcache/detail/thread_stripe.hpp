// Which stripe of a striped structure (read buffers, counters, reader locks) the
// calling thread uses.
#pragma once

#include <atomic>
#include <cstdint>

namespace streamcache::detail {

/// The calling thread's stripe probe. Threads are numbered round-robin when they first
/// touch any striped structure, so two threads share a stripe (of a power-of-two count
/// n, `probe & (n - 1)`) only when more than n threads use it.
inline uint32_t thread_stripe_probe() {
  static std::atomic<uint32_t> next{0};
  // relaxed: only distinctness matters, not ordering with other memory.
  thread_local const uint32_t probe = next.fetch_add(1, std::memory_order_relaxed);
  return probe;
}

}  // namespace streamcache::detail
