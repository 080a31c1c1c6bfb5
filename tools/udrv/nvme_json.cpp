#include "nvme_json.hpp"

namespace udrv::tools {
namespace {

nlohmann::ordered_json record_json(const nvme::IdentifyRecord& r) {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (const auto& [key, value] : r.fields)
        std::visit([&, k = std::string(key)](const auto& v) { j[k] = v; }, value);
    return j;
}

}  // namespace

nlohmann::ordered_json identify_json(const nvme::IdentifyDump& d) {
    nlohmann::ordered_json j = record_json(d.fields);
    auto& list = j[std::string(d.list_key)] = nlohmann::ordered_json::array();
    for (const auto& r : d.list) list.push_back(record_json(r));
    return j;
}

}  // namespace udrv::tools
