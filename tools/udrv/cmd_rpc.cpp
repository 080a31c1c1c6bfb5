// udrv rpc METHOD [PARAMS]: one JSON-RPC call to udrvd, for scripts (SPDK's rpc.py in one line). Prints
// the result (or the error object) as JSON; exit 1 when udrvd answered with an error.
#include <memory>

#include "command.hpp"
#include "daemon_client.hpp"
#include "numbers.hpp"
#include "output.hpp"

namespace udrv::tools {
namespace {

struct RpcOpts {
    std::string method, params;
    double timeout = 600;
};

Result<int> run_rpc(const RpcOpts& o) {
    nlohmann::json params = nullptr;
    if (!o.params.empty()) {
        params = nlohmann::json::parse(o.params, nullptr, false);
        if (params.is_discarded() || !(params.is_object() || params.is_array()))
            return fail(EINVAL, "PARAMS must be a JSON object or array, e.g. '{{\"name\": \"udrv_edu\"}}'");
    }
    rpc::Client c = UDRV_TRY(require_daemon("rpc"));
    auto reply = UDRV_TRY(c.call_raw(o.method, params, std::chrono::milliseconds(static_cast<long long>(o.timeout * 1000))));
    if (reply.contains("error")) {
        print_json(reply["error"]);
        return 1;
    }
    print_json(reply.value("result", nlohmann::json()));
    return 0;
}

}  // namespace

void add_rpc(CLI::App& app, Commands& c) {
    auto o = std::make_shared<RpcOpts>();
    auto* cmd = app.add_subcommand("rpc", "Call a udrvd method with JSON parameters (udrv rpc rpc_get_methods lists them; docs/udrvd.md)");
    cmd->add_option("method", o->method, "Method name")->required();
    cmd->add_option("params", o->params, "Parameters: a JSON object, e.g. '{\"address\": \"0000:00:04.0\"}'");
    cmd->add_option("-t,--timeout", o->timeout, "Seconds to wait for the answer (default 600)")->transform(seconds_option());
    c.add(cmd, [o] { return run_rpc(*o); });
}

}  // namespace udrv::tools
