// udrv-host: a driver host, started by udrvd only (src/daemon/host.hpp). Its control channel is the
// file descriptor udrvd hands it (--fd).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "host.hpp"
#include "udrv/loader.hpp"

int main(int argc, char** argv) {
    // udrvd asks which modules are built in (it links no driver itself): their metadata as JSON.
    if (argc == 2 && std::strcmp(argv[1], "--builtin-modinfo") == 0) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& m : udrv::Loader::builtin_modinfo()) out.push_back(m.fields);
        std::puts(out.dump().c_str());
        return 0;
    }
    int fd = -1;
    std::vector<std::filesystem::path> dirs;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--fd") fd = std::atoi(v.c_str());
        else if (k == "--module-dir") dirs.emplace_back(v);
        else if (k != "--name") {
            std::fprintf(stderr, "udrv-host: unknown option %s (udrv-host is started by udrvd)\n", k.c_str());
            return 2;
        }
    }
    if (fd < 3) {
        std::fprintf(stderr, "udrv-host: no control channel (--fd N): udrv-host is started by udrvd, not by hand\n");
        return 2;
    }
    return udrv::daemon::run_host(udrv::daemon::Channel(udrv::Fd(fd)), std::move(dirs));
}
