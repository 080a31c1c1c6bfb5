// Whole-file byte I/O for drivers that load or save contents (images, firmware blobs).
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

#include "udrv/result.hpp"

namespace udrv {

/// Reads up to out.size() bytes from the start of `file`; returns how many were read.
Result<std::size_t> read_file(const std::filesystem::path& file, std::span<std::byte> out);
/// Replaces `file` with `data`: written to a temporary beside it, then renamed, so a crash never
/// leaves a half-written file.
Result<void> write_file(const std::filesystem::path& file, std::span<const std::byte> data);

}  // namespace udrv
