// depmod's index and modprobe.d: what a package or an administrator writes is read line by line, and a
// problem names its file and line; resolution loads dependencies first and honours blacklists only for
// aliases, as the kernel's modprobe does.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "udrv/modprobe.hpp"

namespace fs = std::filesystem;
using namespace udrv;

namespace {

struct TempDir {
    fs::path path = fs::temp_directory_path() / ("udrv-modprobe-" + std::to_string(::getpid()) + "-" +
                                                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
    TempDir() { fs::create_directories(path); }
    ~TempDir() { fs::remove_all(path); }
    void write(const std::string& name, const std::string& text) const { std::ofstream(path / name) << text; }
};

}  // namespace

TEST(Modprobe, ConfigLinesCommentsAndContinuations) {
    modprobe::Config c;
    ASSERT_TRUE(modprobe::parse_config("# comment\n\nblacklist udrv-edu  # trailing\noptions udrv_nvme io_timeout_ms=5 \\\n   x=1\n"
                                       "alias pci:v00001234d* udrv_edu\nsoftdep a pre: b\n",
                                       "a.conf", c));
    ASSERT_EQ(c.blacklist.count("udrv_edu"), 1u);  // '-' and '_' alike, as in the kernel
    EXPECT_EQ(c.blacklist["udrv_edu"], "a.conf:3");
    EXPECT_EQ(c.options["udrv_nvme"], (std::vector<std::string>{"io_timeout_ms=5", "x=1"}));
    ASSERT_EQ(c.aliases.size(), 1u);
    EXPECT_EQ(c.aliases[0].second, "udrv_edu");
    ASSERT_EQ(c.warnings.size(), 1u);
    EXPECT_NE(c.warnings[0].find("a.conf:7: 'softdep' is not supported by udrv"), std::string::npos) << c.warnings[0];
}

TEST(Modprobe, BadConfigLinesNameTheirPlace) {
    for (auto [text, says] : {std::pair{"blacklist\n", "a.conf:1: expected 'blacklist NAME'"},
                              {"\n\noptions udrv_nvme\n", "a.conf:3: expected 'options NAME key=value ...'"},
                              {"alias x\n", "a.conf:1: expected 'alias PATTERN NAME'"},
                              {"blacklist a/b\n", "a.conf:1: expected 'blacklist NAME'"}}) {
        modprobe::Config c;
        auto r = modprobe::parse_config(text, "a.conf", c);
        ASSERT_FALSE(r) << text;
        EXPECT_NE(r.error().message().find(says), std::string::npos) << r.error().message();
    }
}

TEST(Modprobe, IndexReadsBackAndOrdersDependencies) {
    TempDir d;
    d.write("modules.dep", "a.so: c.so b.so\nb.so: c.so\nc.so:\nloop1.so: loop2.so\nloop2.so: loop1.so\n");
    d.write("modules.alias", "# comment\nalias pci:v00001234d*sv*sd*bc*sc*i* a\nalias pci:v*d*sv*sd*bc01sc08i02 c\n");
    auto idx = modprobe::read(d.path);
    ASSERT_TRUE(idx) << idx.error().message();
    auto order = idx->load_order("a");
    ASSERT_TRUE(order) << order.error().message();
    std::vector<std::string> names;
    for (auto* e : *order) names.push_back(e->name);
    EXPECT_EQ(names, (std::vector<std::string>{"c", "b", "a"}));
    auto loop = idx->load_order("loop1");
    ASSERT_FALSE(loop);
    EXPECT_EQ(loop.error().code(), ELOOP);
    EXPECT_EQ(idx->load_order("nope").error().code(), ENOENT);

    modprobe::Config c;
    std::vector<std::pair<std::string, std::string>> bl;
    EXPECT_EQ(modprobe::match(*idx, c, "pci:v00001234d000011E8sv00001AF4sd00001100bc00scFFi00", &bl), std::vector<std::string>{"a"});
    ASSERT_TRUE(modprobe::parse_config("blacklist a\nalias pci:v00001234d000011E8* b\n", "x.conf", c));
    EXPECT_EQ(modprobe::match(*idx, c, "pci:v00001234d000011E8sv00001AF4sd00001100bc00scFFi00", &bl), std::vector<std::string>{"b"});
    ASSERT_EQ(bl.size(), 1u);
    EXPECT_EQ(bl[0], (std::pair<std::string, std::string>{"a", "x.conf:1"}));
    EXPECT_TRUE(modprobe::is_modalias("pci:v00001234d000011E8sv00001AF4sd00001100bc00scFFi00"));
    EXPECT_FALSE(modprobe::is_modalias("udrv_edu"));
}

TEST(Modprobe, MalformedIndexSaysToRunDepmod) {
    TempDir d;
    auto none = modprobe::read(d.path);
    ASSERT_FALSE(none);
    EXPECT_NE(none.error().message().find("has no modules.dep: run udrv depmod"), std::string::npos) << none.error().message();
    d.write("modules.dep", "a.so: b.so\nnot a line\n");
    d.write("modules.alias", "");
    auto bad = modprobe::read(d.path);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message().find("modules.dep:2: expected 'NAME.so: DEPENDENCY.so ...'"), std::string::npos) << bad.error().message();
    d.write("modules.dep", "a.so:\n");
    d.write("modules.alias", "alias pci:* zz\n");
    auto orphan = modprobe::read(d.path);
    ASSERT_FALSE(orphan);
    EXPECT_NE(orphan.error().message().find("modules.alias:1: module zz is not in modules.dep"), std::string::npos) << orphan.error().message();
}

TEST(Modprobe, DepmodIndexesTheSampleModulesWithoutLoadingThem) {
    TempDir d;
    for (const char* m : {"udrv_sample_provider.so", "udrv_sample_consumer.so", "udrv_sample_hello.so"})
        fs::copy_file(fs::path(UDRV_SAMPLE_MODULE_DIR) / m, d.path / m);
    d.write("junk.so", "not an ELF file");
    auto idx = modprobe::scan(d.path);
    ASSERT_TRUE(idx) << idx.error().message();
    EXPECT_EQ(idx->modules.size(), 3u);
    ASSERT_EQ(idx->warnings.size(), 1u);
    EXPECT_NE(idx->warnings[0].find("junk.so"), std::string::npos) << idx->warnings[0];
    ASSERT_TRUE(modprobe::write(*idx));
    auto back = modprobe::read(d.path);
    ASSERT_TRUE(back) << back.error().message();
    auto order = back->load_order("udrv_sample_consumer");
    ASSERT_TRUE(order);
    ASSERT_EQ(order->size(), 2u);
    EXPECT_EQ((*order)[0]->name, "udrv_sample_provider");
    fs::copy_file(d.path / "udrv_sample_hello.so", d.path / "again.so");
    auto dup = modprobe::scan(d.path);
    ASSERT_FALSE(dup);
    EXPECT_EQ(dup.error().code(), EEXIST);
}
