// udrvd's JSON-RPC input on any bytes, as a client could send them: the framing (where each message
// ends, depth and size bounds), then nlohmann's parse and the request checks, message after message.
#include <string_view>

#include "udrv/rpc.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    udrv::rpc::MessageReader r;
    // Fed in two pieces, as a socket may deliver it.
    const std::string_view all(reinterpret_cast<const char*>(data), size);
    r.feed(all.substr(0, size / 2));
    for (int round = 0; round < 2; ++round) {
        for (;;) {
            auto m = r.next();
            if (!m || !*m) break;
            auto j = nlohmann::json::parse(**m, nullptr, false);
            if (j.is_discarded()) continue;
            if (j.is_array())
                for (const auto& e : j) (void)udrv::rpc::parse_request(e);
            else
                (void)udrv::rpc::parse_request(j);
        }
        r.feed(all.substr(size / 2));
    }
    return 0;
}
