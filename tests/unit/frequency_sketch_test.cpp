#include "streamcache/detail/frequency_sketch.hpp"

#include <gtest/gtest.h>

#include <cstdint>

namespace streamcache::detail {
namespace {

// The cache hands the sketch well-mixed hashes; tests mix small integers the same way.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

TEST(FrequencySketch, UnsizedSketchEstimatesZeroAndDropsIncrements) {
  FrequencySketch sketch;
  EXPECT_FALSE(sketch.initialized());
  sketch.increment(mix(1));
  EXPECT_EQ(sketch.frequency(mix(1)), 0u);
  EXPECT_EQ(sketch.additions(), 0u);
}

TEST(FrequencySketch, CountsEachIncrementUpToFifteen) {
  FrequencySketch sketch(1024);
  for (uint32_t i = 1; i <= 20; ++i) {
    sketch.increment(mix(7));
    EXPECT_EQ(sketch.frequency(mix(7)), std::min<uint32_t>(i, FrequencySketch::kMaxFrequency));
  }
}

TEST(FrequencySketch, IncrementReturnsTheEstimateAfterItAlsoWhenItAges) {
  FrequencySketch empty;
  EXPECT_EQ(empty.increment(mix(1)), 0u);
  FrequencySketch sketch(64, /*aging_factor=*/2);  // ages every 128 increments
  uint64_t agings = 0;
  for (uint64_t i = 0; i < 5000; ++i) {
    const uint64_t h = mix(i % 97);
    const uint64_t before = sketch.additions();
    const uint32_t returned = sketch.increment(h);
    EXPECT_EQ(returned, sketch.frequency(h)) << "increment " << i;
    agings += sketch.additions() < before ? 1 : 0;
  }
  EXPECT_GT(agings, 10u);
}

TEST(FrequencySketch, NeverUnderestimatesBeforeAging) {
  FrequencySketch sketch(512);
  // 200 keys, key k seen k % 8 times: 700 increments, below the aging period of 5120.
  for (uint64_t k = 0; k < 200; ++k) {
    for (uint64_t i = 0; i < k % 8; ++i) sketch.increment(mix(k));
  }
  ASSERT_LT(sketch.additions(), sketch.sample_size());
  uint64_t overestimated = 0;
  for (uint64_t k = 0; k < 200; ++k) {
    EXPECT_GE(sketch.frequency(mix(k)), k % 8) << "key " << k;
    overestimated += sketch.frequency(mix(k)) > k % 8 ? 1 : 0;
  }
  // 16 counters per expected entry: collisions must be the exception.
  EXPECT_LT(overestimated, 20u);
}

TEST(FrequencySketch, ResetHalvesEveryCounter) {
  FrequencySketch sketch(64);
  for (int i = 0; i < 10; ++i) sketch.increment(mix(1));
  for (int i = 0; i < 3; ++i) sketch.increment(mix(2));
  sketch.reset();
  EXPECT_EQ(sketch.frequency(mix(1)), 5u);
  EXPECT_EQ(sketch.frequency(mix(2)), 1u);
}

TEST(FrequencySketch, AgesAfterSampleSizeIncrements) {
  FrequencySketch sketch(64, /*aging_factor=*/10);
  ASSERT_EQ(sketch.sample_size(), 640u);
  for (int i = 0; i < 15; ++i) sketch.increment(mix(1));
  ASSERT_EQ(sketch.frequency(mix(1)), 15u);
  // Distinct one-off keys until the aging fires (additions_ drops back).
  uint64_t key = 1000;
  while (sketch.additions() != 0 && sketch.additions() < sketch.sample_size() - 1) {
    sketch.increment(mix(key++));
  }
  sketch.increment(mix(key++));
  EXPECT_LT(sketch.additions(), sketch.sample_size() / 2 + 1);
  // 15 halved is 7; collisions with the one-off keys may have added a little before that.
  EXPECT_GE(sketch.frequency(mix(1)), 7u);
  EXPECT_LE(sketch.frequency(mix(1)), 8u);
}

TEST(FrequencySketch, FingerprintIsIdempotentSoCallersMayStoreIt) {
  for (uint64_t k = 0; k < 1000; ++k) {
    const uint64_t h = mix(k);
    EXPECT_EQ(FrequencySketch::fingerprint(FrequencySketch::fingerprint(h)), FrequencySketch::fingerprint(h));
  }
  FrequencySketch sketch(128);
  sketch.increment(mix(3));
  sketch.increment(FrequencySketch::fingerprint(mix(3)));
  EXPECT_EQ(sketch.frequency(mix(3)), 2u);
}

TEST(FrequencySketch, CapacityIsCappedForHugeCaches) {
  FrequencySketch sketch;
  sketch.ensure_capacity(UINT64_MAX);
  EXPECT_EQ(sketch.capacity(), FrequencySketch::kMaxCapacity);
  EXPECT_GT(sketch.sample_size(), 0u);
}

TEST(FrequencySketch, GrowingForgetsCountsAndNeverShrinks) {
  FrequencySketch sketch(64);
  sketch.increment(mix(1));
  sketch.ensure_capacity(16);  // smaller: no-op
  EXPECT_EQ(sketch.frequency(mix(1)), 1u);
  sketch.ensure_capacity(4096);
  EXPECT_EQ(sketch.capacity(), 4096u);
  EXPECT_EQ(sketch.frequency(mix(1)), 0u);
}

}  // namespace
}  // namespace streamcache::detail
