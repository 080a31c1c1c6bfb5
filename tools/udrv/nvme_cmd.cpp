#include "nvme_cmd.hpp"

#include "block_perf.hpp"
#include "numbers.hpp"
#include "nvme_json.hpp"
#include "output.hpp"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "nvme/nvme.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"
#include "udrv/ticks.hpp"

namespace udrv::tools {
namespace {

using nlohmann::json;
using clock = std::chrono::steady_clock;

// The udrv_nvme driver bound to the NVMe controller a command names (-s), or to every one on vfio-pci
// when it names none (list, and identify/reset of "the first"). A command binds only what it names
// (the PCI bus's allow list, like DPDK's -a), so processes can each drive their own controller at once.
struct Session {
    Loader loader;
    std::vector<std::pair<std::string, nvme::Controller*>> controllers;
    std::vector<std::pair<std::string, std::string>> kernel_owned;  // address, kernel driver
    std::vector<std::string> not_probed;                            // on vfio-pci, but the probe failed

    Result<void> open(const std::string& addr = {}) {
        if (!addr.empty()) pci::bus().allow(UDRV_TRY(pci::Address::parse(addr)));
        UDRV_TRY(loader.load("udrv_nvme"));
        UDRV_TRY(pci::bus().scan());
        for (Device* d : pci::bus().devices()) {
            auto* pd = static_cast<pci::Device*>(d);
            if (pd->info().class_code != 0x010802) continue;
            if (auto* c = d->driver_data<nvme::Controller>()) controllers.emplace_back(d->name(), c);
            else if (pd->info().driver == "vfio-pci") not_probed.push_back(d->name());
            else kernel_owned.emplace_back(d->name(), pd->info().driver.value_or("none"));
        }
        return {};
    }
    Result<nvme::Controller*> find(const std::string& addr) {
        if (addr.empty()) {
            if (controllers.empty())
                return fail(ENODEV, "no NVMe controller is bound to vfio-pci{}", kernel_owned.empty() ? "" : fmt::format(
                    "; {} is on {}: udrv bind {}", kernel_owned[0].first, kernel_owned[0].second, kernel_owned[0].first));
            return controllers.front().second;
        }
        auto a = UDRV_TRY(pci::Address::parse(addr));
        for (auto& [name, c] : controllers)
            if (name == a.to_string()) return c;
        pci::Device* d = pci::bus().find(a);
        if (!d) return fail(ENODEV, "no PCI device {}", a.to_string());
        if (d->info().class_code != 0x010802) return fail(ENODEV, "{} is not an NVMe controller (class {:06x})", a.to_string(), d->info().class_code);
        if (d->info().driver != "vfio-pci")
            return fail(ENODEV, "{} is on {}: udrv bind {} first", a.to_string(), d->info().driver.value_or("no driver"), a.to_string());
        // On vfio-pci but its probe failed: probing again returns why (another process holds it, say).
        if (!d->is_bound()) {
            UDRV_TRY(pci::bus().attach(*d));
            if (auto* c = d->driver_data<nvme::Controller>()) return c;
        }
        return fail(ENODEV, "{} is not bound to udrv_nvme", a.to_string());
    }
    ~Session() { pci::bus().remove_all_devices(); }  // unbind (clean shutdown) before the module unloads
};

json controller_json(const std::string& addr, const nvme::Controller& c) {
    const auto& i = c.info();
    json j = {{"address", addr}, {"vid", fmt::format("{:#06x}", i.vid)}, {"ssvid", fmt::format("{:#06x}", i.ssvid)},
              {"serial", i.serial}, {"model", i.model}, {"firmware", i.firmware}, {"mdts", i.mdts}, {"cntlid", i.cntlid},
              {"version", fmt::format("{}.{}.{}", i.version >> 16, (i.version >> 8) & 0xff, i.version & 0xff)},
              {"nn", i.namespaces}, {"oncs", fmt::format("{:#06x}", i.oncs)}, {"vwc", i.vwc}, {"subnqn", i.subnqn},
              {"max_queue_entries", i.max_queue_entries}, {"io_queues", i.io_queues}, {"max_transfer", i.max_transfer}};
    j["namespaces"] = json::array();
    for (auto& ns : c.namespaces()) {
        const auto& n = ns->nvme_info();
        json formats = json::array();
        for (std::size_t f = 0; f < n.lba_formats.size(); ++f)
            formats.push_back({{"index", f}, {"data_size", 1u << n.lba_formats[f].lba_shift}, {"metadata_size", n.lba_formats[f].metadata_size},
                               {"relative_performance", n.lba_formats[f].relative_performance}, {"in_use", f == n.current_format}});
        j["namespaces"].push_back({{"nsid", n.nsid}, {"nsze", n.size}, {"ncap", n.capacity}, {"nuse", n.utilization},
                                   {"block_size", n.block_size()}, {"flbas", n.current_format}, {"lba_formats", formats}});
    }
    return j;
}

// ---- read / write ----

struct Sync {
    bool done = false;
    std::optional<Error> err;
    static void cb(void* c, const Result<void>& r) {
        auto* s = static_cast<Sync*>(c);
        s->done = true;
        if (!r) s->err = r.error();
    }
};

Result<void> wait_sync(block::Queue& q, Sync& s) {
    auto deadline = clock::now() + std::chrono::seconds(60);
    while (!s.done) {
        UDRV_TRY(q.wait(std::chrono::milliseconds(100)));
        if (clock::now() > deadline) return fail(ETIMEDOUT, "I/O did not complete within 60 s");
    }
    if (s.err) return std::unexpected(*s.err);
    return {};
}

int run_rw(bool is_write, const std::string& addr, std::uint32_t nsid, std::uint64_t lba, std::uint64_t blocks, const std::string& file) {
    Session s;
    if (auto r = s.open(addr); !r) return report(r.error());
    auto c = s.find(addr);
    if (!c) return report(c.error());
    auto ns = (*c)->find_namespace(nsid);
    if (!ns) return report(ns.error());
    const block::Info& info = (*ns)->info();
    std::vector<char> data;
    if (is_write) {
        std::ifstream in(file, std::ios::binary);
        if (!in) return report(Error(ENOENT, fmt::format("cannot read {}", file)));
        data.assign(std::istreambuf_iterator<char>(in), {});
        blocks = (data.size() + info.block_size - 1) / info.block_size;
        if (blocks == 0) return report(Error(EINVAL, fmt::format("{} is empty", file)));
    }
    if (blocks == 0) return report(Error(EINVAL, "--blocks 0: nothing to read (give at least 1)"));
    if (lba >= info.blocks || blocks > info.blocks - lba)
        return report(Error(ERANGE, fmt::format("blocks {}+{} lie past the end of {} ({} blocks)", lba, blocks, info.name, info.blocks)));
    data.resize(blocks * info.block_size, 0);
    // A 4 MiB chunk is up to 8 commands at 512 KiB; a controller with small queues takes fewer at once.
    auto q = (*ns)->open_queue(std::min(32u, info.max_queue_depth), block::Mode::polled);
    if (!q) return report(q.error());
    const std::uint64_t chunk_blocks = std::max<std::uint64_t>(1, (4u << 20) / info.block_size);  // 4 MiB at a time
    auto buf = (*ns)->alloc_buffer(chunk_blocks * info.block_size);
    if (!buf) return report(buf.error());
    for (std::uint64_t done = 0; done < blocks;) {
        std::uint64_t n = std::min(chunk_blocks, blocks - done);
        auto span = buf->bytes().first(n * info.block_size);
        Sync sy;
        if (is_write) std::memcpy(span.data(), data.data() + done * info.block_size, span.size());
        auto sub = is_write ? (*q)->write(lba + done, static_cast<std::uint32_t>(n), span, &Sync::cb, &sy)
                            : (*q)->read(lba + done, static_cast<std::uint32_t>(n), span, &Sync::cb, &sy);
        if (!sub) return report(sub.error());
        if (auto r = wait_sync(**q, sy); !r) return report(r.error());
        if (!is_write) std::memcpy(data.data() + done * info.block_size, span.data(), span.size());
        done += n;
    }
    if (is_write) {
        Sync sy;
        if (auto r = (*q)->flush(&Sync::cb, &sy); !r) return report(r.error());
        if (auto r = wait_sync(**q, sy); !r) return report(r.error());
        std::fprintf(stderr, "wrote %llu blocks at LBA %llu of %s (flushed)\n", (unsigned long long)blocks, (unsigned long long)lba, info.name.c_str());
        return 0;
    }
    if (file.empty() || file == "-") {
        write_raw(std::string_view(data.data(), data.size()));
    } else {
        std::ofstream o(file, std::ios::binary);
        o.write(data.data(), static_cast<std::streamsize>(data.size()));
        if (!o) return report(Error(EIO, fmt::format("cannot write {}", file)));
    }
    std::fprintf(stderr, "read %llu blocks at LBA %llu of %s\n", (unsigned long long)blocks, (unsigned long long)lba, info.name.c_str());
    return 0;
}

// Identify data of the controller (nsid 0) or of namespace `nsid`, field by field.
Result<nvme::IdentifyDump> identify_dump(nvme::Controller& c, std::uint32_t nsid) {
    auto raw = UDRV_TRY(c.identify(nsid ? nvme::kCnsNamespace : nvme::kCnsController, nsid));
    return nsid ? nvme::dump_identify_namespace(raw) : nvme::dump_identify_controller(raw);
}

// As nvme-cli's normal output: "key       : value"; LBA formats as "lbaf  0 : ms:0   lbads:9  rp:0 (in use)"
// (LBADS is the exponent: 9 means 512-byte blocks).
void print_identify(const nvme::IdentifyDump& d, int in_use = -1) {
    auto text = [](const nvme::IdentifyValue& v) {
        if (auto* n = std::get_if<std::uint64_t>(&v)) return fmt::format("{:#x}", *n);
        std::string t = std::get<std::string>(v);
        while (!t.empty() && t.back() == ' ') t.pop_back();
        return t;
    };
    for (const auto& [k, v] : d.fields.fields) print(fmt::format("{:<10}: {}\n", k, text(v)));
    for (std::size_t i = 0; i < d.list.size(); ++i) {
        const auto& f = d.list[i].fields;
        if (d.list_key == "lbafs") {
            const auto ds = std::get<std::uint64_t>(f[1].second);
            print(fmt::format("lbaf {:>2} : ms:{:<3} lbads:{:<2} rp:{:#x}{} ({} B blocks)\n", i, std::get<std::uint64_t>(f[0].second), ds,
                              std::get<std::uint64_t>(f[2].second), static_cast<int>(i) == in_use ? " (in use)" : "",
                              ds < 64 ? std::uint64_t{1} << ds : 0));
        } else {
            std::string line = fmt::format("ps {:>4} :", i);
            for (const auto& [k, v] : f) line += fmt::format(" {}:{}", k, text(v));
            print(line + "\n");
        }
    }
}

}  // namespace

std::function<int()> add_nvme_commands(CLI::App& app) {
    auto* nvme = app.add_subcommand("nvme", "NVMe controllers bound to vfio-pci, driven by udrv_nvme");
    nvme->require_subcommand(1);
    struct State {
        bool json = false;
        std::string addr, file;
        std::uint32_t nsid = 1;
        std::uint64_t lba = 0, blocks = 1;
        std::string output = "normal";
        PerfOpts perf;
    };
    auto st = std::make_shared<State>();
    auto* list = nvme->add_subcommand("list", "Controllers and namespaces");
    list->add_flag("--json", st->json, "Emit JSON");
    auto* ident = nvme->add_subcommand("identify", "Identify Controller and Namespace data, every field (nvme-cli's names)");
    ident->add_option("-s,--slot", st->addr, "Controller address (default: the first)");
    ident->add_flag("--json", st->json, "Emit JSON: nvme-cli's id-ctrl object, with \"namespaces\": id-ns objects (and \"nsid\")");
    auto* idctrl = nvme->add_subcommand("id-ctrl", "Identify Controller, as `nvme id-ctrl` prints it");
    idctrl->add_option("-s,--slot", st->addr, "Controller address (default: the first)");
    idctrl->add_option("-o,--output-format", st->output, "normal or json (nvme-cli's JSON, key for key)")->check(CLI::IsMember({"normal", "json"}));
    auto* idns = nvme->add_subcommand("id-ns", "Identify Namespace, as `nvme id-ns` prints it");
    idns->add_option("-s,--slot", st->addr, "Controller address (default: the first)");
    idns->add_option("-n,--namespace-id", st->nsid, "Namespace id (default 1)")->transform(count_option());
    idns->add_option("-o,--output-format", st->output, "normal or json (nvme-cli's JSON, key for key)")->check(CLI::IsMember({"normal", "json"}));
    auto* rd = nvme->add_subcommand("read", "Read blocks to a file (or stdout)");
    rd->add_option("-s,--slot", st->addr, "Controller address");
    rd->add_option("-n,--namespace", st->nsid, "Namespace id (default 1)")->transform(count_option());
    rd->add_option("--lba", st->lba, "First block")->transform(count_option());
    rd->add_option("--blocks", st->blocks, "Number of blocks")->transform(count_option());
    rd->add_option("-o,--output", st->file, "Output file (default stdout)");
    auto* wr = nvme->add_subcommand("write", "Write a file's contents (padded to whole blocks), then flush");
    wr->add_option("-s,--slot", st->addr, "Controller address");
    wr->add_option("-n,--namespace", st->nsid, "Namespace id (default 1)")->transform(count_option());
    wr->add_option("--lba", st->lba, "First block")->transform(count_option());
    wr->add_option("-i,--input", st->file, "Input file")->required();
    auto* rst = nvme->add_subcommand("reset", "Reset a controller (disable, re-enable, restore its features), as after a fault");
    rst->add_option("-s,--slot", st->addr, "Controller address (default: the first)");
    auto* perf = nvme->add_subcommand("perf", "Benchmark, in the spirit of spdk_nvme_perf");
    perf->add_option("-s,--slot", st->perf.addr, "Controller address");
    perf->add_option("-n,--namespace", st->perf.nsid, "Namespace id (default 1)")->transform(count_option());
    add_perf_options(perf, st->perf);

    return [=]() -> int {
        if (!*nvme) return -1;
        if (*perf) {
            Session s;
            if (auto r = s.open(st->perf.addr); !r) return report(r.error());
            auto c = s.find(st->perf.addr);
            if (!c) return report(c.error());
            auto ns = (*c)->find_namespace(st->perf.nsid);
            if (!ns) return report(ns.error());
            return run_block_perf(**ns, st->perf);
        }
        if (*rd) return run_rw(false, st->addr, st->nsid, st->lba, st->blocks, st->file);
        if (*wr) return run_rw(true, st->addr, st->nsid, st->lba, 0, st->file);
        Session s;
        if (auto r = s.open(*list ? std::string() : st->addr); !r) return report(r.error());
        if (*list) {
            json arr = json::array();
            for (auto& [addr, c] : s.controllers) {
                if (st->json) {
                    arr.push_back(controller_json(addr, *c));
                    continue;
                }
                print(fmt::format("{}  {}  serial {}  firmware {}  udrv_nvme\n", addr, c->info().model, c->info().serial, c->info().firmware));
                for (auto& ns : c->namespaces())
                    print(fmt::format("    ns{}: {} blocks of {} B ({})\n", ns->nvme_info().nsid, ns->info().blocks, ns->info().block_size,
                                    human_bytes(double(ns->info().blocks) * ns->info().block_size)));
            }
            for (auto& [addr, drv] : s.kernel_owned)
                if (!st->json) print(fmt::format("{}  (kernel driver {}: `udrv bind {}` to use it here)\n", addr, drv, addr));
            for (auto& addr : s.not_probed)
                if (!st->json) print(fmt::format("{}  (on vfio-pci, but udrv_nvme could not take it: the probe error is logged above)\n", addr));
            if (st->json) print_json(arr);
            return 0;
        }
        auto c = s.find(st->addr);
        if (!c) return report(c.error());
        if (*rst) {
            if (auto r = (*c)->reset(); !r) return report(r.error());
            print(fmt::format("{}: controller reset ({} so far); ready\n", st->addr.empty() ? s.controllers.front().first : st->addr,
                              (*c)->resets()));
            return 0;
        }
        auto id_ctrl = identify_dump(**c, 0);
        if (!id_ctrl) return report(id_ctrl.error());
        if (*idctrl) {
            if (st->output == "json") print_json(identify_json(*id_ctrl));
            else print_identify(*id_ctrl);
            return 0;
        }
        if (*idns) {
            auto ns = (*c)->find_namespace(st->nsid);
            if (!ns) return report(ns.error());
            auto d = identify_dump(**c, st->nsid);
            if (!d) return report(d.error());
            if (st->output == "json") print_json(identify_json(*d));
            else print_identify(*d, (*ns)->nvme_info().current_format);
            return 0;
        }
        // identify: the controller, then each active namespace.
        nlohmann::ordered_json j = identify_json(*id_ctrl);
        j["namespaces"] = nlohmann::ordered_json::array();
        if (!st->json) {
            print(fmt::format("{}: Identify Controller\n", st->addr.empty() ? s.controllers.front().first : st->addr));
            print_identify(*id_ctrl);
        }
        for (auto& ns : (*c)->namespaces()) {
            const std::uint32_t nsid = ns->nvme_info().nsid;
            auto d = identify_dump(**c, nsid);
            if (!d) return report(d.error());
            if (st->json) {
                nlohmann::ordered_json n = {{"nsid", nsid}};
                n.update(identify_json(*d));
                j["namespaces"].push_back(std::move(n));
            } else {
                print(fmt::format("\nNamespace {}: Identify Namespace ({} blocks of {} bytes)\n", nsid, ns->info().blocks, ns->info().block_size));
                print_identify(*d, ns->nvme_info().current_format);
            }
        }
        if (st->json) print_json(j);
        return 0;
    };
}

}  // namespace udrv::tools
