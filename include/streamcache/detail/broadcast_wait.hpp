// How the broadcast ring's waiters (subscribers waiting for data, kBlock producers
// waiting for space) sleep and wake: spin, yield, or park on a futex word.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <ctime>
#endif

#include "streamcache/detail/backoff.hpp"
#include "streamcache/detail/cache_line.hpp"

namespace streamcache::detail {

enum class WaitMode { kBlocking, kYield, kSpin };
enum class WaitOutcome { kReady, kTimeout, kCancelled };

using Deadline = std::optional<std::chrono::steady_clock::time_point>;

/// Now + `timeout`; no deadline when that is beyond what a time point holds (a timeout of
/// duration::max() means "wait as long as it takes", not an overflow).
inline Deadline deadline_after(std::chrono::nanoseconds timeout) {
  const auto now = std::chrono::steady_clock::now();
  if (timeout > std::chrono::steady_clock::time_point::max() - now) return std::nullopt;
  return now + timeout;
}

/// A wake-up word for kBlocking waits: waiters sleep on a 32-bit epoch that every
/// wake-up increments. A waiter arms `armed_` before sleeping; a waker that finds it
/// armed disarms it and wakes everybody. So a wake-up with nobody asleep is one load
/// and no syscall, and a burst of publishes while sleepers are waking up pays for
/// one syscall, not one each.
///
/// Protocol (a Dekker handshake; every step is seq_cst):
///   waiter: 1. e = epoch_   2. armed_ = true   3. re-check its condition   4. sleep while epoch_ == e
///   waker:  1. make the condition true   2. if armed_.exchange(false): epoch_ += 1, wake sleepers
/// With a seq_cst step 1, either the waker's step 2 sees the arming, or the waiter's
/// step 3 sees the condition. A sleeper read its epoch before arming, so the waker that
/// disarms it moves the epoch away from the one it sleeps on. A waker whose step 1 ends
/// with a release store and no full fence before step 2 is not covered by that argument
/// (the store may pass the load of armed_):
///  - the ring's single producer: the waiter runs heavy_barrier() between its steps 2 and
///    3 (await_condition's `after_arm`), which restores the handshake;
///  - producers sharing the sequencer fill a slot with a release store: what keeps their
///    wake-ups is await_condition's `wake_not_promised` (their claim is a seq_cst RMW
///    before the fill; a waiter that sees the claim after arming does not rely on a
///    wake-up and polls, and one that does not see it armed before the claim, so the
///    producer's later load of armed_ sees the arming).
class Parker {
 public:
  /// Arms the parker and returns the epoch to sleep on. Pair with finish_wait().
  uint32_t prepare_wait(bool timed) noexcept {
    if (timed) timed_waiters_.fetch_add(1);
    // The epoch first, then arm: a waker that disarms us after this point bumps the
    // epoch past `epoch`, so our sleep returns. (Arming first lost that wake-up when a
    // waker disarmed between the two steps: regression test in the stress test's
    // kBlock cases, which hung.)
    const uint32_t epoch = epoch_.load();
    armed_.store(true);
    return epoch;
  }
  void finish_wait(bool timed) noexcept {
    if (timed) timed_waiters_.fetch_sub(1, std::memory_order_relaxed);  // relaxed: only a hint to skip a syscall
  }

  /// Sleeps until the epoch moves away from `epoch` (spurious returns are allowed).
  void wait(uint32_t epoch) noexcept { epoch_.wait(epoch); }

  /// As wait(), but returns by `deadline` at the latest. C++20's atomic wait has no
  /// timed form, so on Linux this calls the futex directly (what libstdc++'s wait
  /// does underneath); wake_all() therefore wakes such sleepers with a futex call too.
  void wait_until(uint32_t epoch, std::chrono::steady_clock::time_point deadline) noexcept {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return;
#if defined(__linux__)
    static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
    timespec rel{};
    rel.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    rel.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    // Returns on a wake-up, a timeout, a signal, or at once if the epoch moved already.
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&epoch_), FUTEX_WAIT_PRIVATE, epoch, &rel,
            nullptr, 0);
#else
    const auto slice = std::min<std::chrono::steady_clock::duration>(
        deadline - now, std::chrono::microseconds(50));
    if (epoch_.load() == epoch) std::this_thread::sleep_for(slice);
#endif
  }

  /// The producer's fast path: one load and no syscall when nobody is armed (forced
  /// inline: it runs on every publish, and GCC outlined it in a large translation unit).
  [[gnu::always_inline]] void notify_if_waiting() noexcept {
    if (armed_.load() && armed_.exchange(false)) wake_all();
  }

  /// Wakes every sleeper unconditionally (close(), a stop request, or after
  /// notify_if_waiting disarmed the parker).
  void wake_all() noexcept {
    epoch_.fetch_add(1);
    epoch_.notify_all();
#if defined(__linux__)
    // Timed sleepers use the raw futex, which atomic::notify_all does not promise to wake.
    if (timed_waiters_.load() != 0) {
      syscall(SYS_futex, reinterpret_cast<uint32_t*>(&epoch_), FUTEX_WAKE_PRIVATE, INT_MAX,
              nullptr, nullptr, 0);
    }
#endif
  }

 private:
  alignas(kCacheLine) std::atomic<bool> armed_{false};
  std::atomic<uint32_t> epoch_{0};
  std::atomic<uint32_t> timed_waiters_{0};
};

