#include "streamcache/generator.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace streamcache {
namespace {

// ---- The range concepts the contract promises, checked by the compiler. ----
static_assert(std::ranges::view<Generator<int>>);
static_assert(std::ranges::input_range<Generator<int>>);
static_assert(!std::ranges::forward_range<Generator<int>>);
static_assert(std::movable<Generator<int>>);
static_assert(!std::copyable<Generator<int>>);
static_assert(std::is_nothrow_move_constructible_v<Generator<int>>);
static_assert(std::is_nothrow_move_assignable_v<Generator<int>>);
static_assert(std::same_as<std::ranges::range_reference_t<Generator<int>>, int&>);
static_assert(std::same_as<std::ranges::range_value_t<Generator<int>>, int>);
static_assert(std::same_as<std::ranges::range_reference_t<Generator<const int>>, const int&>);
static_assert(std::same_as<std::ranges::range_value_t<Generator<const int>>, int>);
static_assert(std::input_iterator<Generator<std::unique_ptr<int>>::iterator>);
static_assert(std::ranges::input_range<Generator<std::span<const int>>>);

// Records every construction and destruction, and poisons destroyed objects, so a test can
// tell whether the coroutine frame released its locals and whether `*it` still refers to a
// live object.
struct Tracked {
  static constexpr uint32_t kAlive = 0xA11CE;
  static constexpr uint32_t kDead = 0xDEAD;
  static inline int live = 0;

  explicit Tracked(int v) : value(v) { ++live; }
  Tracked(const Tracked& other) : value(other.value) { ++live; }
  Tracked(Tracked&& other) noexcept : value(other.value) { ++live; }
  Tracked& operator=(const Tracked&) = default;
  Tracked& operator=(Tracked&&) = default;
  ~Tracked() {
    state = kDead;
    --live;
  }

