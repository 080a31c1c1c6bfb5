#include "udrv/bind.hpp"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/ranges.h>

#include "udrv/fileio.hpp"
#include "udrv/log.hpp"

namespace udrv::pci {
namespace fs = std::filesystem;
namespace {

constexpr std::size_t kMaxAttr = 64 * 1024;

std::string driver_of(const fs::path& dev) {
    std::error_code ec;
    auto link = fs::read_symlink(dev / "driver", ec);
    return ec ? std::string() : link.filename().string();
}

Result<void> write_attr(const fs::path& p, const std::string& value) {
    std::ofstream out(p);
    if (!out) return fail_errno("cannot open {}", p.string());
    out << value << std::flush;
    if (!out) return fail_errno("writing '{}' to {}", value, p.string());
    return {};
}

Result<void> check_root(const BindOptions& o) {
    int euid = o.euid >= 0 ? o.euid : static_cast<int>(geteuid());
    if (euid != 0) return fail(EPERM, "binding and unbinding devices needs root: run as root (sudo udrv ...)");
    return {};
}

Result<fs::path> device_dir(const Address& addr, const BindOptions& o) {
    fs::path dev = o.sysfs / "bus/pci/devices" / addr.to_string();
    std::error_code ec;
    if (!fs::exists(dev, ec)) return fail(ENODEV, "no PCI device {} (see udrv lspci)", addr.to_string());
    return dev;
}

// PCI functions below `dev` in sysfs (the devices behind a bridge).
std::vector<std::string> children(const fs::path& dev) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dev, ec))
        if (e.is_directory(ec) && Address::parse(e.path().filename().string())) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

// Devices the machine cannot give to a user-space driver: what it is and why, or "" when it may go.
std::string must_stay(const fs::path& dev) {
    std::uint32_t cls = 0;
    if (auto t = read_text_file(dev / "class", kMaxAttr)) cls = static_cast<std::uint32_t>(std::strtoul(t->c_str(), nullptr, 16));
    std::vector<std::uint8_t> cfg;
    if (auto t = read_text_file(dev / "config", 4096)) cfg.assign(t->begin(), t->end());
    const unsigned header = cfg.size() > 0x0e ? cfg[0x0e] & 0x7f : 0;
    const unsigned base = cls >> 16, sub = (cls >> 8) & 0xff;
    if (base == 0x06 && sub == 0x00)
        return "it is the host bridge: the processors reach memory and every other device through it";
    if (base == 0x06 && sub == 0x01)
        return "it is the ISA/LPC bridge: the machine's timers, interrupt controllers, real-time clock and firmware interfaces sit behind "
               "it";
    if (header == 1 || header == 2 || (base == 0x06 && (sub == 0x04 || sub == 0x07 || sub == 0x09))) {
        std::string kind = header == 2 || sub == 0x07 ? "a CardBus bridge" : "a PCI bridge";
        if (cfg.size() >= 256)
            if (auto cs = ConfigSpace::parse(cfg); cs)
                if (const Capability* e = cs->find_cap(kCapExpress); e && e->express) {
                    switch (e->express->port_type) {
                        case 4: kind = "a PCIe root port"; break;
                        case 5: kind = "the upstream port of a PCIe switch"; break;
                        case 6: kind = "a downstream port of a PCIe switch"; break;
                        case 7: kind = "a PCIe-to-PCI bridge"; break;
                        default: break;
                    }
                }
        const auto behind = children(dev);
        std::string what = behind.empty() ? std::string("the bus behind it") : fmt::format("{}", fmt::join(behind, ", "));
        return fmt::format("it is {}: {} depend{} on it, and vfio-pci takes only endpoints (header type 0); bind the devices behind it "
                           "instead", kind, what, behind.size() == 1 ? "s" : "");
    }
    if (base == 0x06) return fmt::format("it is a bridge (class {:04x}): the devices behind it depend on it", cls >> 8);
    if (base == 0x08 && (sub <= 0x03 || sub == 0x06)) {
        static constexpr const char* kNames[] = {"an interrupt controller", "a DMA controller", "a timer", "the real-time clock"};
        return fmt::format("it is {}: a system peripheral the kernel runs the machine with", sub == 0x06 ? "an IOMMU" : kNames[sub]);
    }
    if (auto t = read_text_file(dev / "boot_vga", kMaxAttr); t && t->starts_with("1"))
        return "it is the boot display (boot_vga): the console is on it";
    return {};
}

