// Order statistics for the interleaved measurement tools (bench/tools/*_interleaved.cpp),
// which report medians and quartiles of many short measurements instead of one long one.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace streamcache::bench {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/// The q-quantile (0 <= q <= 1) by the nearest rank; v must not be empty.
inline double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5)];
}

}  // namespace streamcache::bench
