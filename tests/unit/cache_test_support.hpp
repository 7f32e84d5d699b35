// What the Cache's unit tests share: a listener that records its calls, a weigher.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "streamcache/cache_types.hpp"

namespace streamcache::test_support {

// Records every listener call, in order.
struct Removals {
  std::vector<std::tuple<int, std::string, RemovalCause>> calls;
  std::function<void(const int&, const std::string&, RemovalCause)> listener() {
    return [this](const int& k, const std::string& v, RemovalCause c) { calls.emplace_back(k, v, c); };
  }
  size_t count(RemovalCause cause) const {
    size_t n = 0;
    for (const auto& c : calls) n += std::get<2>(c) == cause;
    return n;
  }
};

// A weigher: an entry weighs its value's length.
inline uint32_t value_length(const int&, const std::string& v) { return static_cast<uint32_t>(v.size()); }

}  // namespace streamcache::test_support
