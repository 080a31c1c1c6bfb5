#include "udrv/bind.hpp"

#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>

#include "udrv/log.hpp"

namespace udrv::pci {
namespace fs = std::filesystem;
namespace {

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
        std::ifstream in(p / "flags");
        std::string flags;
        in >> flags;
        if (std::strtoul(flags.c_str(), nullptr, 16) & 0x1)  // IFF_UP
            return fail(EBUSY, "{} is in use: network interface {} is up; take it down first (ip link set {} down)", name,
                        p.filename().string(), p.filename().string());
    }
    return {};
}

// Block devices below the device (disks and partitions) that are mounted or held by another device.
Result<void> check_block(const fs::path& dev, const std::string& name, const fs::path& mounts_file) {
    std::set<std::string> mounted;
    std::map<std::string, std::string> mount_point;
    std::ifstream mounts(mounts_file);
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

}  // namespace

Result<void> bind_vfio(const Address& addr, const BindOptions& o) {
    const std::string name = addr.to_string();
    UDRV_TRY(check_root(o));
    fs::path dev = UDRV_TRY(device_dir(addr, o));
    std::string current = driver_of(dev);
    if (current == "vfio-pci") return {};

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

    if (!current.empty()) UDRV_TRY_CTX(write_attr(dev / "driver/unbind", name), "unbinding {} from {}", name, current);
    UDRV_TRY(write_attr(dev / "driver_override", "vfio-pci"));
    if (auto r = write_attr(o.sysfs / "bus/pci/drivers/vfio-pci/bind", name); !r) {
        // Put the device back where it was rather than leave it driverless.
        (void)write_attr(dev / "driver_override", "\n");
        (void)write_attr(o.sysfs / "bus/pci/drivers_probe", name);
        return std::unexpected(std::move(r).error().context(fmt::format("binding {} to vfio-pci", name)));
    }
    pr_info("{}: {} -> vfio-pci (IOMMU group {})", name, current.empty() ? "no driver" : current, group);
    return {};
}

Result<std::string> unbind_vfio(const Address& addr, const BindOptions& o) {
    const std::string name = addr.to_string();
    UDRV_TRY(check_root(o));
    fs::path dev = UDRV_TRY(device_dir(addr, o));
    std::string current = driver_of(dev);
    if (!current.empty() && current != "vfio-pci")
        return fail(EINVAL, "{} is bound to {}, not vfio-pci: nothing to give back", name, current);
    UDRV_TRY(write_attr(dev / "driver_override", "\n"));
    if (!current.empty()) UDRV_TRY(write_attr(dev / "driver/unbind", name));
    UDRV_TRY(write_attr(o.sysfs / "bus/pci/drivers_probe", name));
    std::string now = driver_of(dev);
    pr_info("{}: vfio-pci -> {}", name, now.empty() ? "no driver" : now);
    return now;
}

}  // namespace udrv::pci
