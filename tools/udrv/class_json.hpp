// Class devices as JSON and as the lines `udrv block list` / `udrv net list` print: one form for the
// devices of this process and for those udrvd's driver hosts report, so both print the same.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "udrv/block.hpp"
#include "udrv/net.hpp"

namespace udrv::tools {

nlohmann::json block_json(const block::Listing& l);
nlohmann::json net_json(const net::Listing& l);
nlohmann::json net_stats_json(const net::Stats& s);
/// The text line for a block_json / net_json object.
std::string block_line(const nlohmann::json& j);
std::string net_line(const nlohmann::json& j);

}  // namespace udrv::tools
