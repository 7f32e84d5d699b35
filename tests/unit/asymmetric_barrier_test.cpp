// heavy_barrier() failing after heavy_barrier_available() said it works: the handshakes
// built on it could no longer be trusted, so the process must stop, saying why, instead
// of letting a reader sit beside a writer. (A review's reproducer: a process that
// sandboxes itself with a seccomp filter after it first used the library.)
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdlib>

#include "streamcache/detail/asymmetric_barrier.hpp"
#include "streamcache/detail/mutex.hpp"

#if defined(__linux__)
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

namespace streamcache::detail {
namespace {

#if defined(__linux__) && defined(SYS_membarrier)
// Makes membarrier(2) fail with EPERM for this process from now on (its children too).
void deny_membarrier() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_membarrier, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1 /* EPERM */),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    std::abort();  // no seccomp here: the death test then fails on the message
  }
}

TEST(AsymmetricBarrierDeathTest, WriterRevokingABiasWhenMembarrierStartsFailingAbortsSayingWhy) {
  if (!heavy_barrier_available()) GTEST_SKIP() << "no expedited membarrier here: the bias is never used";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        SharedMutex mu;
        mu.bias_if_quiet();                        // the first check only starts the quiet period
        if (!mu.bias_if_quiet().biased) std::exit(0);  // not biased: nothing to revoke (fails the test)
        deny_membarrier();
        mu.lock();  // revoking the bias needs the heavy barrier
        mu.unlock();
      },
      "membarrier.*keeps failing");
}
#endif

}  // namespace
}  // namespace streamcache::detail
