// Command-line errors name what was wrong and where the help is: the word that is no command (with
// the commands there are), the command that needs one, the option that was not expected.
#include <gtest/gtest.h>

#include "cli_usage.hpp"

namespace {

std::string error_for(std::vector<std::string> words) {
    CLI::App app{"test", "udrv"};
    app.require_subcommand(1);
    std::string level;
    app.add_option("--log-level", level, "level");
    app.add_subcommand("lspci", "list");
    auto* nvme = app.add_subcommand("nvme", "NVMe");
    nvme->require_subcommand(1);
    nvme->add_subcommand("list", "list");
    auto* read = nvme->add_subcommand("read", "read");
    std::string dev;
    read->add_option("-d,--device", dev, "device");
    std::vector<const char*> argv{"udrv"};
    for (const auto& w : words) argv.push_back(w.c_str());
    try {
        app.parse(static_cast<int>(argv.size()), argv.data());
    } catch (const CLI::ParseError& e) {
        return udrv::tools::usage_message(app, e, words);
    }
    return "(parsed)";
}

TEST(CliUsage, AWordThatIsNoCommandIsNamedWithTheCommandsThereAre) {
    EXPECT_EQ(error_for({"frobnicate"}), "'frobnicate' is not a command of 'udrv' (commands: lspci, nvme); see 'udrv --help'");
    EXPECT_EQ(error_for({"--log-level", "debug", "frobnicate"}),
              "'frobnicate' is not a command of 'udrv' (commands: lspci, nvme); see 'udrv --help'");
    EXPECT_EQ(error_for({"--log-level=debug", "frobnicate"}),
              "'frobnicate' is not a command of 'udrv' (commands: lspci, nvme); see 'udrv --help'");
    EXPECT_EQ(error_for({"nvme", "frob"}), "'frob' is not a command of 'udrv nvme' (commands: list, read); see 'udrv nvme --help'");
}

TEST(CliUsage, ACommandThatNeedsOneSaysSo) {
    EXPECT_EQ(error_for({}), "'udrv' needs a command (commands: lspci, nvme); see 'udrv --help'");
    EXPECT_EQ(error_for({"nvme"}), "'udrv nvme' needs a command (commands: list, read); see 'udrv nvme --help'");
}

TEST(CliUsage, OtherErrorsKeepCliElevensWordsAndPointAtTheRightHelp) {
    const std::string e = error_for({"nvme", "read", "-d", "x", "--bogus"});
    EXPECT_NE(e.find("--bogus"), std::string::npos) << e;
    EXPECT_NE(e.find("see 'udrv nvme read --help'"), std::string::npos) << e;
    EXPECT_EQ(error_for({"nvme", "read", "-d", "x"}), "(parsed)");
}

}  // namespace
