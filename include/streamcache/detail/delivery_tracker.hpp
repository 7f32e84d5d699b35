// Which maintenance passes are still delivering their notifications, so that the cache's
// run_pending_tasks() can wait for the passes that ran before its own.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

namespace streamcache::detail {

/// Maintenance collects its notifications under the maintenance lock and delivers them
/// after releasing it (a listener must not run under a lock of the cache). So another
/// thread's run_pending_tasks() can run its own pass while an earlier one is still being
/// delivered: it waits here for every pass numbered up to its own.
///
/// Passes are numbered under the maintenance lock (increasing); begin() runs under it too,
/// end() after the delivery. A std::mutex and condition variable rather than absl::Mutex:
/// Debian's absl is not built with ThreadSanitizer (see mutex.hpp). Touched only by
/// passes that have notifications, so a cache without a listener never comes here.
class DeliveryTracker {
 public:
  /// Registers pass `ticket` as delivering; false if that could not be recorded (out of
  /// memory: the delivery then goes unwaited-for rather than failing maintenance).
  bool begin(uint64_t ticket) noexcept {
    try {
      std::lock_guard<std::mutex> lock(mu_);
      in_flight_.push_back(ticket);
      return true;
    } catch (...) {
      return false;
    }
  }

  /// Pass `ticket` (0: not registered) has delivered everything.
  void end(uint64_t ticket) noexcept {
    if (ticket == 0) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_flight_.erase(std::find(in_flight_.begin(), in_flight_.end(), ticket));
    }
    done_.notify_all();
  }

  /// Waits until no pass numbered `ticket` or lower is delivering.
  void wait_through(uint64_t ticket) {
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] {
      return std::none_of(in_flight_.begin(), in_flight_.end(), [&](uint64_t t) { return t <= ticket; });
    });
  }

 private:
  std::mutex mu_;
  std::condition_variable done_;
  std::vector<uint64_t> in_flight_;  // a handful at most: one per thread delivering
};

}  // namespace streamcache::detail
