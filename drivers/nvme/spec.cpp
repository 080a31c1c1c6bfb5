#include "spec.hpp"

#include <cerrno>

#include <fmt/format.h>

namespace udrv::nvme {

std::string status_name(std::uint16_t sf) {
    const std::uint16_t sct = status_code_type(sf), sc = status_code(sf);
    const char* name = nullptr;
    if (sct == 0) {
        switch (sc) {
            case 0x00: name = "Successful Completion"; break;
            case 0x01: name = "Invalid Command Opcode"; break;
            case 0x02: name = "Invalid Field in Command"; break;
            case 0x03: name = "Command ID Conflict"; break;
            case 0x04: name = "Data Transfer Error"; break;
            case 0x05: name = "Commands Aborted due to Power Loss Notification"; break;
            case 0x06: name = "Internal Error"; break;
            case 0x07: name = "Command Abort Requested"; break;
            case 0x08: name = "Command Aborted due to SQ Deletion"; break;
            case 0x0b: name = "Invalid Namespace or Format"; break;
            case 0x0d: name = "Invalid SGL Segment Descriptor"; break;
            case 0x13: name = "Invalid PRP Offset"; break;
            case 0x80: name = "LBA Out of Range"; break;
            case 0x81: name = "Capacity Exceeded"; break;
            case 0x82: name = "Namespace Not Ready"; break;
        }
    } else if (sct == 1) {
        switch (sc) {
            case 0x00: name = "Completion Queue Invalid"; break;
            case 0x01: name = "Invalid Queue Identifier"; break;
            case 0x02: name = "Invalid Queue Size"; break;
            case 0x03: name = "Abort Command Limit Exceeded"; break;
            case 0x08: name = "Invalid Interrupt Vector"; break;
            case 0x0b: name = "Invalid Namespace or Format"; break;
            case 0x0c: name = "Invalid Queue Deletion"; break;
            case 0x80: name = "Conflicting Attributes"; break;
            case 0x82: name = "Attempted Write to Read Only Range"; break;
        }
    } else if (sct == 2) {
        switch (sc) {
            case 0x80: name = "Write Fault"; break;
            case 0x81: name = "Unrecovered Read Error"; break;
            case 0x82: name = "End-to-end Guard Check Error"; break;
            case 0x85: name = "Compare Failure"; break;
            case 0x86: name = "Access Denied"; break;
            case 0x87: name = "Deallocated or Unwritten Logical Block"; break;
        }
    }
    static constexpr const char* kTypes[] = {"Generic", "Command Specific", "Media/Data Integrity", "Path Related",
                                             "?", "?", "?", "Vendor Specific"};
    return fmt::format("{} (SCT {:x}h {}, SC {:02x}h{})", name ? name : "Unknown status", sct, kTypes[sct], sc,
                       status_dnr(sf) ? ", do not retry" : "");
}

int status_errno(std::uint16_t sf) {
    const std::uint16_t sct = status_code_type(sf), sc = status_code(sf);
    if (sct == 0 && (sc == 0x01 || sc == 0x02 || sc == 0x0b || sc == 0x80)) return EINVAL;
    if (sct == 0 && sc == 0x81) return ENOSPC;
    if (sct == 0 && (sc == 0x07 || sc == 0x08)) return ECANCELED;
    if (sct == 2 && sc == 0x86) return EACCES;
    return EIO;
}

}  // namespace udrv::nvme
