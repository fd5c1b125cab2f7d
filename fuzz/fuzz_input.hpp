// Helpers of the fuzz targets: a file in memory that the readers open by path, and a check that aborts (a crash
// that libFuzzer reports, with the input saved) when a property of a successful read does not hold.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace lgm::fuzz {

/// An anonymous in-memory file (memfd) reachable as /proc/self/fd/N: each input is written to it, no disk used.
class MemFile {
 public:
  explicit MemFile(const char* name) : m_fd(memfd_create(name, 0)) {
    if (m_fd < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    m_path = "/proc/self/fd/" + std::to_string(m_fd);
  }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  ~MemFile() { close(m_fd); }

  /// Replaces the file's content with `size` bytes and returns its path.
  const std::filesystem::path& write(const std::uint8_t* data, std::size_t size) {
    if (ftruncate(m_fd, 0) != 0) std::abort();
    std::size_t done = 0;
    while (done < size) {
      const ssize_t n = pwrite(m_fd, data + done, size - done, static_cast<off_t>(done));
      if (n <= 0) std::abort();
      done += static_cast<std::size_t>(n);
    }
    return m_path;
  }

 private:
  int m_fd;
  std::filesystem::path m_path;
};

/// Aborts with a message when a property of a read that succeeded is violated.
inline void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz property violated: %s\n", what);
  std::abort();
}

}  // namespace lgm::fuzz