  int value;
  uint32_t state = kAlive;
};

class GeneratorTest : public ::testing::Test {
 protected:
  void SetUp() override { Tracked::live = 0; }
  void TearDown() override { EXPECT_EQ(Tracked::live, 0) << "a Tracked object leaked"; }
};

Generator<int> iota(int n) {
  for (int i = 0; i < n; ++i) co_yield i;
}

template <class Range>
std::vector<int> collect(Range&& range) {
  std::vector<int> out;
  for (int v : range) out.push_back(v);
  return out;
}

TEST_F(GeneratorTest, YieldsValuesInOrder) {
  EXPECT_EQ(collect(iota(5)), (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST_F(GeneratorTest, BodyWithoutYieldIsEmpty) {
  auto gen = iota(0);
  EXPECT_TRUE(gen.begin() == gen.end());
}

TEST_F(GeneratorTest, DefaultConstructedIsEmpty) {
  Generator<int> gen;
  EXPECT_TRUE(gen.begin() == gen.end());
}

TEST_F(GeneratorTest, BodyDoesNotRunBeforeBegin) {
  int steps = 0;
  auto body = [](int* counter) -> Generator<int> {
    ++*counter;
    co_yield 1;
    ++*counter;
    co_yield 2;
    ++*counter;
  };
  auto gen = body(&steps);
  EXPECT_EQ(steps, 0);  // created, not started
  auto it = gen.begin();
  EXPECT_EQ(steps, 1);  // ran to the first co_yield only
  EXPECT_EQ(*it, 1);
  ++it;
  EXPECT_EQ(steps, 2);
  EXPECT_EQ(*it, 2);
  ++it;
  EXPECT_EQ(steps, 3);
  EXPECT_TRUE(it == gen.end());
}

TEST_F(GeneratorTest, SecondBeginDoesNotResume) {
  auto gen = iota(3);
  auto first = gen.begin();
  ++first;
  auto second = gen.begin();
  EXPECT_EQ(*second, 1);
}

TEST_F(GeneratorTest, LvalueYieldExposesTheBodysObject) {
  // `*it` is a T& to the body's own local: a write through it is seen by the body.
  std::vector<int> seen_by_body;
  auto body = [](std::vector<int>* seen) -> Generator<int> {
    int x = 10;
    co_yield x;
    seen->push_back(x);
    co_yield x;
  };
  auto gen = body(&seen_by_body);
  auto it = gen.begin();
  *it = 42;
  ++it;
  EXPECT_EQ(seen_by_body, std::vector<int>{42});
  EXPECT_EQ(*it, 42);
}

TEST_F(GeneratorTest, RvalueYieldStaysAliveUntilNextIncrement) {
  auto body = []() -> Generator<Tracked> {
    co_yield Tracked(1);
    co_yield Tracked(2);
  };
  auto gen = body();
  auto it = gen.begin();
  EXPECT_EQ(Tracked::live, 1);
  EXPECT_EQ(it->state, Tracked::kAlive);
  EXPECT_EQ(it->value, 1);
  ++it;
  EXPECT_EQ(Tracked::live, 1);  // the first temporary died when the body resumed
  EXPECT_EQ(it->state, Tracked::kAlive);
  EXPECT_EQ(it->value, 2);
  ++it;
  EXPECT_TRUE(it == gen.end());
  EXPECT_EQ(Tracked::live, 0);
}

TEST_F(GeneratorTest, ConvertedYieldIsKeptInTheFrame) {
  // `co_yield i` with an int into Generator<long> materialises a long temporary.
  auto body = []() -> Generator<int64_t> {
    for (int i = 1; i <= 3; ++i) co_yield i;
  };
  std::vector<int64_t> out;
  for (int64_t& v : body()) out.push_back(v);
  EXPECT_EQ(out, (std::vector<int64_t>{1, 2, 3}));
}

TEST_F(GeneratorTest, DestroyingMidStreamRunsLocalDestructors) {
  auto body = [](Tracked param) -> Generator<int> {
    Tracked outer(0);
    for (int i = 0;; ++i) {
      Tracked inner(i);
      co_yield inner.value + param.value + outer.value;
    }
  };
  {
    auto gen = body(Tracked(100));
    auto it = gen.begin();
    EXPECT_EQ(*it, 100);
    ++it;
    EXPECT_EQ(*it, 101);
    // The frame holds the parameter copy, `outer` and the current `inner`.
    EXPECT_EQ(Tracked::live, 3);
  }
  EXPECT_EQ(Tracked::live, 0);
}

TEST_F(GeneratorTest, DestroyingBeforeBeginReleasesParameters) {
  auto body = [](Tracked param) -> Generator<int> { co_yield param.value; };
  {
    auto gen = body(Tracked(7));
    EXPECT_EQ(Tracked::live, 1);  // the frame's copy of the parameter
  }
  EXPECT_EQ(Tracked::live, 0);
}

TEST_F(GeneratorTest, BreakingOutOfRangeForThenDroppingReleasesLocals) {
  auto body = []() -> Generator<int> {
    Tracked guard(0);
    for (int i = 0;; ++i) co_yield i;
  };
  int last = -1;
  for (int v : body()) {
    last = v;
    if (v == 3) break;
  }
  EXPECT_EQ(last, 3);
  EXPECT_EQ(Tracked::live, 0);  // the range-for's temporary Generator is gone
}

TEST_F(GeneratorTest, ExceptionBeforeFirstYieldRethrowsAtBegin) {
  auto body = []() -> Generator<int> {
    Tracked local(0);
    throw std::runtime_error("boom at start");
    co_yield 1;
  };
  auto gen = body();
  try {
    gen.begin();
    FAIL() << "begin() did not rethrow";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "boom at start");
  }
  EXPECT_EQ(Tracked::live, 0);  // unwinding the body destroyed its locals
  EXPECT_TRUE(gen.begin() == gen.end());  // and the sequence has ended
}

TEST_F(GeneratorTest, ExceptionAfterYieldRethrowsAtIncrement) {
  auto body = []() -> Generator<int> {
    co_yield 1;
    co_yield 2;
    throw std::logic_error("boom at 3");
  };
  auto gen = body();
  auto it = gen.begin();
  EXPECT_EQ(*it, 1);
  ++it;
  EXPECT_EQ(*it, 2);
  EXPECT_THROW(++it, std::logic_error);
  EXPECT_TRUE(it == gen.end());
}

TEST_F(GeneratorTest, ExceptionPropagatesThroughRangeFor) {
  auto body = []() -> Generator<int> {
    co_yield 1;
    throw std::runtime_error("mid-stream");
  };
  std::vector<int> seen;
  EXPECT_THROW(
      {
        for (int v : body()) seen.push_back(v);
      },
      std::runtime_error);
  EXPECT_EQ(seen, std::vector<int>{1});
}

TEST_F(GeneratorTest, MoveConstructionTransfersTheStream) {
  auto a = iota(4);
  auto it = a.begin();
  ++it;  // a is now at 1
  Generator<int> b(std::move(a));
  EXPECT_TRUE(a.begin() == a.end());  // NOLINT(bugprone-use-after-move): moved-from is empty
  // b continues the same frame; the old iterator still points into it.
  EXPECT_EQ(*it, 1);
  ++it;
  EXPECT_EQ(*it, 2);
  EXPECT_TRUE(b.begin() != b.end());
  EXPECT_EQ(*b.begin(), 2);
}

TEST_F(GeneratorTest, MoveAssignmentDestroysThePreviousFrame) {
  auto holds_tracked = []() -> Generator<int> {
    Tracked local(5);
    co_yield local.value;
  };
  auto target = holds_tracked();
  EXPECT_EQ(*target.begin(), 5);
  EXPECT_EQ(Tracked::live, 1);
  target = iota(2);
  EXPECT_EQ(Tracked::live, 0);  // the overwritten generator's frame is gone
  EXPECT_EQ(collect(target), (std::vector<int>{0, 1}));
}

TEST_F(GeneratorTest, SelfMoveAssignmentKeepsTheStream) {
  auto gen = iota(2);
  auto& alias = gen;
  gen = std::move(alias);
  EXPECT_EQ(collect(gen), (std::vector<int>{0, 1}));
}

TEST_F(GeneratorTest, MovedFromGeneratorIsSafeToDestroyAndReassign) {
  auto body = []() -> Generator<int> {
    Tracked local(1);
    co_yield 1;
  };
  auto a = body();
  a.begin();
  auto b = std::move(a);
  a = iota(1);  // NOLINT(bugprone-use-after-move): reassigning a moved-from value is allowed
  EXPECT_EQ(collect(a), std::vector<int>{0});
  EXPECT_EQ(Tracked::live, 1);  // still owned by b
}

TEST_F(GeneratorTest, MoveOnlyValuesCanBeMovedOutOfTheIterator) {
  auto body = []() -> Generator<std::unique_ptr<int>> {
    for (int i = 0; i < 3; ++i) co_yield std::make_unique<int>(i);
    auto named = std::make_unique<int>(3);
    co_yield std::move(named);
  };
  std::vector<std::unique_ptr<int>> taken;
  for (auto& p : body()) taken.push_back(std::move(p));
  ASSERT_EQ(taken.size(), 4U);
  for (int i = 0; i < 4; ++i) {
    ASSERT_NE(taken[static_cast<size_t>(i)], nullptr);
    EXPECT_EQ(*taken[static_cast<size_t>(i)], i);
  }
}

TEST_F(GeneratorTest, ConstElementsYieldLvaluesAndTemporaries) {
  auto body = []() -> Generator<const std::string> {
    const std::string named = "named";
    co_yield named;
    co_yield std::string("temporary");
  };
  std::vector<std::string> out;
  for (const std::string& s : body()) out.push_back(s);
  EXPECT_EQ(out, (std::vector<std::string>{"named", "temporary"}));
}

TEST_F(GeneratorTest, SpanYieldsExposeBatchesWithoutCopying) {
  // The shape StreamingMap::stream_batches has: the body owns a buffer, yields views of it.
  auto batches = [](int total, size_t batch) -> Generator<std::span<const int>> {
    std::vector<int> buffer;
    int next = 0;
    while (next < total) {
      buffer.clear();
      while (buffer.size() < batch && next < total) buffer.push_back(next++);
      co_yield std::span<const int>(buffer);
    }
  };
  std::vector<size_t> sizes;
  std::vector<int> all;
  for (std::span<const int> s : batches(10, 4)) {
    sizes.push_back(s.size());
    all.insert(all.end(), s.begin(), s.end());
  }
  EXPECT_EQ(sizes, (std::vector<size_t>{4, 4, 2}));
  EXPECT_EQ(all, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST_F(GeneratorTest, SpanYieldConvertsFromAContainerLvalue) {
  auto body = []() -> Generator<std::span<const int>> {
    const std::vector<int> v{1, 2, 3};
    co_yield v;  // converted to a span temporary kept in the frame
  };
  auto gen = body();
  auto it = gen.begin();
  ASSERT_TRUE(it != gen.end());
  EXPECT_EQ(it->size(), 3U);
  EXPECT_EQ((*it)[2], 3);
}

TEST_F(GeneratorTest, YieldsOneMillionItemsWithoutGrowingTheStack) {
  // Each ++ is one resume and one suspend: constant stack depth however long the stream.
  // (A recursive design would overflow here, or under ASan's larger frames.)
  constexpr int kCount = 1'000'000;
  int64_t sum = 0;
  int count = 0;
  for (int v : iota(kCount)) {
    sum += v;
    ++count;
  }
  EXPECT_EQ(count, kCount);
  EXPECT_EQ(sum, int64_t{kCount} * (kCount - 1) / 2);
}

#if !defined(__clang__) || __clang_major__ >= 15
// clang 14 cannot compile libstdc++ 12's std::views pipes at all.
TEST_F(GeneratorTest, ViewsTakeStopsEarlyAndReleasesTheFrame) {
  int resumed = 0;
  auto endless = [](int* resumes) -> Generator<int> {
    Tracked guard(0);
    for (int i = 0;; ++i) {
      ++*resumes;
      co_yield i * i;
    }
  };
  std::vector<int> out;
  for (int v : endless(&resumed) | std::views::take(4)) out.push_back(v);
  EXPECT_EQ(out, (std::vector<int>{0, 1, 4, 9}));
  // take(4)'s counted_iterator increments the underlying iterator after the 4th element
  // too (P2406), so the body runs up to its 5th co_yield; it must go no further.
  EXPECT_EQ(resumed, 5);
  EXPECT_EQ(Tracked::live, 0);
}

TEST_F(GeneratorTest, ComposesWithTransformAndFilter) {
  auto evens_squared = iota(10) | std::views::filter([](int v) { return v % 2 == 0; }) |
                       std::views::transform([](int v) { return v * v; });
  std::vector<int> out;
  for (int v : evens_squared) out.push_back(v);
  EXPECT_EQ(out, (std::vector<int>{0, 4, 16, 36, 64}));
}
#endif

}  // namespace
}  // namespace streamcache
