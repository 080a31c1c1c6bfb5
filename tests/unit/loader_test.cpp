// The module loader: samples, dependencies, parameters, reference counts, taint and every error path.
#include <gtest/gtest.h>

#include <dlfcn.h>

#include "udrv/loader.hpp"
#include "udrv/log.hpp"

namespace {

const std::string kSamples = UDRV_SAMPLE_MODULE_DIR;
const std::string kTests = UDRV_TEST_MODULE_DIR;

class LoaderTest : public ::testing::Test {
protected:
    void SetUp() override {
        udrv::set_log_sink([this](udrv::LogLevel, std::string_view m) { log.emplace_back(m); });
    }
    void TearDown() override { udrv::set_log_sink(nullptr); }
    bool logged(std::string_view text) const {
        for (auto& l : log)
            if (l.find(text) != std::string::npos) return true;
        return false;
    }
    udrv::Error load_error(udrv::Loader& l, const std::string& what, const std::vector<std::string>& params = {}) {
        auto r = l.load(what, params);
        EXPECT_FALSE(r) << what << " loaded unexpectedly";
        return r ? udrv::Error(0, "") : r.error();
    }
    std::vector<std::string> log;
};

// Whether a module file is currently mapped into this process.
bool mapped(const std::string& file) {
    void* h = dlopen(file.c_str(), RTLD_NOW | RTLD_NOLOAD);
    if (h) dlclose(h);
    return h != nullptr;
}

TEST_F(LoaderTest, MinimalModuleRunsInitAndExit) {
    {
        udrv::Loader l;
        auto m = l.load(kSamples + "/udrv_sample_hello.so");
        ASSERT_TRUE(m) << m.error().message();
        EXPECT_EQ((*m)->name, "udrv_sample_hello");
        EXPECT_TRUE(logged("udrv_sample_hello: hello from user space"));
        EXPECT_FALSE(logged("goodbye"));
        ASSERT_TRUE(l.unload("udrv_sample_hello"));
        EXPECT_TRUE(logged("udrv_sample_hello: goodbye"));
        EXPECT_EQ(l.find("udrv_sample_hello"), nullptr);
    }
    EXPECT_FALSE(mapped(kSamples + "/udrv_sample_hello.so")) << "unload must dlclose the module";
    int goodbyes = 0;
    for (auto& s : log) goodbyes += s.find("goodbye") != std::string::npos;
    EXPECT_EQ(goodbyes, 1) << "exit runs exactly once";
}

TEST_F(LoaderTest, ParametersReachInit) {
    udrv::Loader l;
    auto m = l.load(kSamples + "/udrv_sample_params.so", {"count=2", "who=bus", "loud", "delay_us=0x10"});
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_TRUE(logged("udrv_sample_params: [2/2] hello, bus!"));
    EXPECT_TRUE(logged("udrv_sample_params: delay_us=16"));
}

TEST_F(LoaderTest, ParameterErrorsNameTheProblemAndLoadNothing) {
    udrv::Loader l;
    auto e = load_error(l, kSamples + "/udrv_sample_params.so", {"colour=red"});
    EXPECT_EQ(e.code(), EINVAL);
    EXPECT_EQ(e.message(), "module udrv_sample_params: unknown parameter 'colour'; it has count (int64), who (string), loud (bool), "
                           "delay_us (uint32)");
    e = load_error(l, kSamples + "/udrv_sample_params.so", {"count=many"});
    EXPECT_EQ(e.message(), "module udrv_sample_params: parameter 'count' expects int64, got 'many'");
    e = load_error(l, kSamples + "/udrv_sample_params.so", {"delay_us=-5"});
    EXPECT_EQ(e.message(), "module udrv_sample_params: parameter 'delay_us' expects uint32, got '-5' (must not be negative)");
    e = load_error(l, kSamples + "/udrv_sample_params.so", {"who"});
    EXPECT_EQ(e.message(), "module udrv_sample_params: parameter 'who' needs a value (who=...)");
    e = load_error(l, kSamples + "/udrv_sample_hello.so", {"x=1"});
    EXPECT_EQ(e.message(), "module udrv_sample_hello: unknown parameter 'x'; it has no parameters");
    EXPECT_TRUE(l.list().empty());
    EXPECT_FALSE(mapped(kSamples + "/udrv_sample_params.so")) << "a bad parameter is caught before dlopen";
}

TEST_F(LoaderTest, FailingInitUnloadsCleanly) {
    udrv::Loader l;
    auto e = load_error(l, kSamples + "/udrv_sample_params.so", {"count=500"});
    EXPECT_EQ(e.message(), "module udrv_sample_params: init failed: count=500 is out of range (0-100)");
    EXPECT_TRUE(l.list().empty());
    EXPECT_FALSE(mapped(kSamples + "/udrv_sample_params.so"));
}

TEST_F(LoaderTest, FailingInitAlsoUnloadsTheDependenciesItPulledIn) {
    udrv::Loader l({kSamples});
    auto e = load_error(l, kTests + "/test_failinit.so");
    EXPECT_EQ(e.code(), EIO);
    EXPECT_EQ(e.message(), "module test_failinit: init failed: simulated hardware fault");
    EXPECT_TRUE(l.list().empty()) << "udrv_sample_provider was loaded for it and must be gone";
}

TEST_F(LoaderTest, DependenciesLoadFirstAndPinTheirProvider) {
    udrv::Loader l;
    auto m = l.load(kSamples + "/udrv_sample_consumer.so");
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_TRUE(logged("udrv_sample_consumer: got tickets 1000 and 1001 from udrv_sample_provider"));
    const udrv::LoadedModule* prov = l.find("udrv_sample_provider");
    ASSERT_NE(prov, nullptr);
    EXPECT_EQ(prov->refcount, 1u);
    EXPECT_EQ(prov->used_by, std::vector<std::string>{"udrv_sample_consumer"});

    auto busy = l.unload("udrv_sample_provider");
    ASSERT_FALSE(busy);
    EXPECT_EQ(busy.error().code(), EBUSY);
    EXPECT_EQ(busy.error().message(), "module udrv_sample_provider is in use (used by udrv_sample_consumer): unload its users first, or force");

    ASSERT_TRUE(l.unload("udrv_sample_consumer"));
    EXPECT_EQ(l.find("udrv_sample_provider")->refcount, 0u);
    ASSERT_TRUE(l.unload("udrv_sample_provider"));
    EXPECT_EQ(l.taint(), "");
}

TEST_F(LoaderTest, LoadByNameUsesTheSearchPath) {
    udrv::Loader l({"/nonexistent", kSamples});
    ASSERT_TRUE(l.load("udrv_sample_hello"));
    auto e = load_error(l, "udrv_sample_hello");
    EXPECT_EQ(e.code(), EEXIST);
    EXPECT_EQ(e.message(), "module udrv_sample_hello is already loaded");
    e = load_error(l, "no_such_module");
    EXPECT_EQ(e.code(), ENOENT);
    EXPECT_EQ(e.message(), "module no_such_module not found (looked for no_such_module.so in: /nonexistent, " + kSamples +
                               "); set UDRV_MODULE_PATH or give a path");
}

TEST_F(LoaderTest, ModuleRefKeepsAModuleLoaded) {
    udrv::Loader l;
    ASSERT_TRUE(l.load(kSamples + "/udrv_sample_hello.so"));
    {
        auto ref = l.get("udrv_sample_hello");
        ASSERT_TRUE(ref);
        auto busy = l.unload("udrv_sample_hello");
        ASSERT_FALSE(busy);
        EXPECT_EQ(busy.error().message(), "module udrv_sample_hello is in use (1 reference(s) held): unload its users first, or force");
    }
    EXPECT_TRUE(l.unload("udrv_sample_hello"));
    EXPECT_EQ(l.get("udrv_sample_hello").error().code(), ENOENT);
}

TEST_F(LoaderTest, ForcedUnloadTaints) {
    udrv::Loader l;
    ASSERT_TRUE(l.load(kSamples + "/udrv_sample_hello.so"));
    auto ref = l.get("udrv_sample_hello");
    ASSERT_TRUE(l.unload("udrv_sample_hello", true));
    EXPECT_EQ(l.taint(), "R");
    EXPECT_TRUE(logged("forcing unload of udrv_sample_hello while in use"));
}

TEST_F(LoaderTest, ProprietaryLicenseTaints) {
    udrv::Loader l;
    ASSERT_TRUE(l.load(kTests + "/test_proprietary.so"));
    EXPECT_EQ(l.taint(), "P");
    EXPECT_TRUE(logged("module test_proprietary has license 'Proprietary', which is not open source: process tainted (P)"));
    EXPECT_NE(l.format_lsmod().find("Tainted: P"), std::string::npos);
    ASSERT_TRUE(l.unload("test_proprietary"));
    EXPECT_EQ(l.taint(), "P") << "taint sticks for the life of the process, as in the kernel";
}

TEST_F(LoaderTest, LicensesThatDoNotTaint) {
    for (auto lic : {"GPL", "GPL v2", "Dual MIT/GPL", "MIT", "BSD-3-Clause", "Apache-2.0"})
        EXPECT_TRUE(udrv::Loader::license_is_open_source(lic)) << lic;
    for (auto lic : {"Proprietary", "", "gpl", "Freeware"}) EXPECT_FALSE(udrv::Loader::license_is_open_source(lic)) << lic;
}

TEST_F(LoaderTest, MetadataIsCheckedBeforeAnyCodeRuns) {
    udrv::Loader l;
    auto e = load_error(l, kTests + "/test_badabi.so");
    EXPECT_EQ(e.code(), ENOEXEC);
    EXPECT_EQ(e.message(), kTests + "/test_badabi.so: module test_badabi was built for udrv module ABI 99, this loader speaks ABI 1: "
                                    "rebuild the module against this udrv");
    EXPECT_FALSE(mapped(kTests + "/test_badabi.so"));
    e = load_error(l, kTests + "/test_nolicense.so");
    EXPECT_EQ(e.message(), kTests + "/test_nolicense.so: module test_nolicense declares no license= (required, e.g. \"GPL\" or \"MIT\")");
    e = load_error(l, kTests + "/test_nomodinfo.so");
    EXPECT_EQ(e.message(), kTests + "/test_nomodinfo.so: no udrv_modinfo section: not a udrv module (declare one with UDRV_MODULE)");
    e = load_error(l, kTests + "/test_two.so");
    EXPECT_EQ(e.message(), kTests + "/test_two.so: holds 2 modules; a loadable module file declares exactly one");
}

TEST_F(LoaderTest, DlopenFailureIsReported) {
    udrv::Loader l;
    auto e = load_error(l, kTests + "/test_unresolved.so");
    EXPECT_EQ(e.code(), ENOEXEC);
    EXPECT_NE(e.message().find("dlopen failed"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("test_symbol_that_does_not_exist"), std::string::npos) << e.message();
}

TEST_F(LoaderTest, DependencyCycleAndMissingDependency) {
    udrv::Loader l;
    auto e = load_error(l, kTests + "/test_cycle_a.so");
    EXPECT_EQ(e.code(), ELOOP);
    EXPECT_EQ(e.message(), "test_cycle_a depends on test_cycle_b: test_cycle_b depends on test_cycle_a: dependency cycle: "
                           "test_cycle_a -> test_cycle_b -> test_cycle_a");
    e = load_error(l, kTests + "/test_missing_dep.so");
    EXPECT_EQ(e.code(), ENOENT);
    EXPECT_NE(e.message().find("test_missing_dep depends on test_no_such_module: module test_no_such_module not found"), std::string::npos)
        << e.message();
    EXPECT_TRUE(l.list().empty());
}

TEST_F(LoaderTest, DestructorUnloadsDependentsFirst) {
    {
        udrv::Loader l;
        ASSERT_TRUE(l.load(kSamples + "/udrv_sample_consumer.so"));
        ASSERT_TRUE(l.load(kSamples + "/udrv_sample_hello.so"));
        auto names = l.list();
        ASSERT_EQ(names.size(), 3u);
        EXPECT_EQ(names[0]->name, "udrv_sample_hello");  // most recent first, like lsmod
        std::string lsmod = l.format_lsmod();
        EXPECT_NE(lsmod.find("udrv_sample_provider"), std::string::npos);
        EXPECT_NE(lsmod.find("1 udrv_sample_consumer"), std::string::npos) << lsmod;
    }
    EXPECT_FALSE(mapped(kSamples + "/udrv_sample_consumer.so"));
    EXPECT_FALSE(mapped(kSamples + "/udrv_sample_provider.so"));
}

TEST_F(LoaderTest, BuiltinModulesLoadByName) {
    auto builtins = udrv::Loader::builtin_modules();
    ASSERT_NE(std::find(builtins.begin(), builtins.end(), "udrv_ramdisk"), builtins.end());
    udrv::Loader l;
    auto m = l.load("udrv_ramdisk");
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_TRUE((*m)->builtin);
    EXPECT_EQ(l.load_builtin("nope").error().code(), ENOENT);
    ASSERT_TRUE(l.unload("udrv_ramdisk"));
}

TEST_F(LoaderTest, RepeatedLoadUnloadLeaksNothing) {
    udrv::Loader l;
    for (int i = 0; i < 50; ++i) {
        ASSERT_TRUE(l.load(kSamples + "/udrv_sample_consumer.so"));
        ASSERT_TRUE(l.unload("udrv_sample_consumer"));
        ASSERT_TRUE(l.unload("udrv_sample_provider"));
    }
    EXPECT_FALSE(mapped(kSamples + "/udrv_sample_provider.so"));
}

}  // namespace
