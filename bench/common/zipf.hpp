// The key streams every cache benchmark and trace share: splitmix64 and a Zipf sampler
// bit-compatible with ../shared/traces/gen_trace.py (and the anchors' harnesses).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace streamcache::bench {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : x_(seed) {}
  uint64_t next() {
    x_ += 0x9E3779B97F4A7C15ULL;
    uint64_t z = x_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1) from the top 53 bits.
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }

 private:
  uint64_t x_;
};

/// Zipf(s) over ranks 0..n-1 (rank 0 the hottest): a 53-bit uniform, then lower_bound in
/// the normalised CDF of (r + 1)^-s.
class ZipfSampler {
 public:
  ZipfSampler(uint64_t n, double s) : cdf_(n) {
    double sum = 0;
    for (uint64_t r = 1; r <= n; ++r) {
      sum += std::pow(static_cast<double>(r), -s);
      cdf_[r - 1] = sum;
    }
    for (double& c : cdf_) c /= sum;
  }
  /// A rank in [0, n).
  uint64_t rank(SplitMix64& rng) const {
    const double u = rng.uniform();
    auto it = std::lower_bound(cdf_.begin(), cdf_.end(), u);
    if (it == cdf_.end()) --it;
    return static_cast<uint64_t>(it - cdf_.begin());
  }
  uint64_t n() const { return cdf_.size(); }

 private:
  std::vector<double> cdf_;
};

/// Rank -> key as gen_trace.py does it: a bijection scattering hot ranks when n is a power
/// of two (so hot keys are not adjacent integers), else rank + 1.
inline uint64_t zipf_key(uint64_t rank, uint64_t n) {
  if ((n & (n - 1)) == 0) return 1 + ((rank * 0x9E3779B1ULL) & (n - 1));
  return rank + 1;
}

}  // namespace streamcache::bench
