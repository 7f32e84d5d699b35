#include "streamcache/clock.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace streamcache {
namespace {

using std::chrono::seconds;

TEST(ManualClock, StandsStillUntilAdvanced) {
  ManualClock clock;
  const auto t0 = clock.now();
  EXPECT_EQ(clock.now(), t0);
  clock.advance(seconds(15));
  EXPECT_EQ(clock.now() - t0, seconds(15));
}

TEST(ManualClock, RejectsNegativeAdvance) {
  ManualClock clock;
  EXPECT_THROW(clock.advance(seconds(-1)), std::invalid_argument);
}

TEST(SystemClock, IsSharedAndMonotonic) {
  auto clock = Clock::system();
  EXPECT_EQ(clock, Clock::system());
  const auto a = clock->now();
  EXPECT_LE(a, clock->now());
}

}  // namespace
}  // namespace streamcache
