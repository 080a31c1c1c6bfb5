// Formatting of PCI devices as `udrv lspci` prints them: text in the words of `lspci -nn -vvv` (the lines
// udrv decodes, each as lspci prints it; tests/system/lspci_agrees.sh checks), or JSON.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "udrv/pci.hpp"

namespace udrv::tools {

/// The `lspci -nn` header line: "0000:00:03.0 Ethernet controller [0200]: Red Hat, Inc. ... [1af4:1041] (rev 01)".
/// With `verbose`, the prog-if is appended as lspci -v does.
std::string lspci_header(const pci::DeviceInfo& d, const pci::IdDatabase& ids, bool verbose);
/// The text of one capability header as lspci -vv prints it after "Capabilities: [xx] ".
std::string capability_text(const pci::DeviceInfo& d, const pci::Capability& c, const pci::IdDatabase& ids);
std::string ext_capability_text(const pci::DeviceInfo& d, const pci::ExtCapability& c);
/// An extended capability's name alone ("Device Serial Number"), as JSON gives it.
std::string ext_capability_name(std::uint16_t id);
/// One device: header line, and with `verbose` the indented detail lines.
std::string format_device(const pci::DeviceInfo& d, const pci::IdDatabase& ids, bool verbose);
nlohmann::json device_json(const pci::DeviceInfo& d, const pci::IdDatabase& ids);
/// "512K", "16M": lspci's size notation.
std::string format_size(std::uint64_t bytes);

}  // namespace udrv::tools
