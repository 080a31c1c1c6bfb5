#include "class_json.hpp"

#include "output.hpp"

namespace udrv::tools {

nlohmann::json block_json(const block::Listing& l) {
    return {{"name", l.id.name},
            {"path", l.id.path},
            {"driver", l.id.driver},
            {"device", l.id.device},
            {"bus", l.id.bus},
            {"blocks", l.info.blocks},
            {"block_size", l.info.block_size},
            {"bytes", l.info.blocks * l.info.block_size},
            {"max_transfer", l.info.max_transfer},
            {"max_queue_depth", l.info.max_queue_depth},
            {"max_queues", l.info.max_queues}};
}

nlohmann::json net_json(const net::Listing& l) {
    return {{"name", l.id.name}, {"path", l.id.path},       {"driver", l.id.driver}, {"device", l.id.device}, {"bus", l.id.bus},
            {"mac", net::format_mac(l.mac)}, {"link_up", l.link_up}, {"queues", l.queues}, {"max_queues", l.max_queues}};
}

nlohmann::json net_stats_json(const net::Stats& s) {
    return {{"rx_packets", s.rx_packets}, {"rx_bytes", s.rx_bytes}, {"rx_dropped", s.rx_dropped}, {"rx_errors", s.rx_errors},
            {"tx_packets", s.tx_packets}, {"tx_bytes", s.tx_bytes}, {"tx_errors", s.tx_errors}, {"rx_interrupts", s.rx_interrupts}};
}

std::string block_line(const nlohmann::json& j) {
    const auto blocks = j.value("blocks", std::uint64_t{0});
    const auto bs = j.value("block_size", std::uint64_t{0});
    const auto max_queues = j.value("max_queues", 0u);
    return fmt::format("{:<10} {:<20} {:<13} {} blocks of {} B ({}), queues of up to {} commands ({})\n", j.value("name", ""),
                       j.value("path", ""), j.value("driver", ""), blocks, bs, human_bytes(static_cast<double>(blocks) * static_cast<double>(bs)),
                       j.value("max_queue_depth", 0u), max_queues ? fmt::format("at most {} open", max_queues) : "any number");
}

std::string net_line(const nlohmann::json& j) {
    return fmt::format("{:<6} {}  {}  {}  link {}  {} queue pair(s) of at most {}\n", j.value("name", ""), j.value("device", ""),
                       j.value("driver", ""), j.value("mac", ""), j.value("link_up", false) ? "up" : "down", j.value("queues", 0u),
                       j.value("max_queues", 0u));
}

}  // namespace udrv::tools
