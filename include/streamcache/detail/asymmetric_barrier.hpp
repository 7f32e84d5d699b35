// Asymmetric memory barriers: a Dekker handshake whose one side runs per operation
// (cheap compiler barrier) and whose other side runs rarely (membarrier, a full
// barrier on every running thread of the process).
#pragma once

#include <atomic>
#include <cstdio>
#include <cstdlib>

#if defined(__linux__)
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace streamcache::detail {

/// Asymmetric fences: a "light" side that is only a compiler barrier, and a "heavy"
/// side that forces a full memory barrier on every running thread of the process
/// (Linux membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED: an IPI to the CPUs running
/// our threads; a descheduled thread passed through one in its context switch). For
/// a Dekker handshake whose one side runs per message and whose other side runs
/// rarely: the frequent side does `store A; light; load B`, the rare side does
/// `store B (seq_cst); heavy; load A`, and one of them sees the other's store. The
/// same technique as folly's asymmetricLightBarrier/asymmetricHeavyBarrier, which is
/// not a dependency we may use; neither abseil, TBB nor Boost offers it.
inline void light_barrier() noexcept { std::atomic_signal_fence(std::memory_order_seq_cst); }

/// True when heavy_barrier() works here. Registers the process for the expedited
/// command once; where it is unavailable (not Linux, old kernel, seccomp), callers
/// must not rely on light_barrier() at all.
inline bool heavy_barrier_available() noexcept {
#if defined(__linux__) && defined(SYS_membarrier)
  static const bool available = [] {
    const long commands = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (commands < 0 || (commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
    return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  }();
  return available;
#else
  return false;
#endif
}

/// The heavy side; only after heavy_barrier_available() returned true.
inline void heavy_barrier() noexcept {
#if defined(__linux__) && defined(SYS_membarrier)
  // Once registered, the kernel can still fail this command: -ENOMEM (its cpumask
  // allocation, on CONFIG_CPUMASK_OFFSTACK kernels), or whatever a seccomp filter the
  // process installed after heavy_barrier_available() makes it return. A transient
  // failure is retried. Without the barrier, a thread on the light side may be
  // invisible to us (two producers could take one sequence, a reader could sit beside
  // a writer) and there is no portable fallback, so a lasting failure stops the
  // process. Applications that sandbox themselves must allow membarrier
  // (docs/reliability.md).
  for (int attempt = 0; syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0; ++attempt) {
    if (attempt == 100) {
      std::fputs("streamcache: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) keeps failing; "
                 "a seccomp filter must allow it\n",
                 stderr);
      std::abort();
    }
    sched_yield();
  }
#else
  std::abort();  // unreachable: heavy_barrier_available() is false here
#endif
}

}  // namespace streamcache::detail
