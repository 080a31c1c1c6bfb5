// What udrvd's method handlers share to read their parameters: an object, by name, as SPDK's methods
// take them.
#pragma once

#include <nlohmann/json.hpp>

#include "rpc_server.hpp"
#include "udrv/result.hpp"

namespace udrv::daemon {

/// The string parameter `key`: EINVAL when required and missing, or not a string; "" when optional and missing.
inline Result<std::string> str_param(const nlohmann::json& p, const char* key, bool required) {
    if (!p.is_object() || !p.contains(key)) {
        if (required) return fail(EINVAL, "missing parameter \"{}\"", key);
        return std::string();
    }
    if (!p[key].is_string()) return fail(EINVAL, "parameter \"{}\" must be a string", key);
    return p[key].get<std::string>();
}

/// Answers with JSON-RPC's invalid-params code and what was wrong.
inline void invalid(const Responder& r, const Error& e) { r.error(rpc::invalid_params, e.message()); }

}  // namespace udrv::daemon
