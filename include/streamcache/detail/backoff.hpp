// How the library's short waits wait: pause a few times (the other side is
// mid-operation, nanoseconds away), then yield the core (it may be descheduled).
#pragma once

#include <cstdint>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace streamcache::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

/// One waiting loop's state: `while (!ready()) backoff.pause();`.
class Backoff {
 public:
  void pause() noexcept {
    if (spins_ < kSpinsBeforeYield) {
      ++spins_;
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }

 private:
  static constexpr uint32_t kSpinsBeforeYield = 64;
  uint32_t spins_ = 0;
};

}  // namespace streamcache::detail
