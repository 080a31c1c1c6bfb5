// Compile-time encoding of module declarations and typed parameter parsing.
#include <gtest/gtest.h>

#include "udrv/modinfo.hpp"
#include "udrv/module.hpp"
#include "udrv/pci.hpp"

namespace {

// A string literal with its embedded NULs.
template <std::size_t N>
std::string lit(const char (&s)[N]) {
    return std::string(s, N - 1);
}

constexpr udrv::Param<std::int32_t> kLevel{"level", -3, "Level"};
constexpr udrv::Param<std::string_view> kMode{"mode", "fast", "Mode"};
constexpr udrv::ModuleDecl kDecl{.name = "demo",
                                 .authors = {"A. Author <a@example.org>", "B. Author"},
                                 .description = "Demo module",
                                 .license = "GPL",
                                 .version = "2.1",
                                 .aliases = {},
                                 .depends = {"base", "util"},
                                 .params = {kLevel, kMode}};
constexpr std::array<udrv::detail::FixedString, 1> kAliases{udrv::pci::DeviceId::vendor_device(0x1234, 0x11e8).alias()};
constexpr std::size_t kSize = udrv::detail::modinfo_size(kDecl, kAliases);
constexpr auto kBlob = udrv::detail::encode_modinfo<kSize>(kDecl, kAliases);

TEST(ModuleDecl, EncodesKernelStyleKeyValueStrings) {
    std::string_view blob(kBlob.bytes, kSize);
    const std::string expected = lit("name=demo\0version=2.1\0description=Demo module\0") +
                                 lit("author=A. Author <a@example.org>\0author=B. Author\0license=GPL\0") +
                                 lit("alias=pci:v00001234d000011E8sv*sd*bc*sc*i*\0depends=base,util\0") +
                                 lit("parm=level:Level\0parmtype=level:int32\0parmdefault=level:-3\0") +
                                 lit("parm=mode:Mode\0parmtype=mode:string\0parmdefault=mode:fast\0abi=1\0");
    EXPECT_EQ(std::string(blob), expected);
}

TEST(ModuleDecl, EncodingRoundTripsThroughTheParser) {
    auto mods = udrv::parse_modinfo_strings({kBlob.bytes, kSize}, "blob");
    ASSERT_TRUE(mods) << mods.error().message();
    ASSERT_EQ(mods->size(), 1u);
    const udrv::Modinfo& m = mods->front();
    EXPECT_EQ(m.name(), "demo");
    EXPECT_EQ(m.get_all("author").size(), 2u);
    EXPECT_EQ(m.depends(), (std::vector<std::string>{"base", "util"}));
    auto params = m.params();
    ASSERT_EQ(params.size(), 2u);
    EXPECT_EQ(params[0].name, "level");
    EXPECT_EQ(params[0].type, "int32");
    EXPECT_EQ(params[0].default_value, "-3");
    EXPECT_EQ(params[1].description, "Mode");
}

TEST(ModuleDecl, ClassAliasesUseWildcardsForUnmaskedBytes) {
    constexpr auto a = udrv::pci::DeviceId::by_class(0x010802, 0xffffff).alias();
    EXPECT_EQ(a.view(), "pci:v*d*sv*sd*bc01sc08i02");
    constexpr auto b = udrv::pci::DeviceId::by_class(0x020000, 0xff0000).alias();
    EXPECT_EQ(b.view(), "pci:v*d*sv*sd*bc02sc*i*");
}

TEST(Params, BooleansAcceptTheKernelSpellings) {
    for (auto t : {"1", "y", "Y", "yes", "true", "on"}) EXPECT_EQ(std::get<bool>(*udrv::parse_param_value(udrv::ParamType::boolean, t)), true) << t;
    for (auto f : {"0", "n", "N", "no", "false", "off"}) EXPECT_EQ(std::get<bool>(*udrv::parse_param_value(udrv::ParamType::boolean, f)), false) << f;
    auto bad = udrv::parse_param_value(udrv::ParamType::boolean, "maybe");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().message(), "expects bool, got 'maybe' (use y/n, 1/0, true/false)");
}

TEST(Params, IntegersAreRangeChecked) {
    using udrv::ParamType;
    EXPECT_EQ(std::get<std::int64_t>(*udrv::parse_param_value(ParamType::i32, "-2147483648")), -2147483648LL);
    EXPECT_FALSE(udrv::parse_param_value(ParamType::i32, "2147483648"));
    EXPECT_EQ(std::get<std::uint64_t>(*udrv::parse_param_value(ParamType::u32, "0xffffffff")), 0xffffffffu);
    EXPECT_FALSE(udrv::parse_param_value(ParamType::u32, "0x100000000"));
    EXPECT_EQ(udrv::parse_param_value(ParamType::u64, "-1").error().message(), "expects uint64, got '-1' (must not be negative)");
    EXPECT_EQ(std::get<std::int64_t>(*udrv::parse_param_value(ParamType::i64, "-9223372036854775808")), INT64_MIN);
    EXPECT_FALSE(udrv::parse_param_value(ParamType::i64, "9223372036854775808"));
    EXPECT_FALSE(udrv::parse_param_value(ParamType::u64, "18446744073709551616"));
    EXPECT_FALSE(udrv::parse_param_value(ParamType::i64, "12abc"));
    EXPECT_FALSE(udrv::parse_param_value(ParamType::i64, ""));
    EXPECT_FALSE(udrv::parse_param_value(ParamType::i64, "-"));
    EXPECT_FALSE(udrv::parse_param_value(ParamType::i64, "0x"));
}

TEST(Params, ThisModuleReturnsGivenValuesOrDefaults) {
    udrv::ThisModule m("demo", {{"level", udrv::ParamValue(std::int64_t{7})}});
    EXPECT_EQ(m.param(kLevel), 7);
    EXPECT_EQ(m.param(kMode), "fast");
    EXPECT_EQ(m.name(), "demo");
}

}  // namespace
