// Lock types with clang thread-safety annotations.
#pragma once

#include <absl/base/thread_annotations.h>

#include <mutex>
#include <shared_mutex>

namespace streamcache::detail {

// Why not absl::Mutex: Debian's libabsl is not built with ThreadSanitizer, and absl::Mutex
// synchronizes inside that library with raw futex calls, so TSan cannot see its
// happens-before edges and reports every access it protects as a race. std::mutex and
// std::shared_mutex are pthread mutexes, which TSan intercepts. These wrappers only add
// the annotations that let clang's -Wthread-safety check the lock discipline.

/// A reader-writer lock (pthread_rwlock).
class ABSL_LOCKABLE SharedMutex {
 public:
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  bool try_lock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return mu_.try_lock(); }
  void lock_shared() ABSL_SHARED_LOCK_FUNCTION() { mu_.lock_shared(); }
  void unlock_shared() ABSL_UNLOCK_FUNCTION() { mu_.unlock_shared(); }
  /// Tells the analysis the caller holds the lock (for lambdas, which it does not follow).
  void assert_held() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

 private:
  std::shared_mutex mu_;
};

/// An exclusive lock (pthread_mutex).
class ABSL_LOCKABLE Mutex {
 public:
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  bool try_lock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return mu_.try_lock(); }
  void assert_held() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

template <class M>
class ABSL_SCOPED_LOCKABLE WriterLock {
 public:
  explicit WriterLock(M& mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_.lock(); }
  ~WriterLock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  M& mu_;
};

class ABSL_SCOPED_LOCKABLE ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) { mu_.lock_shared(); }
  ~ReaderLock() ABSL_UNLOCK_FUNCTION() { mu_.unlock_shared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& mu_;
};

}  // namespace streamcache::detail
