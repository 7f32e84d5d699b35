#include "streamcache/detail/read_epoch.hpp"

#include <gtest/gtest.h>

namespace streamcache::detail {
namespace {

TEST(ReadEpoch, EpochsCycleThroughOneTo255AndSkipZero) {
  EXPECT_EQ(epoch_after(1, 1), 2);
  EXPECT_EQ(epoch_after(254, 1), 255);
  EXPECT_EQ(epoch_after(255, 1), 1);
  EXPECT_EQ(epoch_after(254, 3), 2);
  uint8_t e = 1;
  for (int i = 0; i < 1000; ++i) {
    e = epoch_after(e, 1);
    ASSERT_NE(e, 0);
  }
}

TEST(ReadEpoch, AStampCoversItsEpochAndTheOnesItWasStampedAheadFor) {
  EXPECT_TRUE(stamp_covers(7, 7));
  EXPECT_FALSE(stamp_covers(7, 8)) << "a stamp of the previous epoch is stale";
  const uint8_t ahead = epoch_after(7, kMaxEpochsAhead - 1);
  for (uint32_t k = 0; k < kMaxEpochsAhead; ++k) EXPECT_TRUE(stamp_covers(ahead, epoch_after(7, k))) << k;
  EXPECT_FALSE(stamp_covers(ahead, epoch_after(7, kMaxEpochsAhead)));
}

TEST(ReadEpoch, CoverageWrapsAroundTheCycle) {
  const uint8_t ahead = epoch_after(254, kMaxEpochsAhead - 1);  // 254, 255, 1, 2
  EXPECT_TRUE(stamp_covers(ahead, 254));
  EXPECT_TRUE(stamp_covers(ahead, 255));
  EXPECT_TRUE(stamp_covers(ahead, 1));
  EXPECT_FALSE(stamp_covers(ahead, 253));
}

TEST(ReadEpoch, AStampCoversExactlyTheEpochsFromItsOwnBackToTheOnesItWasStampedAheadFrom) {
  for (int epoch = 1; epoch <= 255; ++epoch) {
    for (int stamp = 1; stamp <= 255; ++stamp) {
      bool stamped_ahead_from_here = false;
      for (uint32_t k = 0; k < kMaxEpochsAhead; ++k) {
        stamped_ahead_from_here = stamped_ahead_from_here || epoch_after(static_cast<uint8_t>(epoch), k) == stamp;
      }
      ASSERT_EQ(stamp_covers(static_cast<uint8_t>(stamp), static_cast<uint8_t>(epoch)), stamped_ahead_from_here)
          << "stamp " << stamp << ", epoch " << epoch;
    }
  }
}

TEST(ReadEpoch, ANeverAppliedNodeIsCoveredByNoEpoch) {
  for (int e = 1; e <= 255; ++e) EXPECT_FALSE(stamp_covers(0, static_cast<uint8_t>(e))) << e;
}

}  // namespace
}  // namespace streamcache::detail
