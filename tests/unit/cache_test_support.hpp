// What the Cache's unit tests share: a listener that records its calls, a weigher, a
// deadlock detector.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
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

// A weigher that refuses the value "bad" (throws std::runtime_error) and weighs 1 otherwise:
// a value the cache cannot take.
inline uint32_t throws_on_bad(const int&, const std::string& v) {
  if (v == "bad") throw std::runtime_error("weigher refuses \"bad\"");
  return 1;
}

// An Eq for int keys that throws std::runtime_error once armed: the next `eq_throws_left`
// comparisons throw. For the paths that look a key up where nothing else can fail.
inline std::atomic<int> eq_throws_left{0};
struct ArmedEq {
  bool operator()(int a, int b) const {
    if (eq_throws_left.load() > 0 && eq_throws_left.fetch_sub(1) > 0) throw std::runtime_error("eq");
    return a == b;
  }
};

// Runs `scenario` on a thread of its own and waits at most `timeout` for it: a deadlock then
// fails the test instead of hanging the suite. On a timeout the thread stays blocked,
// detached, with whatever it holds: `scenario` must own (share) everything it touches.
inline bool finishes_within(std::chrono::seconds timeout, std::function<void()> scenario) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  std::thread([done, scenario = std::move(scenario)] {
    scenario();
    done->set_value();
  }).detach();
  return finished.wait_for(timeout) == std::future_status::ready;
}

}  // namespace streamcache::test_support
