// NVMe Identify data as nvme-cli prints it: `udrv nvme id-ctrl/id-ns -o json` give the JSON of
// `nvme id-ctrl/id-ns -o json`, key for key and in its order.
#pragma once

#include <nlohmann/json.hpp>

#include "udrv/nvme_spec.hpp"

namespace udrv::tools {

nlohmann::ordered_json identify_json(const nvme::IdentifyDump& d);

}  // namespace udrv::tools
