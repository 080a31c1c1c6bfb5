// How `udrv` is put together: each subcommand lives in a file of its own (cmd_*.cpp) and registers
// itself with add_X(app, commands): its CLI11 options, and what to run when it is chosen. A command
// returns its exit status, or an error that main() reports once, the same way for every command.
#pragma once

#include <functional>
#include <vector>

#include <CLI/CLI.hpp>

#include "udrv/result.hpp"

namespace udrv::tools {

/// What a chosen subcommand does: an exit status (0 ok, 1 a failure it has reported itself, as a
/// benchmark with I/O errors), or an error for main() to report.
using Run = std::function<Result<int>()>;

class Commands {
public:
    /// `sub` runs `run` when it is the subcommand chosen (the deepest one given on the command line).
    void add(CLI::App* sub, Run run) { entries_.push_back({sub, std::move(run)}); }
    /// Runs the chosen subcommand. EINVAL if none was (CLI11 asks for one first).
    Result<int> run() const {
        for (const auto& [sub, r] : entries_)
            if (*sub) return r();
        return fail(EINVAL, "no subcommand given (udrv --help lists them)");
    }

private:
    struct Entry {
        CLI::App* sub;
        Run run;
    };
    std::vector<Entry> entries_;
};

// One per file (cmd_NAME.cpp).
void add_lspci(CLI::App& app, Commands& c);
void add_modinfo(CLI::App& app, Commands& c);
void add_sign(CLI::App& app, Commands& c);  // sign, verify
void add_modprobe(CLI::App& app, Commands& c);  // depmod, modprobe
void add_insmod(CLI::App& app, Commands& c);
void add_platform(CLI::App& app, Commands& c);
void add_bind(CLI::App& app, Commands& c);
void add_block(CLI::App& app, Commands& c);
void add_nvme_info(CLI::App& nvme, Commands& c);  // list, identify, id-ctrl, id-ns, reset
void add_nvme_io(CLI::App& nvme, Commands& c);    // read, write, perf
void add_net_list(CLI::App& net, Commands& c);
void add_net_respond(CLI::App& net, Commands& c);
void add_net_pktgen(CLI::App& net, Commands& c);
void add_net_fwd(CLI::App& net, Commands& c);
void add_net_dump(CLI::App& net, Commands& c);
void add_rpc(CLI::App& app, Commands& c);    // udrv rpc METHOD [PARAMS]
void add_stats(CLI::App& app, Commands& c);  // stats, top
void add_export(CLI::App& app, Commands& c); // export ublk|list, unexport ublk

}  // namespace udrv::tools
