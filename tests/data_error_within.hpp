// Runs a reader in a child process with a capped address space, so that a test of a hostile input proves the
// reader refuses it before allocating what the input claims (no test allocates for real). Linux only.
#pragma once

#if defined(__linux__)
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <new>
#include <string>

#include "lgm/core/error.hpp"

namespace lgm::test {

/// Runs f in a child process whose address space may grow by at most `headroom` bytes beyond what it has, and
/// returns "" when f threw a DataError containing `expected`, else what happened. An allocation of more than
/// the headroom fails there (bad_alloc, or the sanitizer's out-of-memory abort).
template <class F>
std::string data_error_within(std::size_t headroom, const std::string& expected, F&& f) {
  long pages = 0;
  std::ifstream("/proc/self/statm") >> pages;  // first field: the address space in pages
  const auto vm = static_cast<rlim_t>(pages) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE));
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    const rlimit limit{vm + headroom, vm + headroom};
    if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(20);
    try {
      f();
      _exit(21);
    } catch (const lgm::DataError& e) {
      _exit(std::string(e.what()).find(expected) != std::string::npos ? 0 : 22);
    } catch (const std::bad_alloc&) {
      _exit(23);
    } catch (...) {
      _exit(24);
    }
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return "fork or waitpid failed";
  if (WIFSIGNALED(status)) return "the child died of signal " + std::to_string(WTERMSIG(status));
  switch (WIFEXITED(status) ? WEXITSTATUS(status) : -1) {
    case 0:
      return "";
    case 20:
      return "setrlimit failed";
    case 21:
      return "no exception";
    case 22:
      return "a DataError without \"" + expected + "\"";
    case 23:
      return "std::bad_alloc: the reader allocated more than " + std::to_string(headroom >> 20) + " MiB";
    case 24:
      return "another exception";
    default:
      return "exit status " + std::to_string(WEXITSTATUS(status));
  }
}

}  // namespace lgm::test
#endif
