// Checks shared by the data readers (docs/data.md): a file that must be a readable regular file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>

#include "lgm/core/error.hpp"

namespace lgm::detail {

/// The size of a regular file; DataError naming it for a missing file, a directory or another non-regular file.
inline std::uintmax_t regular_file_size(const std::filesystem::path& file) {
  namespace fs = std::filesystem;
  const std::string name = file.string();
  std::error_code ec;
  const fs::file_status status = fs::status(file, ec);
  if (status.type() == fs::file_type::not_found) throw DataError("cannot open " + name + ": no such file");
  if (ec) throw DataError("cannot open " + name + ": " + ec.message());
  if (fs::is_directory(status)) throw DataError("cannot open " + name + ": is a directory");
  if (!fs::is_regular_file(status)) throw DataError("cannot open " + name + ": not a regular file");
  const std::uintmax_t size = fs::file_size(file, ec);
  if (ec) throw DataError("cannot open " + name + ": " + ec.message());
  return size;
}

}  // namespace lgm::detail
