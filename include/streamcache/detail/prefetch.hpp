// Prefetching a cache line that this thread is about to write.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace streamcache::detail {

#if (defined(__x86_64__) || defined(__i386__)) && !defined(__PRFCHW__)
#define STREAMCACHE_DETECT_PREFETCHW 1

/// CPUID 0x80000001, ECX bit 8: the PREFETCHW instruction.
inline bool cpu_has_prefetchw() noexcept {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(0x80000001u, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_PRFCHW) != 0;
}

// Read once at start-up. Before this initialiser runs (another translation unit's static
// initialisation), it reads false and prefetch_for_write() falls back to a plain prefetch.
inline const bool kCpuHasPrefetchW = cpu_has_prefetchw();
#endif

/// Asks for the line holding `p` in a state this core can write without another miss.
///
/// Why not just __builtin_prefetch(p, 1): for the baseline x86-64 target (no -mprfchw,
/// which -march=native or x86-64-v3 would imply) GCC and Clang emit it as a read prefetch
/// (PREFETCHT0). A read prefetch of a line that other cores hold (a ring slot that
/// subscribers read on the last lap) brings it in shared, and the store that follows
/// misses again to invalidate their copies, so the writer stalls anyway. PREFETCHW
/// invalidates them ahead of time: 1 -> 1 Broadcast delivery went from 63-72 to 121-126
/// M msgs/s with it (docs/notes/broadcast.md, session 12). Every AMD64 CPU and Intel's
/// since Broadwell have it; on the others the CPUID check keeps the read prefetch.
[[gnu::always_inline]] inline void prefetch_for_write(const void* p) noexcept {
#ifdef STREAMCACHE_DETECT_PREFETCHW
  if (kCpuHasPrefetchW) {
    asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
    return;
  }
#endif
  __builtin_prefetch(p, 1);
}

}  // namespace streamcache::detail

#undef STREAMCACHE_DETECT_PREFETCHW
