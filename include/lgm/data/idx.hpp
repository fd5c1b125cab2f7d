// Reader of the IDX format of the MNIST family (http://yann.lecun.com/exdb/mnist/), gzip-compressed or not:
//   magic (4 bytes, big-endian) = 0x00 0x00 TYPE NDIMS,  NDIMS sizes (4 bytes each, big-endian),  then the data,
//   row-major (the last dimension varies fastest). Only TYPE 0x08 (unsigned byte) is supported, which is what
//   MNIST and Fashion-MNIST use: 0x00000803 images [n, rows, cols], 0x00000801 labels [n].
// Files are read through zlib's gzopen/gzread, which read uncompressed files as they are (link with -lz).
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// An IDX array of unsigned bytes: `dims` as in the file (e.g. {n, rows, cols}), `data` row-major
/// (the last dimension varies fastest), data.size() = the product of dims.
struct IdxArray {
  std::vector<Index> dims;
  std::vector<std::uint8_t> data;
};

namespace detail {

/// "0x00000803": a 32-bit value as eight hex digits.
inline std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(v));
  return buf;
}

/// "0x0d": a byte as two hex digits.
inline std::string hex8(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", v & 0xFFu);
  return buf;
}

/// Name of an IDX data-type byte, for error messages.
inline const char* idx_type_name(unsigned type) {
  switch (type) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0B:
      return "short";
    case 0x0C:
      return "int";
    case 0x0D:
      return "float";
    case 0x0E:
      return "double";
    default:
      return "not an IDX type";
  }
}

/// Largest data part read_idx accepts (2^31 bytes): far above MNIST's 47 MB, and it keeps a corrupt header
/// from triggering a huge allocation.
inline constexpr std::uint64_t idx_max_bytes = std::uint64_t{1} << 31;
/// Most dimensions read_idx accepts (the format allows 255; MNIST-like files have 1 to 4).
inline constexpr unsigned idx_max_dims = 8;

