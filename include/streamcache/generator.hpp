// A synchronous C++20 coroutine generator: the type every StreamingMap stream returns.
#pragma once

// libstdc++ 12 has no std::generator (C++23), so this is a small one of our own. It
// follows std::generator's contract where the two overlap (lazy start, `*it` refers to the
// yielded object, move-only, input range) and leaves out what the streams do not need
// (nested `elements_of` yields, allocators, yielding references).

#include <coroutine>
#include <cstddef>
#include <exception>
#include <iterator>
#include <memory>
#include <ranges>
#include <type_traits>
#include <utility>

namespace streamcache {

template <class T>
class Generator;

namespace detail {

// clang < 15 cannot compile libstdc++ 12's view_interface (its constrained members trip
// the compiler), so there the Generator opts into std::ranges::view through view_base
// instead; it loses only view_interface's convenience members (empty(), front()), which
// an input range could not offer anyway.
#if defined(__clang__) && __clang_major__ < 15
template <class Derived>
using GeneratorViewBase = std::ranges::view_base;
#else
template <class Derived>
using GeneratorViewBase = std::ranges::view_interface<Derived>;
#endif

}  // namespace detail

/// A lazily evaluated sequence of `T` produced by a coroutine body that `co_yield`s.
///
///   Generator<int> iota(int n) { for (int i = 0; i < n; ++i) co_yield i; }
///   for (int& i : iota(3)) { ... }            // 0, 1, 2
///
/// Contract:
/// - The body does not run until `begin()`; `begin()` runs it to its first `co_yield`,
///   each `++` to the next. Call `begin()` once (a second call returns an iterator at the
///   current position without resuming).
/// - `*it` is a `T&` that refers to the yielded object itself: an lvalue yield exposes the
///   body's own object, an rvalue yield exposes a temporary kept in the coroutine frame.
///   Either stays valid until the next `++` (or the Generator's destruction); the consumer
///   may move from it, which is how move-only `T` is consumed.
/// - An exception that escapes the body is rethrown by the `begin()` or `++` that resumed
///   it; the sequence has then ended.
/// - Move-only. Destroying a Generator (finished or not) destroys the coroutine frame, which
///   runs the destructors of the body's live locals and parameters: a stream holding a
///   subscription releases it when its Generator goes away mid-stream.
/// - A moved-from or default-constructed Generator is empty: `begin() == end()`.
/// - `co_await` is not allowed in the body: nothing would resume a suspended awaiter, so the
///   body blocks in ordinary calls instead.
/// - A std::ranges::view and input_range: usable with range-for and views such as
///   `std::views::take`. Note that `take(n)` resumes the body once more after the n-th
///   element (its counted_iterator increments past it, see P2406): a body that blocks
///   waiting for element n + 1 blocks there, which is why the streams offer `stream_n`.
template <class T>
class Generator : public detail::GeneratorViewBase<Generator<T>> {
  static_assert(!std::is_reference_v<T>, "Generator<T&> is not supported; yield T itself");
  static_assert(!std::is_void_v<T>, "Generator<void> yields nothing");

 public:
  class promise_type;
  class iterator;
  using handle_type = std::coroutine_handle<promise_type>;

  class promise_type {
   public:
    Generator get_return_object() noexcept { return Generator(handle_type::from_promise(*this)); }

    // Lazy start: nothing runs until the consumer asks for the first element.
    std::suspend_always initial_suspend() const noexcept { return {}; }

    // Suspending at the end (rather than letting the frame free itself) leaves exactly one
    // owner, the Generator, to destroy the frame: no leak when the body finishes and no
    // double free when the consumer drops the Generator afterwards.
    std::suspend_always final_suspend() const noexcept { return {}; }

    // An lvalue yield exposes the body's object; the body is suspended until the next ++,
    // so the object outlives the consumer's use of `*it`.
    std::suspend_always yield_value(T& value) noexcept {
      value_ = std::addressof(value);
      return {};
    }

    // An rvalue (or a value converted to T) is a temporary of the `co_yield` full-expression,
    // which contains the suspension point, so the compiler keeps it in the frame until the
    // body resumes: pointing at it is safe until the next ++.
    std::suspend_always yield_value(T&& value) noexcept {
      value_ = std::addressof(value);
      return {};
    }

    void return_void() const noexcept {}

    // Stored rather than rethrown here: the iterator rethrows it after resume() returns,
    // when the frame is cleanly parked at its final suspend point.
    void unhandled_exception() noexcept { exception_ = std::current_exception(); }

    // See the class comment: a synchronous generator has no one to resume an awaiter.
    template <class U>
    void await_transform(U&&) = delete;

   private:
    friend class Generator;
    friend class iterator;

    void rethrow_if_failed() {
      if (exception_) std::rethrow_exception(std::exchange(exception_, nullptr));
    }

    std::add_pointer_t<T> value_ = nullptr;
    std::exception_ptr exception_;
    bool started_ = false;
  };

  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = std::remove_cv_t<T>;
    using difference_type = std::ptrdiff_t;
    using reference = T&;

    iterator() = default;

    reference operator*() const noexcept { return *handle_.promise().value_; }
    std::add_pointer_t<T> operator->() const noexcept { return handle_.promise().value_; }

    iterator& operator++() {
      handle_.resume();
      if (handle_.done()) handle_.promise().rethrow_if_failed();
      return *this;
    }
    void operator++(int) { ++*this; }

    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
      return !it.handle_ || it.handle_.done();
    }

   private:
    friend class Generator;
    explicit iterator(handle_type handle) noexcept : handle_(handle) {}

    handle_type handle_;
  };

  Generator() noexcept = default;
  Generator(Generator&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Generator& operator=(Generator&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;
  ~Generator() { reset(); }

  /// Runs the body to its first `co_yield` (or its end) the first time it is called.
  /// Rethrows an exception that escapes the body on the way.
  iterator begin() {
    if (handle_ && !handle_.promise().started_) {
      handle_.promise().started_ = true;
      handle_.resume();
      if (handle_.done()) handle_.promise().rethrow_if_failed();
    }
    return iterator(handle_);
  }

  std::default_sentinel_t end() const noexcept { return std::default_sentinel; }

 private:
  explicit Generator(handle_type handle) noexcept : handle_(handle) {}

  void reset() noexcept {
    if (handle_) std::exchange(handle_, nullptr).destroy();
  }

  handle_type handle_;
};

}  // namespace streamcache
