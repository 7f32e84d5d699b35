#include "streamcache/clock.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>

#include "streamcache/cache.hpp"

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

// An advance past the largest time point wrapped the count to a negative time: the clock
// went backwards and an expired entry came back (found by a review).
TEST(ManualClock, AdvancePastTheLargestTimeIsRefusedAndLeavesTheClockUnchanged) {
  ManualClock clock;
  clock.advance(seconds(5));
  const auto before = clock.now();
  EXPECT_THROW(clock.advance(Clock::duration::max()), std::invalid_argument);
  EXPECT_EQ(clock.now(), before);
  clock.advance(seconds(1));  // still usable
  EXPECT_EQ(clock.now() - before, seconds(1));
}

TEST(ManualClock, ExpiredEntryStaysExpiredWhenAHugeAdvanceIsRefused) {
  auto clock = std::make_shared<ManualClock>();
  auto cache = Cache<int, int>::builder().time_to_live(seconds(1)).clock(clock).build();
  cache.insert(1, 1);
  clock->advance(seconds(2));
  ASSERT_FALSE(cache.get(1));
  EXPECT_THROW(clock->advance(Clock::duration::max()), std::invalid_argument);
  EXPECT_FALSE(cache.contains_key(1));
  EXPECT_FALSE(cache.get(1));
}

TEST(SystemClock, IsSharedAndMonotonic) {
  auto clock = Clock::system();
  EXPECT_EQ(clock, Clock::system());
  const auto a = clock->now();
  EXPECT_LE(a, clock->now());
}

}  // namespace
}  // namespace streamcache
