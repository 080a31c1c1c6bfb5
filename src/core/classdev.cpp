#include "udrv/classdev.hpp"

#include <charconv>

#include "udrv/pci.hpp"

namespace udrv::detail {

std::string next_class_name(std::string_view prefix, const std::vector<std::string>& taken) {
    for (unsigned n = 0;; ++n) {
        std::string candidate = fmt::format("{}{}", prefix, n);
        if (std::find(taken.begin(), taken.end(), candidate) == taken.end()) return candidate;
    }
}

std::string normalize_class_path(std::string_view text) {
    const std::size_t slash = text.find('/');
    const std::string_view head = text.substr(0, slash);
    if (head.find(':') == std::string_view::npos) return std::string(text);
    auto a = pci::Address::parse(head);
    if (!a) return std::string(text);
    return a->to_string() + std::string(slash == std::string_view::npos ? std::string_view() : text.substr(slash));
}

}  // namespace udrv::detail
