#include "streamcache/clock.hpp"

#include <stdexcept>

namespace streamcache {
namespace {

class SystemClock final : public Clock {
 public:
  time_point now() const override { return std::chrono::steady_clock::now(); }
};

}  // namespace

std::shared_ptr<Clock> Clock::system() {
  static const std::shared_ptr<Clock> instance = std::make_shared<SystemClock>();
  return instance;
}

ManualClock::ManualClock() : nanos_(std::chrono::nanoseconds(std::chrono::hours(1)).count()) {}

Clock::time_point ManualClock::now() const {
  // relaxed: the clock is a single value; callers need no ordering with other memory.
  return time_point(duration(nanos_.load(std::memory_order_relaxed)));
}

void ManualClock::advance(Clock::duration d) {
  if (d.count() < 0) throw std::invalid_argument("ManualClock::advance: negative duration");
  nanos_.fetch_add(d.count(), std::memory_order_relaxed);  // relaxed: see now()
}

}  // namespace streamcache