/// A gzip (or plain) IDX file opened and its header read. read_items takes the first items (first-dimension
/// slices) and checks the rest of the file without keeping it, so a prefix is never taken from a truncated file.
/// Memory is bounded by the real bytes, whatever the header claims: a plain file's size is checked against the
/// header before anything is allocated, and a gzip stream's buffer grows only as its data arrive.
class IdxReader {
 public:
  explicit IdxReader(const std::filesystem::path& file) : m_name(file.string()) {
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) throw DataError("cannot open " + m_name + ": no such file");
    if (std::filesystem::is_directory(file, ec)) throw DataError("cannot open " + m_name + ": is a directory");
    const std::uintmax_t size = std::filesystem::file_size(file, ec);
    errno = 0;
    m_file = gzopen(m_name.c_str(), "rb");
    if (m_file == nullptr)
      throw DataError("cannot open " + m_name + ": " + (errno != 0 ? std::strerror(errno) : "zlib could not open it"));
    try {
      read_header();
      // A plain file (zlib reads it as it is) holds exactly the bytes the header describes, or is rejected now.
      if (!ec && gzdirect(m_file) == 1) check_plain_size(static_cast<std::uint64_t>(size));
    } catch (...) {  // the destructor does not run for a constructor that throws
      gzclose(m_file);
      throw;
    }
  }
  IdxReader(const IdxReader&) = delete;
  IdxReader& operator=(const IdxReader&) = delete;
  ~IdxReader() { gzclose(m_file); }

  const std::string& name() const noexcept { return m_name; }
  std::uint32_t magic() const noexcept { return m_magic; }
  const std::vector<Index>& dims() const noexcept { return m_dims; }
  /// Bytes of one item (the product of the dimensions after the first; 1 for a 1-D array).
  std::uint64_t item_bytes() const noexcept { return m_item_bytes; }
  /// Bytes of data the header describes: dims()[0] · item_bytes().
  std::uint64_t data_bytes() const noexcept { return static_cast<std::uint64_t>(m_dims[0]) * m_item_bytes; }

  /// Reads the first `items` items (0 <= items <= dims()[0]) as {items, dims[1:]}, then reads through the rest
  /// of the file: it must hold the remaining items and nothing after them (DataError otherwise). Once per reader.
  IdxArray read_items(Index items) {
    if (items < 0 || items > m_dims[0])
      throw ConfigError("items", to_text(items),
                        "an integer in [0, " + to_text(m_dims[0]) + "], the items in " + m_name);
    if (m_consumed) throw std::logic_error("IdxReader::read_items: " + m_name + " was read already");
    m_consumed = true;
    IdxArray a{m_dims, {}};
    a.dims[0] = items;
    const std::uint64_t bytes = static_cast<std::uint64_t>(items) * m_item_bytes;
    read_data(a.data, bytes);
    skip_data(data_bytes() - bytes, bytes);
    check_end();
    return a;
  }

  /// Reads all the data (and checks that nothing follows it).
  IdxArray read_all() { return read_items(m_dims[0]); }

  /// "[60000, 28, 28]".
  std::string dims_text() const {
    std::string s = "[";
    for (std::size_t k = 0; k < m_dims.size(); ++k) s += (k ? ", " : "") + to_text(m_dims[k]);
    return s + "]";
  }

 private:
  /// First buffer of a gzip stream's data; it then doubles, so memory stays within twice the bytes inflated.
  static constexpr std::uint64_t first_chunk = std::uint64_t{1} << 20;

  /// The zlib error of the stream, e.g. "invalid code lengths set" or "unexpected end of file".
  DataError stream_error(const std::string& where) const {
    return DataError(m_name + ": corrupt or unreadable gzip stream " + where + " (zlib: " + zlib_message() + ")");
  }

  /// gzerror's text without the "FILE: " prefix it puts on it (the message names the file already).
  std::string zlib_message() const {
    int code = Z_OK;
    const char* text = gzerror(m_file, &code);
    std::string s = text != nullptr && *text != '\0' ? text : "unknown error";
    if (s.starts_with(m_name + ": ")) s.erase(0, m_name.size() + 2);
    return s;
  }

  /// zlib reports a truncated gzip stream only through gzerror (Z_BUF_ERROR), with a short read.
  void check_stream(const std::string& where) const {
    int code = Z_OK;
    gzerror(m_file, &code);
    if (code != Z_OK) throw stream_error(where);
  }

  DataError truncated(std::uint64_t got) const {
    int code = Z_OK;
    gzerror(m_file, &code);
    const std::string why = code != Z_OK ? " (zlib: " + zlib_message() + ")" : "";
    return DataError(m_name + ": truncated: expected " + to_text(data_bytes()) + " bytes of data for " + dims_text() +
                     ", got " + to_text(got) + why);
  }

  DataError trailing(std::uint64_t extra) const {
    return DataError(m_name + ": " + to_text(extra) + " trailing bytes after the " + to_text(data_bytes()) +
                     " bytes of data that the header " + dims_text() + " describes");
  }

  void check_plain_size(std::uint64_t file_bytes) {
    const std::uint64_t header = 4 * (1 + static_cast<std::uint64_t>(m_dims.size()));
    const std::uint64_t held = file_bytes - header;  // read_header read `header` bytes, so file_bytes >= header
    if (held < data_bytes()) throw truncated(held);
    if (held > data_bytes()) throw trailing(held - data_bytes());
    m_size_checked = true;
  }

  /// Reads up to n bytes; returns how many were read (fewer only at the end of the file).
  std::uint64_t read_some(std::uint8_t* out, std::uint64_t n, const std::string& where) {
    std::uint64_t done = 0;
    while (done < n) {
      const auto chunk = static_cast<unsigned>(std::min<std::uint64_t>(n - done, std::uint64_t{1} << 30));
      const int got = gzread(m_file, out + done, chunk);
      if (got < 0) throw stream_error(where);
      if (got == 0) break;
      done += static_cast<std::uint64_t>(got);
    }
    return done;
  }

  /// Reads n bytes into `out`. A plain file's size was checked, so its buffer is allocated at once; a gzip
  /// stream's grows with what arrives, so a header that claims more than the stream holds allocates little.
  void read_data(std::vector<std::uint8_t>& out, std::uint64_t n) {
    std::uint64_t done = 0;
    while (done < n) {
      const std::uint64_t target = m_size_checked ? n : std::min(n, std::max(first_chunk, 2 * done));
      out.resize(static_cast<std::size_t>(target));
      const std::uint64_t got = read_some(out.data() + done, target - done, "while reading the data");
      done += got;
      if (done < target) throw truncated(done);
    }
  }

  /// Reads and drops n bytes of data through a small buffer (`before`: the data bytes read so far).
  void skip_data(std::uint64_t n, std::uint64_t before) {
    if (m_size_checked) return;  // a plain file of the right size: the bytes are there
    std::uint8_t buf[65536];
    std::uint64_t done = 0;
    while (done < n) {
      const std::uint64_t want = std::min<std::uint64_t>(n - done, sizeof buf);
      const std::uint64_t got = read_some(buf, want, "while reading the data");
      done += got;
      if (got < want) throw truncated(before + done);
    }
  }

  /// After all the data was read: throws DataError if bytes follow it or the stream is broken after it.
  void check_end() {
    if (m_size_checked) return;
    std::uint8_t extra[256];
    std::uint64_t count = 0;
    for (;;) {
      const int got = gzread(m_file, extra, sizeof extra);
      if (got < 0) throw stream_error("after the data");
      if (got == 0) break;
      count += static_cast<std::uint64_t>(got);
    }
    check_stream("after the data");
    if (count > 0) throw trailing(count);
  }

  std::uint32_t read_u32(const std::string& what) {
    std::uint8_t b[4];
    const std::uint64_t got = read_some(b, 4, "while reading the header");
    if (got < 4) {
      check_stream("while reading the header");
      throw DataError(m_name + ": truncated: the file ends inside the header (" + what + ")");
    }
    return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
  }

  void read_header() {
    m_magic = read_u32("magic number");
    const unsigned type = (m_magic >> 8) & 0xFFu;
    const unsigned ndims = m_magic & 0xFFu;
    if ((m_magic >> 16) != 0 || std::string_view(idx_type_name(type)) == "not an IDX type")
      throw DataError(m_name + ": bad magic number " + hex32(m_magic) +
                      " (expected 0x0000TTDD: two zero bytes, data type TT = 0x08 for unsigned bytes, DD dimensions, "
                      "e.g. 0x00000803 for images, 0x00000801 for labels); not an IDX file?");
    if (type != 0x08)
      throw DataError(m_name + ": unsupported IDX data type " + hex8(type) + " (" + idx_type_name(type) + ", magic " +
                      hex32(m_magic) + "); only 0x08 (unsigned byte) is supported");
    if (ndims < 1 || ndims > idx_max_dims)
      throw DataError(m_name + ": unsupported number of dimensions " + to_text(ndims) + " (magic " + hex32(m_magic) +
                      "; accepted: 1 to " + to_text(idx_max_dims) + ")");
    m_dims.resize(ndims);
    std::uint64_t total = 1;
    for (unsigned k = 0; k < ndims; ++k) {
      const std::uint32_t n = read_u32("size of dimension " + to_text(k));
      m_dims[k] = static_cast<Index>(n);
      // Each factor is < 2^32 and the running product stays <= 2^31 by the check, so the product cannot overflow.
      total *= n;
      if (total > idx_max_bytes)
        throw DataError(m_name + ": header sizes " + dims_text_upto(k + 1) + " describe more than 2^31 bytes of data " +
                        "(accepted: at most " + to_text(idx_max_bytes) + " bytes); corrupt header?");
      if (k > 0) m_item_bytes *= n;
    }
  }

  std::string dims_text_upto(unsigned k) const {
    std::string s = "[";
    for (unsigned j = 0; j < k; ++j) s += (j ? ", " : "") + to_text(m_dims[j]);
    return s + (k < m_dims.size() ? ", ...]" : "]");
  }

  std::string m_name;
  gzFile m_file = nullptr;
  std::uint32_t m_magic = 0;
  std::vector<Index> m_dims;
  std::uint64_t m_item_bytes = 1;
  bool m_size_checked = false;  ///< a plain file whose size matches the header exactly
  bool m_consumed = false;      ///< read_items ran (the stream is at its end)
};

}  // namespace detail

/// Reads an IDX file of unsigned bytes (type 0x08), gzip-compressed or not. Throws DataError naming the file for
/// a missing file, a corrupt gzip stream (with zlib's message), a bad magic number (found vs expected), another
/// data type, 0 or more than 8 dimensions, a header describing more than 2^31 bytes, truncated data (expected vs
/// got) and trailing bytes after the data. Allocates no more than the file really holds (see IdxReader).
inline IdxArray read_idx(const std::filesystem::path& file) {
  detail::IdxReader reader(file);
  return reader.read_all();
}

}  // namespace lgm
