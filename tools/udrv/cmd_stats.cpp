// udrv stats: counters of the devices udrvd drives (state, restarts, NIC counters, work running in
// hosts); without udrvd, the counters of the NICs on vfio-pci, read in this process.
// udrv top: the same, live: rates computed between two looks, redrawn with ncurses (or printed frame
// by frame with -b, as top -b does, for scripts and logs).
#include <curses.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <thread>

#include <fmt/ranges.h>

#include "class_json.hpp"
#include "command.hpp"
#include "daemon_client.hpp"
#include "numbers.hpp"
#include "output.hpp"
#include "session.hpp"
#include "udrv/net.hpp"

namespace udrv::tools {
namespace {

using nlohmann::json;

std::string counters_line(const std::string& name, const json& s) {
    return fmt::format("{:<8} rx {} frames {} bytes {} dropped {} errors  tx {} frames {} bytes {} errors  {} rx interrupts\n", name,
                       s.value("rx_packets", 0ull), s.value("rx_bytes", 0ull), s.value("rx_dropped", 0ull), s.value("rx_errors", 0ull),
                       s.value("tx_packets", 0ull), s.value("tx_bytes", 0ull), s.value("tx_errors", 0ull), s.value("rx_interrupts", 0ull));
}

Result<int> run_stats(bool as_json) {
    if (auto d = daemon()) {
        auto s = UDRV_TRY(d->call("stats"));
        if (as_json) {
            print_json(s);
            return 0;
        }
        print(fmt::format("{:<44} {:<11} {}\n", "DEVICE", "STATE", "RESTARTS"));
        for (const auto& dev : s["devices"])
            print(fmt::format("{:<44} {:<11} {}{}\n", dev.value("device", ""), dev.value("state", ""), dev.value("restarts", 0u),
                              dev.value("why", "").empty() ? "" : "  (" + dev.value("why", "") + ")"));
        for (const auto& h : s["hosts"]) {
            for (const auto& [name, c] : h["net"].items()) print(counters_line(name, c));
            for (const auto& j : h["jobs"])
                print(fmt::format("{:<8} {} running in host {} (pid {}): {} done\n", j.value("device", ""), j.value("job", ""), h.value("host", 0),
                                  h.value("pid", 0), j.value("done", 0ull)));
        }
        return 0;
    }
    // Standalone: the NICs on vfio-pci, bound here for the look.
    auto session = UDRV_TRY(Session::open(
        {.devices = {}, .wanted = [](const pci::DeviceInfo& d) { return d.base_class() == 0x02 && d.driver == "vfio-pci"; }, .platform_descriptions = {}}));
    json out = json::object();
    for (const auto& l : net::list()) {
        net::Handle h = UDRV_TRY(net::open(l.id.name));
        out[l.id.name] = net_stats_json(UDRV_TRY(h.stats()));
    }
    if (as_json) print_json(out);
    else if (out.empty()) print("udrvd is not running and no NIC is on vfio-pci: no counters to show\n");
    else
        for (const auto& [name, c] : out.items()) print(counters_line(name, c));
    return 0;
}

// ---- top ----

struct TopOpts {
    bool batch = false;
    unsigned iterations = 0;  // 0: until quit
    double delay = 2;
};

struct Sample {
    json stats, devices, hosts;
    std::chrono::steady_clock::time_point at;
};

Result<Sample> sample(rpc::Client& c) {
    Sample s;
    s.stats = UDRV_TRY(c.call("stats"));
    s.devices = UDRV_TRY(c.call("device_list"));
    s.hosts = UDRV_TRY(c.call("host_list"));
    s.at = std::chrono::steady_clock::now();
    return s;
}

// Per class device: frames and I/Os now, so that two samples give rates.
std::map<std::string, std::array<double, 5>> counters(const Sample& s) {
    std::map<std::string, std::array<double, 5>> out;  // rx, tx, errors+drops, job work, 0
    for (const auto& h : s.stats["hosts"]) {
        for (const auto& [name, c] : h["net"].items())
            out[name] = {double(c.value("rx_packets", 0ull)), double(c.value("tx_packets", 0ull)),
                         double(c.value("rx_errors", 0ull) + c.value("tx_errors", 0ull) + c.value("rx_dropped", 0ull)), 0, 0};
        for (const auto& j : h["jobs"]) out[j.value("device", "")][3] += double(j.value("done", 0ull));
    }
    return out;
}

std::vector<std::string> frame(const Sample& now, const Sample* before) {
    std::vector<std::string> lines;
    unsigned running = 0, restarts = 0;
    for (const auto& d : now.devices) {
        running += d.value("state", "") == "running";
        restarts += d.value("restarts", 0u);
    }
    lines.push_back(fmt::format("udrvd: {} device(s), {} running, {} host(s), {} restart(s) in all", now.devices.size(), running, now.hosts.size(),
                                restarts));
    lines.push_back("");
    lines.push_back(fmt::format("{:<40} {:<10} {:<16} {:>5} {:>7} {:>8}  {}", "DEVICE", "STATE", "DRIVER", "HOST", "PID", "RESTARTS", "PUBLISHES"));
    for (const auto& d : now.devices) {
        std::vector<std::string> names = d.value("classdevs", std::vector<std::string>{});
        lines.push_back(fmt::format("{:<40} {:<10} {:<16} {:>5} {:>7} {:>8}  {}", d.value("device", ""), d.value("state", ""), d.value("driver", ""),
                                    d.value("host", 0u), d.value("pid", 0), d.value("restarts", 0u), fmt::join(names, " ")));
        if (d.value("state", "") != "running" && !d.value("why", "").empty()) lines.push_back("    " + d.value("why", ""));
    }
    lines.push_back("");
    lines.push_back(fmt::format("{:<10} {:>12} {:>12} {:>12} {:>12}", "CLASSDEV", "RX frames/s", "TX frames/s", "errors/s", "IOPS (jobs)"));
    const auto a = counters(now);
    const auto b = before ? counters(*before) : decltype(a){};
    const double secs = before ? std::chrono::duration<double>(now.at - before->at).count() : 0;
    for (const auto& [name, c] : a) {
        auto rate = [&](int i) -> std::string {
            auto it = b.find(name);
            if (!before || secs <= 0 || it == b.end()) return "-";
            return fmt::format("{:.0f}", std::max(0.0, (c[i] - it->second[i]) / secs));
        };
        lines.push_back(fmt::format("{:<10} {:>12} {:>12} {:>12} {:>12}", name, rate(0), rate(1), rate(2), rate(3)));
    }
    return lines;
}

Result<int> run_top(const TopOpts& o) {
    rpc::Client c = UDRV_TRY(require_daemon("top"));
    if (!(o.delay > 0)) return fail(EINVAL, "-d {}: the delay must be above 0", o.delay);
    std::optional<Sample> before;
    if (o.batch || !isatty(STDOUT_FILENO)) {
        for (unsigned i = 0; o.iterations == 0 || i < o.iterations; ++i) {
            if (i) std::this_thread::sleep_for(std::chrono::duration<double>(o.delay));
            Sample s = UDRV_TRY(sample(c));
            print(fmt::format("{}\n", fmt::join(frame(s, before ? &*before : nullptr), "\n")));
            std::fflush(stdout);
            before = std::move(s);
        }
        return 0;
    }
    install_stop_signals();
    initscr();
    cbreak();
    noecho();
    curs_set(0);
    timeout(static_cast<int>(o.delay * 1000));
    Result<int> rc = 0;
    for (unsigned i = 0; !stop_requested() && (o.iterations == 0 || i < o.iterations); ++i) {
        auto s = sample(c);
        if (!s) {
            rc = std::unexpected(s.error());
            break;
        }
        erase();
        int row = 0;
        for (const auto& l : frame(*s, before ? &*before : nullptr)) mvaddnstr(row++, 0, l.c_str(), COLS - 1);
        mvaddstr(LINES - 1, 0, "q: quit");
        refresh();
        before = std::move(*s);
        if (getch() == 'q') break;
    }
    endwin();
    return rc;
}

}  // namespace

void add_stats(CLI::App& app, Commands& c) {
    auto json_out = std::make_shared<bool>(false);
    auto* st = app.add_subcommand("stats", "Counters of udrvd's devices (state, restarts, NIC counters, work in hosts); standalone: NICs on vfio-pci");
    st->add_flag("--json", *json_out, "Emit JSON");
    c.add(st, [json_out] { return run_stats(*json_out); });

    auto o = std::make_shared<TopOpts>();
    auto* top = app.add_subcommand("top", "Live view of udrvd's devices, hosts, frame rates, IOPS and errors (q quits)");
    top->add_flag("-b,--batch", o->batch, "Print frames as text instead of redrawing the screen (as top -b)");
    top->add_option("-n,--iterations", o->iterations, "Frames to show, then exit (default: until q)")->transform(count_option());
    top->add_option("-d,--delay", o->delay, "Seconds between frames (default 2)")->transform(seconds_option());
    c.add(top, [o] { return run_top(*o); });
}

}  // namespace udrv::tools
