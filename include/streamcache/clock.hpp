// Injectable time source shared by a cache and its users.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>

namespace streamcache {

/// A monotonic time source. Caches read time only through a Clock, so tests can
/// inject a ManualClock and make expiry deterministic.
class Clock {
 public:
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::steady_clock::time_point;

  virtual ~Clock() = default;

  /// The current time. Must never go backwards.
  virtual time_point now() const = 0;

  /// The process-wide clock backed by std::chrono::steady_clock.
  static std::shared_ptr<Clock> system();
};

/// A clock that moves only when told: for tests. Safe to read and advance from
/// any thread.
class ManualClock : public Clock {
 public:
  /// Starts at a fixed, arbitrary time point (one hour after the steady_clock epoch,
  /// so that durations subtracted from it stay positive).
  ManualClock();

  time_point now() const override;

  /// Moves time forward by `d`. Throws std::invalid_argument for a negative `d`, or one that
  /// would overflow the clock (time never wraps backwards); the clock is then unchanged.
  void advance(Clock::duration d);

 private:
  std::atomic<int64_t> nanos_;
};

}  // namespace streamcache