/// Waits, by `mode`, until `ready()` holds, `deadline` passes, or `stop` is requested.
///
/// `ready()` is re-checked after registering with `parker`, so the party that makes
/// it true must call parker.notify_if_waiting() afterwards. `wake_not_promised()`
/// (checked after arming too) says that the condition may become true without a
/// notification (a producer that claimed the awaited sequence before we armed may
/// have looked at `armed_` already); then the waiter yields instead of sleeping.
/// `after_arm()` runs between arming and that re-check: the place for the heavy side
/// of an asymmetric fence when the notifying side only has the light one.
/// `park_slice`: a kBlocking waiter with no deadline sleeps at most this long before
/// it looks at `ready()` again, for conditions that may (rarely) come true without a
/// notification; unset, it sleeps until woken.
template <class Ready, class WakeNotPromised, class AfterArm>
WaitOutcome await_condition(WaitMode mode, Parker& parker, Ready&& ready,
                            WakeNotPromised&& wake_not_promised, AfterArm&& after_arm,
                            const Deadline& deadline, const std::stop_token& stop,
                            std::optional<std::chrono::microseconds> park_slice = std::nullopt) {
  // Spinning first pays off when the other side is mid-operation (nanoseconds);
  // yielding next lets a descheduled other side run on a busy machine; beyond that,
  // a kBlocking waiter gives its core back. The spin is two pauses: with more threads
  // than cores, every pause is taken from a producer that shares the core. Measured on
  // 2 cores (docs/notes/broadcast.md, sessions 12-13): 64 pauses starved 1 -> 4; against
  // 16, two gave 2 -> 2 +35-50% in the machine's fast state and the same in its slow
  // one, at the cost of 5-12% on 1 -> 4 with batches there.
  constexpr uint32_t kSpinsBeforeYield = 2;
  constexpr uint32_t kRoundsBeforePark = 128;

  struct Waker {
    Parker* parker;
    void operator()() const noexcept { parker->wake_all(); }
  };
  std::optional<std::stop_callback<Waker>> on_stop;

  for (uint32_t round = 0;; ++round) {
    if (ready()) return WaitOutcome::kReady;
    if (stop.stop_requested()) return WaitOutcome::kCancelled;
    // Reading the clock costs ~20 ns: spinning waiters look at it every 64 rounds.
    if (deadline && (mode == WaitMode::kBlocking || round % 64 == 0) &&
        std::chrono::steady_clock::now() >= *deadline) {
      return WaitOutcome::kTimeout;
    }
    if (mode == WaitMode::kSpin || (mode == WaitMode::kBlocking && round < kSpinsBeforeYield)) {
      cpu_relax();
      continue;
    }
    if (mode == WaitMode::kYield || round < kRoundsBeforePark) {
      std::this_thread::yield();
      continue;
    }
    if (wake_not_promised() && round < kRoundsBeforePark + 256) {
      // The other side is mid-operation: it finishes soon. Don't arm the parker for
      // it (arming makes every publish pay a wake-up syscall).
      std::this_thread::yield();
      continue;
    }
    if (!on_stop && stop.stop_possible()) on_stop.emplace(stop, Waker{&parker});
    // Timed: this round may sleep on the raw futex (wait_until()), which wake_all() wakes
    // only for registered timed waiters; the poll below counts, else it sleeps its 100 us out.
    const bool polls = round >= kRoundsBeforePark + 256;
    const bool timed = deadline.has_value() || park_slice.has_value() || polls;
    const uint32_t epoch = parker.prepare_wait(timed);
    after_arm();
    if (!ready() && !stop.stop_requested()) {
      if (wake_not_promised()) {
        // The other side is mid-operation and may not wake us. It usually finishes
        // soon (yield); if it is itself held up (a kBlock producer waiting for space),
        // poll with short sleeps rather than burn a core.
        if (!polls) {
          std::this_thread::yield();
        } else {
          auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(100);
          if (deadline && *deadline < until) until = *deadline;
          parker.wait_until(epoch, until);
        }
      } else if (deadline) {
        parker.wait_until(epoch, *deadline);
      } else if (park_slice) {
        parker.wait_until(epoch, std::chrono::steady_clock::now() + *park_slice);
      } else {
        parker.wait(epoch);
      }
    }
    parker.finish_wait(timed);
  }
}

}  // namespace streamcache::detail
