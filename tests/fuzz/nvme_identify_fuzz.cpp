// Identify Controller and Identify Namespace pages as a controller returns them: the driver's
// validated parsing (queue entry sizes, MDTS, block sizes, formats) and the field-by-field dump.
#include <cstring>
#include <span>
#include <vector>

#include "udrv/nvme_spec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<std::byte> page(4096);
    std::memcpy(page.data(), data, std::min<std::size_t>(size, page.size()));
    udrv::nvme::ControllerInfo info;
    if (udrv::nvme::parse_identify_controller(page, info, 512 * 1024)) (void)udrv::nvme::parse_identify_namespace(1, page, info.max_transfer);
    (void)udrv::nvme::parse_identify_namespace(1, page, 512 * 1024);
    (void)udrv::nvme::dump_identify_controller(page);
    (void)udrv::nvme::dump_identify_namespace(page);
    // Short pages (a truncated copy) are refused, not read past.
    (void)udrv::nvme::parse_identify_controller(std::span(page).first(std::min<std::size_t>(size, 4096)), info, 512 * 1024);
    (void)udrv::nvme::dump_identify_namespace(std::span(page).first(std::min<std::size_t>(size, 4096)));
    for (std::uint16_t sf = static_cast<std::uint16_t>(size); sf < static_cast<std::uint16_t>(size) + 4; ++sf) {
        (void)udrv::nvme::status_name(sf);
        (void)udrv::nvme::status_errno(sf);
    }
    return 0;
}
