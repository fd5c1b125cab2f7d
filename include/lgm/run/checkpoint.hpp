// The state of a run, saved at a sync and restored to continue it bitwise:
// docs/driver.md §Checkpoint and resume. Every stateful part of a run (the driver's buffers and counters, each policy,
// the optimizer state, a network's batch-norm statistics) names its fields in one function, `template <class Ar> void
// checkpoint(Ar&)`, that both writes (StateWriter) and reads (StateReader): the two directions cannot drift apart.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// A run's state in lgm's snapshot format: "LGMSNAP" and the format version, the fields (name, byte count,
/// bytes) in the order the run names them, then an FNV-1a checksum of everything before it.
struct RunSnapshot {
  std::vector<unsigned char> bytes;
};

inline constexpr std::uint32_t kSnapshotVersion = 1;

/// A snapshot that cannot be restored: damaged, of another format version, or of another run.
class SnapshotError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

inline constexpr char kSnapshotMagic[8] = {'L', 'G', 'M', 'S', 'N', 'A', 'P', '\0'};

inline std::uint64_t fnv1a(const unsigned char* p, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

template <class T>
concept SnapshotScalar = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T>;

template <class T>
concept SnapshotMatrix = requires(T& m, Index r, Index c) {
  m.resize(r, c);
  { m.rows() } -> std::convertible_to<Index>;
  { m.cols() } -> std::convertible_to<Index>;
  { m.data() } -> std::convertible_to<const double*>;
};

}  // namespace detail

/// Appends the fields of a run to a snapshot.
class StateWriter {
 public:
  static constexpr bool saving = true;

  StateWriter() {
    put(detail::kSnapshotMagic, sizeof(detail::kSnapshotMagic));
    put(&kSnapshotVersion, sizeof(kSnapshotVersion));
  }

  /// A field that must be equal when the snapshot is restored (d, M, a policy's name): saved like any other.
  template <class T>
  void check(const char* name, const T& value) {
    (*this)(name, value);
  }

  template <detail::SnapshotScalar T>
  void operator()(const char* name, const T& v) {
    field(name, &v, sizeof(T));
  }
  template <detail::SnapshotScalar T>
  void operator()(const char* name, const std::vector<T>& v) {
    field(name, v.data(), v.size() * sizeof(T));
  }
  template <detail::SnapshotMatrix M>
  void operator()(const char* name, const M& m) {
    const std::int64_t shape[2] = {m.rows(), m.cols()};
    field(name, shape, sizeof(shape));
    field(name, m.data(), static_cast<std::size_t>(m.rows() * m.cols()) * sizeof(double));
  }
  void operator()(const char* name, const std::string& s) { field(name, s.data(), s.size()); }

  /// The finished snapshot (the checksum appended).
  RunSnapshot finish() && {
    const std::uint64_t h = detail::fnv1a(m_bytes.data(), m_bytes.size());
    put(&h, sizeof(h));
    return RunSnapshot{std::move(m_bytes)};
  }

 private:
  void field(const char* name, const void* data, std::size_t bytes) {
    const auto name_len = static_cast<std::uint32_t>(std::strlen(name));
    const auto count = static_cast<std::uint64_t>(bytes);
    put(&name_len, sizeof(name_len));
    put(name, name_len);
    put(&count, sizeof(count));
    put(data, bytes);
  }
  void put(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    m_bytes.insert(m_bytes.end(), b, b + n);
  }

  std::vector<unsigned char> m_bytes;
};

/// Reads the fields of a run from a snapshot in the order they were written; any difference (a name, a size,
/// a checked value, the checksum, the version) is a SnapshotError that says which.
class StateReader {
 public:
  static constexpr bool saving = false;