// Interfaces that are up on the device (found below it, e.g. virtio0/net/eth0): the kernel uses them.
Result<void> check_network(const fs::path& dev, const std::string& name) {
    std::error_code ec;
    fs::recursive_directory_iterator it(dev, fs::directory_options::none, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
        if (it.depth() > 3) {
            it.disable_recursion_pending();
            continue;
        }
        const fs::path& p = it->path();
        if (p.parent_path().filename() != "net" || !fs::exists(p / "flags", ec)) continue;
        const std::string flags = read_text_file(p / "flags", kMaxAttr).value_or("0");
        if (std::strtoul(flags.c_str(), nullptr, 16) & 0x1)  // IFF_UP
            return fail(EBUSY, "{} is in use: network interface {} is up; take it down first (ip link set {} down)", name,
                        p.filename().string(), p.filename().string());
    }
    return {};
}

// Block devices below the device (disks and partitions) that are mounted or held by another device.
Result<void> check_block(const fs::path& dev, const std::string& name, const fs::path& mounts_file) {
    std::map<std::string, std::string> mount_point;
    std::istringstream mounts(read_text_file(mounts_file, 16u << 20).value_or(""));
    std::string line;
    while (std::getline(mounts, line)) {
        std::istringstream ls(line);
        std::string src, dst;
        ls >> src >> dst;
        if (src.rfind("/dev/", 0) == 0) mount_point[src.substr(5)] = dst;
    }
    std::error_code ec;
    fs::recursive_directory_iterator it(dev, fs::directory_options::none, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
        if (it.depth() > 4) {
            it.disable_recursion_pending();
            continue;
        }
        if (!it->is_directory(ec) || !fs::is_directory(it->path() / "holders", ec)) continue;
        std::string blk = it->path().filename().string();
        if (auto m = mount_point.find(blk); m != mount_point.end())
            return fail(EBUSY, "{} is in use: /dev/{} is mounted on {}; unmount it first (umount {})", name, blk, m->second, m->second);
        for (const auto& h : fs::directory_iterator(it->path() / "holders", ec))
            return fail(EBUSY, "{} is in use: /dev/{} is held by {} (device-mapper, RAID or LVM); release it first", name, blk,
                        h.path().filename().string());
    }
    return {};
}

// The sysfs writes of a bind, in order; on failure the device goes back where it was.
Result<void> do_bind(const fs::path& dev, const std::string& name, const std::string& current, const BindOptions& o) {
    if (!current.empty()) UDRV_TRY_CTX(write_attr(dev / "driver/unbind", name), "unbinding {} from {}", name, current);
    auto undo = [&] {
        (void)write_attr(dev / "driver_override", "\n");
        (void)write_attr(o.sysfs / "bus/pci/drivers_probe", name);
    };
    if (auto r = write_attr(dev / "driver_override", "vfio-pci"); !r) {
        undo();
        return std::unexpected(std::move(r).error().context(fmt::format("binding {} to vfio-pci", name)));
    }
    if (auto r = write_attr(o.sysfs / "bus/pci/drivers/vfio-pci/bind", name); !r) {
        undo();  // put the device back rather than leave it driverless
        std::string msg = r.error().message();
        if (r.error().code() == EINVAL)  // the kernel's word for a device vfio-pci will not take
            msg += " (vfio-pci refused the device; `dmesg | tail` may say why)";
        return fail(r.error().code(), "binding {} to vfio-pci: {}", name, msg);
    }
    return {};
}

// Undoes this process's own bind: the override goes, vfio-pci lets go, the kernel probes again.
Result<std::string> give_back(const fs::path& dev, const std::string& name, const BindOptions& o) {
    UDRV_TRY(write_attr(dev / "driver_override", "\n"));
    if (driver_of(dev) == "vfio-pci") UDRV_TRY(write_attr(dev / "driver/unbind", name));
    UDRV_TRY(write_attr(o.sysfs / "bus/pci/drivers_probe", name));
    return driver_of(dev);
}

}  // namespace

