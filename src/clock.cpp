#include "streamcache/clock.hpp"

#include <stdexcept>
#include <string>

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
  // A CAS loop rather than fetch_add: an advance past the largest time point would wrap the
  // count to a negative time, i.e. move the clock backwards (expired entries would come
  // back). Such an advance is refused and the clock left unchanged.
  int64_t current = nanos_.load(std::memory_order_relaxed);  // relaxed: see now()
  int64_t next;
  do {
    if (__builtin_add_overflow(current, d.count(), &next)) {
      throw std::invalid_argument("ManualClock::advance: d = " + std::to_string(d.count()) +
                                  " ns would move the clock past its largest time point");
    }
  } while (!nanos_.compare_exchange_weak(current, next, std::memory_order_relaxed));  // relaxed: see now()
}

}  // namespace streamcache
