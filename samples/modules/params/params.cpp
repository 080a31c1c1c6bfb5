// A module with typed parameters, set at load time: `udrv insmod udrv_sample_params.so count=3 who=disk`.
#include <cstdint>
#include <string>

#include <udrv/log.hpp>
#include <udrv/module.hpp>

struct Greeter {
    static constexpr udrv::Param<std::int64_t> count{"count", 1, "How many greetings to log (0-100)"};
    static constexpr udrv::Param<std::string_view> who{"who", "world", "Whom to greet"};
    static constexpr udrv::Param<bool> loud{"loud", false, "Shout the greeting"};
    static constexpr udrv::Param<std::uint32_t> delay_us{"delay_us", 0, "Accepted and reported, to show unsigned parameters"};

    static udrv::Result<Greeter> init(const udrv::ThisModule& self) {
        const std::int64_t n = self.param(count);
        // Parameters are checked for type by the loader; ranges are the module's business.
        if (n < 0 || n > 100) return udrv::fail(EINVAL, "count={} is out of range (0-100)", n);
        std::string greeting = fmt::format("hello, {}{}", self.param(who), self.param(loud) ? "!" : ".");
        for (std::int64_t i = 0; i < n; ++i) udrv::pr_info("{}: [{}/{}] {}", self.name(), i + 1, n, greeting);
        udrv::pr_info("{}: delay_us={}", self.name(), self.param(delay_us));
        return Greeter{static_cast<int>(n)};
    }

    int greetings = 0;
};

UDRV_MODULE(Greeter,
            .name = "udrv_sample_params",
            .authors = {"The udrv developers"},
            .description = "Module with typed parameters",
            .license = "MIT",
            .version = "1.0",
            .params = {Greeter::count, Greeter::who, Greeter::loud, Greeter::delay_us})
