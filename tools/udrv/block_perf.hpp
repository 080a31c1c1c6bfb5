// The block benchmark behind `udrv nvme perf` and `udrv block perf` (any block::Device).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string_view>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "udrv/block.hpp"

namespace udrv::tools {

struct PerfOpts {
    std::string addr, pattern = "randread", mode = "poll";
    std::uint32_t nsid = 1, depth = 32, io_size = 4096, threads = 1, mix = 50;
    double seconds = 5;
    std::vector<double> percentiles = {50, 90, 99, 99.9, 99.99};
    bool json_out = false, histogram = false;
    // For runs inside a driver host (udrvd): where the report goes instead of stdout, whether to print
    // a line a second on stderr, a flag that ends the run early, and a count of I/Os done so far.
    std::function<void(std::string_view)> out;
    bool live = true;
    const std::atomic<bool>* cancel = nullptr;
    std::atomic<std::uint64_t>* ios_done = nullptr;
};

/// Adds the benchmark's options (-q, -o, -w, -M, -t, -j, -m, --percentiles, --histogram, --json) to `cmd`.
void add_perf_options(CLI::App* cmd, PerfOpts& o);

/// Runs the benchmark on `dev` and prints the report (text or JSON): exit status 0, or 1 if I/Os
/// failed (the report says which first); an error if it could not start.
Result<int> run_block_perf(block::Device& dev, const PerfOpts& o);

}  // namespace udrv::tools
