// Class devices: what a driver publishes so that others use its device by name, without knowing the
// driver (the kernel's register_netdev / add_disk, SPDK's bdev names). A driver's probe publishes
// through its Bound<> device; unbind withdraws the publication before the driver's remove runs, so
// nobody enters a driver that is tearing down. Each class (block, net, nvme) keeps a registry of its
// own; udrv/block.hpp, udrv/net.hpp and udrv/nvme.hpp are how users reach them.
#pragma once

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "udrv/device.hpp"
#include "udrv/result.hpp"
#include "udrv/revocable.hpp"

namespace udrv {

/// Who a class device is.
struct ClassDeviceInfo {
    std::string name;    ///< "nvme0n1", "net0": unique in its class in this process, given at publication
    std::string path;    ///< stable across runs and processes: "0000:00:04.0/ns1", "0000:00:03.0", a platform device's name
    std::string driver;  ///< "udrv_nvme"
    std::string device;  ///< the bus device behind it: "0000:00:04.0", "disk0"
    std::string bus;     ///< "pci", "platform"
};

/// The name a driver asks for: exactly this, or a prefix and the lowest number not in use ("net" ->
/// "net0", then "net1"; a number freed at unbind is given again, as the kernel's IDA does).
struct ClassName {
    std::string text;
    bool numbered = false;
    static ClassName exactly(std::string n) { return {std::move(n), false}; }
    static ClassName next(std::string prefix) { return {std::move(prefix), true}; }
};

namespace detail {

/// Lowest-numbered free "prefixN" among `taken` names.
std::string next_class_name(std::string_view prefix, const std::vector<std::string>& taken);
/// `text` with a PCI address at its start written in full ("00:04.0/ns1" -> "0000:00:04.0/ns1"), so
/// that a path may be given as lspci prints addresses.
std::string normalize_class_path(std::string_view text);

/// The registry of one class of devices of interface T. Thread-safe. Entries hold a Revocable<T>:
/// handles users opened share it, and withdrawing an entry revokes it.
template <typename T>
class ClassRegistry {
public:
    struct Entry {
        ClassDeviceInfo info;
        std::shared_ptr<Revocable<T>> object;
    };
    explicit ClassRegistry(std::string cls) : cls_(std::move(cls)) {}

    Result<std::string> add(T& object, ClassName name, ClassDeviceInfo info) {
        std::lock_guard lock(mu_);
        if (name.numbered) {
            std::vector<std::string> taken;
            for (auto& e : entries_) taken.push_back(e.info.name);
            info.name = next_class_name(name.text, taken);
        } else {
            info.name = std::move(name.text);
        }
        for (auto& e : entries_) {
            if (e.info.name == info.name) return fail(EEXIST, "a {} device named {} exists already ({})", cls_, info.name, e.info.path);
            if (e.info.path == info.path) return fail(EEXIST, "{} is published already, as {} device {}", info.path, cls_, e.info.name);
        }
        entries_.push_back({info, std::make_shared<Revocable<T>>(&object)});
        return info.name;
    }

    /// Takes the entry out and revokes it (waiting for calls in progress through handles).
    void withdraw(const std::string& name) noexcept {
        std::shared_ptr<Revocable<T>> gone;
        {
            std::lock_guard lock(mu_);
            auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.info.name == name; });
            if (it == entries_.end()) return;
            gone = std::move(it->object);
            entries_.erase(it);
        }
        gone->revoke();  // outside the registry lock: a call in progress may list devices
    }

    Result<Entry> find(std::string_view name_or_path) const {
        const std::string path = normalize_class_path(name_or_path);
        std::lock_guard lock(mu_);
        for (auto& e : entries_)
            if (e.info.name == name_or_path || e.info.path == path) return e;
        std::string known;
        for (auto& e : entries_) known += (known.empty() ? "" : ", ") + e.info.name + " (" + e.info.path + ")";
        return fail(ENODEV, "no {} device {} in this process{}{}", cls_, name_or_path, known.empty() ? "" : "; there are: ",
                    known.empty() ? fmt::format(" (is its device bound to vfio-pci and probed? `udrv {} list` shows them)", cls_) : known);
    }

    std::vector<Entry> list() const {
        std::lock_guard lock(mu_);
        return entries_;
    }

private:
    std::string cls_;
    mutable std::mutex mu_;
    std::vector<Entry> entries_;
};

/// Publication through a bound device: the entry names the bus device and its driver, and is
/// withdrawn at unbind before the driver's remove.
template <typename T, typename D>
Result<std::string> publish(ClassRegistry<T>& reg, const BoundBase<D>& bound, T& object, ClassName name, std::string path,
                            std::string_view cls) {
    const udrv::Device& d = bound.device();
    ClassDeviceInfo info{{}, std::move(path), d.driver() ? d.driver()->name() : std::string(), d.name(), d.bus().name()};
    std::string n = UDRV_TRY(reg.add(object, std::move(name), std::move(info)));
    bound.add_unpublish_action(fmt::format("{} device {}", cls, n), [&reg, n] { reg.withdraw(n); });
    return n;
}

}  // namespace detail
}  // namespace udrv