Result<BindOutcome> check_bind(const Address& addr, const BindOptions& o) {
    const std::string name = addr.to_string();
    UDRV_TRY(check_root(o));
    fs::path dev = UDRV_TRY(device_dir(addr, o));
    BindOutcome out{addr, driver_of(dev), false};
    if (out.previous_driver == "vfio-pci") {
        out.already = true;
        return out;
    }
    if (std::string why = must_stay(dev); !why.empty())
        return fail(EPERM, "{} cannot be given to vfio-pci: {}", name, why);

    std::error_code ec;
    auto group_link = fs::read_symlink(dev / "iommu_group", ec);
    if (ec)
        return fail(ENODEV, "{} has no IOMMU group: the IOMMU is off. Enable it in the firmware and boot with intel_iommu=on "
                    "(or amd_iommu=on) iommu=pt", name);
    if (!fs::is_directory(o.sysfs / "bus/pci/drivers/vfio-pci", ec))
        return fail(ENOENT, "vfio-pci is not loaded: modprobe vfio-pci");

    // The group is viable only if every other device in it is unbound or on a VFIO-friendly driver.
    const std::string group = group_link.filename().string();
    for (const auto& e : fs::directory_iterator(o.sysfs / "kernel/iommu_groups" / group / "devices", ec)) {
        std::string other = e.path().filename().string();
        if (other == name) continue;
        std::string drv = driver_of(o.sysfs / "bus/pci/devices" / other);
        if (!drv.empty() && drv != "vfio-pci" && drv != "pci-stub" && drv != "pcieport")
            return fail(EBUSY, "IOMMU group {} is not viable: {} shares it and is bound to {}; bind it to vfio-pci too "
                        "(udrv bind {}) or unbind it", group, other, drv, other);
    }
    UDRV_TRY(check_network(dev, name));
    UDRV_TRY(check_block(dev, name, o.mounts));
    return out;
}

Result<BindOutcome> bind_vfio(const Address& addr, const BindOptions& o) {
    BindOutcome out = UDRV_TRY(check_bind(addr, o));
    if (out.already) return out;
    const std::string name = addr.to_string();
    const fs::path dev = o.sysfs / "bus/pci/devices" / name;
    UDRV_TRY(do_bind(dev, name, out.previous_driver, o));
    pr_info("{}: {} -> vfio-pci", name, out.previous_driver.empty() ? "no driver" : out.previous_driver);
    return out;
}

Result<std::vector<BindOutcome>> bind_vfio_all(std::span<const Address> addrs, const BindOptions& o) {
    std::vector<BindOutcome> plan;
    std::vector<std::string> refused;
    for (const Address& a : addrs) {
        if (std::any_of(plan.begin(), plan.end(), [&](const BindOutcome& p) { return p.address == a; })) continue;  // named twice
        auto c = check_bind(a, o);
        if (c) plan.push_back(*c);
        else refused.push_back(c.error().message());
    }
    if (!refused.empty())
        return fail(EPERM, "{}{}", fmt::join(refused, "; "), addrs.size() > 1 ? "; nothing was changed" : "");
    std::vector<BindOutcome> done;
    for (const BindOutcome& p : plan) {
        if (p.already) {
            done.push_back(p);
            continue;
        }
        const std::string name = p.address.to_string();
        if (auto r = do_bind(o.sysfs / "bus/pci/devices" / name, name, p.previous_driver, o); !r) {
            std::vector<std::string> undone;
            for (auto it = done.rbegin(); it != done.rend(); ++it) {
                if (it->already) continue;
                const std::string n = it->address.to_string();
                if (auto u = give_back(o.sysfs / "bus/pci/devices" / n, n, o); u) undone.push_back(fmt::format("{} (back on {})", n, u->empty() ? "no driver" : *u));
                else undone.push_back(fmt::format("{} (could not be given back: {})", n, u.error().message()));
            }
            std::string msg = r.error().message();
            if (!undone.empty()) msg += fmt::format("; gave back what this command had bound: {}", fmt::join(undone, ", "));
            return std::unexpected(Error(r.error().code(), msg));
        }
        pr_info("{}: {} -> vfio-pci", name, p.previous_driver.empty() ? "no driver" : p.previous_driver);
        done.push_back(p);
    }
    return done;
}

Result<std::string> unbind_vfio(const Address& addr, const BindOptions& o) {
    const std::string name = addr.to_string();
    UDRV_TRY(check_root(o));
    fs::path dev = UDRV_TRY(device_dir(addr, o));
    std::string current = driver_of(dev);
    if (!current.empty() && current != "vfio-pci")
        return fail(EINVAL, "{} is bound to {}, not vfio-pci: nothing to give back", name, current);
    std::string now = UDRV_TRY(give_back(dev, name, o));
    pr_info("{}: vfio-pci -> {}", name, now.empty() ? "no driver" : now);
    return now;
}

}  // namespace udrv::pci
