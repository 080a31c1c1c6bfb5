// `udrv modinfo`'s ELF reader against real modules and hostile files: errors, never crashes (run under ASan).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "udrv/modinfo.hpp"
#include "udrv/pci.hpp"

namespace {

std::vector<char> slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

const std::string kParams = std::string(UDRV_SAMPLE_MODULE_DIR) + "/udrv_sample_params.so";

TEST(ModinfoElf, ReadsEveryFieldOfASample) {
    auto mods = udrv::read_modinfo(kParams);
    ASSERT_TRUE(mods) << mods.error().message();
    ASSERT_EQ(mods->size(), 1u);
    const auto& m = mods->front();
    EXPECT_EQ(m.name(), "udrv_sample_params");
    EXPECT_EQ(m.get("license"), "MIT");
    EXPECT_EQ(m.get("version"), "1.0");
    EXPECT_EQ(m.get("abi"), "1");
    EXPECT_EQ(m.get("author"), "The udrv developers");
    ASSERT_EQ(m.params().size(), 4u);
    EXPECT_EQ(m.params()[3].name, "delay_us");
    EXPECT_EQ(m.params()[3].type, "uint32");
}

TEST(ModinfoElf, DependsAndAliasesOfOtherSamples) {
    auto consumer = udrv::read_modinfo(std::string(UDRV_SAMPLE_MODULE_DIR) + "/udrv_sample_consumer.so");
    ASSERT_TRUE(consumer);
    EXPECT_EQ(consumer->front().depends(), std::vector<std::string>{"udrv_sample_provider"});
    auto ramdisk = udrv::read_modinfo(std::string(UDRV_SAMPLE_MODULE_DIR) + "/udrv_ramdisk.so");
    ASSERT_TRUE(ramdisk);
    EXPECT_EQ(ramdisk->front().get("alias"), "of:N*T*Cudrv,ramdisk");
    auto pci = udrv::read_modinfo(std::string(UDRV_TEST_MODULE_DIR) + "/test_pcidrv.so");
    ASSERT_TRUE(pci);
    auto aliases = pci->front().get_all("alias");
    ASSERT_EQ(aliases.size(), 2u);
    EXPECT_EQ(aliases[0], "pci:v00001AF4d00001041sv*sd*bc*sc*i*");
    EXPECT_EQ(aliases[1], "pci:v*d*sv*sd*bc02sc00i*");
}

TEST(ModinfoElf, TwoModulesInOneFileAreTwoEntries) {
    auto mods = udrv::read_modinfo(std::string(UDRV_TEST_MODULE_DIR) + "/test_two.so");
    ASSERT_TRUE(mods);
    ASSERT_EQ(mods->size(), 2u);
}

TEST(ModinfoElf, ClearErrors) {
    auto expect = [](const std::string& path, int code, std::string_view text) {
        auto r = udrv::read_modinfo(path);
        ASSERT_FALSE(r) << path;
        EXPECT_EQ(r.error().code(), code) << r.error().message();
        EXPECT_NE(r.error().message().find(text), std::string::npos) << r.error().message();
    };
    expect("/nonexistent/x.so", ENOENT, "/nonexistent/x.so: cannot open");
    expect("/etc/hostname", ENOEXEC, "not an ELF file");
    expect(std::string(UDRV_TEST_MODULE_DIR) + "/test_nomodinfo.so", ENOEXEC, "no udrv_modinfo section: not a udrv module");
    expect(std::string(UDRV_TEST_MODULE_DIR) + "/test_unterminated.so", EBADMSG, "is not NUL-terminated");
    expect("/tmp", EISDIR, "is a directory");
}

TEST(ModinfoElf, EveryTruncationIsAnErrorNotACrash) {
    std::vector<char> img = slurp(kParams);
    ASSERT_GT(img.size(), 1000u);
    for (std::size_t len = 0; len < img.size(); len += (len < 128 ? 1 : 61)) {
        auto r = udrv::parse_modinfo_elf({img.data(), len}, "truncated");
        EXPECT_FALSE(r) << "truncated to " << len << " bytes was accepted";
    }
}

TEST(ModinfoElf, CorruptHeadersAreRejected) {
    std::vector<char> img = slurp(kParams);
    auto poke64 = [](std::vector<char> v, std::size_t off, std::uint64_t val) {
        for (int i = 0; i < 8; ++i) v[off + static_cast<std::size_t>(i)] = static_cast<char>(val >> (8 * i));
        return v;
    };
    auto poke16 = [](std::vector<char> v, std::size_t off, std::uint16_t val) {
        v[off] = static_cast<char>(val);
        v[off + 1] = static_cast<char>(val >> 8);
        return v;
    };
    auto msg = [](const std::vector<char>& v) {
        auto r = udrv::parse_modinfo_elf(v, "f");
        return r ? std::string("accepted") : r.error().message();
    };
    EXPECT_NE(msg(poke64(img, 0x28, 0xfffffffffffff000ull)).find("outside the file"), std::string::npos);   // e_shoff
    EXPECT_NE(msg(poke64(img, 0x28, 0)).find("no section headers"), std::string::npos);
    EXPECT_NE(msg(poke16(img, 0x3A, 8)).find("smaller than"), std::string::npos);                          // e_shentsize
    EXPECT_NE(msg(poke16(img, 0x3C, 0xfff0)).find("runs past the end"), std::string::npos);                // e_shnum
    EXPECT_NE(msg(poke16(img, 0x3E, 0xfff0)).find("out of range"), std::string::npos);                     // e_shstrndx
    std::vector<char> bad_class = img;
    bad_class[4] = 7;
    EXPECT_NE(msg(bad_class).find("unknown ELF class 7"), std::string::npos);
}

TEST(ModinfoElf, RandomCorruptionNeverCrashes) {
    std::vector<char> img = slurp(kParams);
    std::mt19937 rng(12345);
    int accepted = 0;
    for (int iter = 0; iter < 3000; ++iter) {
        std::vector<char> v = img;
        int flips = 1 + static_cast<int>(rng() % 8);
        for (int i = 0; i < flips; ++i) {
            // Aim most flips at the ELF header and section headers, where offsets live.
            std::size_t pos = (rng() % 2) ? rng() % 64 : rng() % v.size();
            v[pos] = static_cast<char>(rng());
        }
        auto r = udrv::parse_modinfo_elf(v, "fuzz");
        accepted += r.has_value();
    }
    SUCCEED() << accepted << " of 3000 mutated files still parsed";
}

}  // namespace