  explicit StateReader(const RunSnapshot& s) : m_bytes(s.bytes) {
    constexpr std::size_t head = sizeof(detail::kSnapshotMagic) + sizeof(std::uint32_t);
    if (m_bytes.size() < head + sizeof(std::uint64_t) ||
        std::memcmp(m_bytes.data(), detail::kSnapshotMagic, sizeof(detail::kSnapshotMagic)) != 0)
      throw SnapshotError("not an lgm run snapshot (no LGMSNAP header)");
    std::uint32_t version = 0;
    std::memcpy(&version, m_bytes.data() + sizeof(detail::kSnapshotMagic), sizeof(version));
    if (version != kSnapshotVersion)
      throw SnapshotError("snapshot format version " + std::to_string(version) + "; this lgm reads version " +
                          std::to_string(kSnapshotVersion));
    m_end = m_bytes.size() - sizeof(std::uint64_t);
    std::uint64_t stored = 0;
    std::memcpy(&stored, m_bytes.data() + m_end, sizeof(stored));
    if (stored != detail::fnv1a(m_bytes.data(), m_end))
      throw SnapshotError("snapshot checksum mismatch: the snapshot is damaged");
    m_pos = head;
  }

  template <class T>
  void check(const char* name, const T& value) {
    T saved = value;
    (*this)(name, saved);
    if (!(saved == value))
      throw SnapshotError(std::string("snapshot of another run: its ") + name + " = " + detail::to_text(saved) +
                          ", this run's is " + detail::to_text(value));
  }

  template <detail::SnapshotScalar T>
  void operator()(const char* name, T& v) {
    const std::size_t n = open(name);
    expect_size(name, n, sizeof(T));
    take(&v, n);
  }
  template <detail::SnapshotScalar T>
  void operator()(const char* name, std::vector<T>& v) {
    const std::size_t n = open(name);
    if (n % sizeof(T) != 0) expect_size(name, n, (n / sizeof(T)) * sizeof(T));
    v.resize(n / sizeof(T));
    take(v.data(), n);
  }
  template <detail::SnapshotMatrix M>
  void operator()(const char* name, M& m) {
    std::int64_t shape[2] = {0, 0};
    const std::size_t n = open(name);
    expect_size(name, n, sizeof(shape));
    take(shape, n);
    if (shape[0] < 0 || shape[1] < 0) throw SnapshotError(std::string("snapshot field ") + name + ": bad shape");
    const std::size_t bytes = open(name);
    expect_size(name, bytes, static_cast<std::size_t>(shape[0] * shape[1]) * sizeof(double));
    m.resize(shape[0], shape[1]);
    take(m.data(), bytes);
  }
  void operator()(const char* name, std::string& s) {
    const std::size_t n = open(name);
    s.resize(n);
    take(s.data(), n);
  }

  /// Every field was read (a snapshot with more fields is another run's).
  void finish() const {
    if (m_pos != m_end) throw SnapshotError("snapshot of another run: fields left after the last one this run reads");
  }

 private:
  std::size_t open(const char* name) {
    std::uint32_t len = 0;
    take(&len, sizeof(len));
    if (len > m_end - m_pos) throw SnapshotError("snapshot truncated at field " + std::string(name));
    const std::string_view found(reinterpret_cast<const char*>(m_bytes.data() + m_pos), len);
    if (found != name)
      throw SnapshotError("snapshot of another run: field '" + std::string(found) + "' where this run has '" + name +
                          "'");
    m_pos += len;
    std::uint64_t count = 0;
    take(&count, sizeof(count));
    if (count > m_end - m_pos) throw SnapshotError("snapshot truncated in field " + std::string(name));
    return static_cast<std::size_t>(count);
  }
  void expect_size(const char* name, std::size_t got, std::size_t want) const {
    if (got != want)
      throw SnapshotError("snapshot of another run: field " + std::string(name) + " holds " + std::to_string(got) +
                          " bytes, this run's holds " + std::to_string(want));
  }
  void take(void* out, std::size_t n) {
    if (n > m_end - m_pos) throw SnapshotError("snapshot truncated");
    if (n) std::memcpy(out, m_bytes.data() + m_pos, n);
    m_pos += n;
  }

  const std::vector<unsigned char>& m_bytes;
  std::size_t m_pos = 0, m_end = 0;
};

namespace hooks {
/// A part of a run that saves and restores its state (docs/driver.md §Checkpoint and resume).
template <class P>
concept HasCheckpoint = requires(P& p, StateWriter& w, StateReader& r) {
  p.checkpoint(w);
  p.checkpoint(r);
};
}  // namespace hooks

}  // namespace lgm
