// A platform driver that misbehaves on purpose, for udrvd's tests: "udrv,test-crash" devices make its
// probe crash the process (abort(): SIGABRT, which sanitizer builds let through as it is, where they
// turn a SIGSEGV into a report and exit 1), "udrv,test-hang" devices make it hang (the watchdog's case).
#include <unistd.h>

#include <cstdlib>
#include <memory>

#include <udrv/platform.hpp>

namespace {
struct CrashProbe {
    static constexpr std::string_view compatible[] = {"udrv,test-crash", "udrv,test-hang"};
    static udrv::Result<std::unique_ptr<CrashProbe>> probe(udrv::Bound<udrv::platform::Device>&, std::string_view matched) {
        if (matched == "udrv,test-hang")
            for (;;) ::pause();
        std::abort();
    }
};
}  // namespace
UDRV_PLATFORM_DRIVER(CrashProbe, .name = "test_crashprobe", .description = "Crashes or hangs in probe (udrvd's tests)", .license = "GPL");