// Aliases match devices as modprobe matches them: shell wildcards over the whole modalias.
TEST(ModuleAliases, MatchLikeModprobe) {
    const char* nvme = "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02";
    EXPECT_TRUE(udrv::alias_matches("pci:v*d*sv*sd*bc01sc08i02", nvme));
    EXPECT_TRUE(udrv::alias_matches("pci:v00001B36d00000010sv*sd*bc*sc*i*", nvme));
    EXPECT_FALSE(udrv::alias_matches("pci:v00001B36d00000011sv*sd*bc*sc*i*", nvme));
    EXPECT_FALSE(udrv::alias_matches("pci:v*d*sv*sd*bc01sc08i0", nvme));  // the whole string, not a prefix
    EXPECT_TRUE(udrv::alias_matches("pci:v0000?B36d*", nvme));
    EXPECT_FALSE(udrv::alias_matches(std::string_view("pci:*\0x", 7), nvme));  // a NUL in metadata matches nothing
    auto pci = udrv::read_modinfo(std::string(UDRV_TEST_MODULE_DIR) + "/test_pcidrv.so");
    ASSERT_TRUE(pci);
    EXPECT_TRUE(pci->front().matches("pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00"));  // any Ethernet controller
    EXPECT_FALSE(pci->front().matches(nvme));
}

// The modalias udrv computes is the one the kernel writes in sysfs (checked on this machine's devices).
TEST(ModuleAliases, PciModaliasIsTheKernels) {
    std::error_code ec;
    unsigned compared = 0;
    for (const auto& e : std::filesystem::directory_iterator("/sys/bus/pci/devices", ec)) {
        std::ifstream in(e.path() / "modalias");
        std::string kernel;
        if (!std::getline(in, kernel)) continue;
        auto d = udrv::pci::read_device(e.path());
        if (!d) continue;
        EXPECT_EQ(udrv::pci::modalias(*d), kernel) << e.path();
        ++compared;
    }
    if (!compared) GTEST_SKIP() << "no PCI devices with a modalias on this machine";
}
