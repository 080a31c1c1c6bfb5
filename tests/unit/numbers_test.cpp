// Command-line numbers: strict, and in the forms people write.
#include <gtest/gtest.h>

#include "numbers.hpp"

namespace {

using udrv::tools::parse_count;
using udrv::tools::parse_seconds;

TEST(Numbers, CountsAreStrict) {
    EXPECT_EQ(*parse_count("42"), 42u);
    EXPECT_EQ(*parse_count("0x2a"), 42u);
    EXPECT_EQ(*parse_count("18446744073709551615"), UINT64_MAX);
    for (auto bad : {"-1", "+1", "", "1x", "0x", "4k", " 1", "1 "}) EXPECT_FALSE(parse_count(bad)) << bad;
    EXPECT_EQ(parse_count("-1").error().message(), "'-1' is not a whole number (e.g. 42 or 0x2a)");
    EXPECT_EQ(parse_count("18446744073709551616").error().code(), ERANGE);
    EXPECT_EQ(parse_count("300", false, 255).error().message(), "'300' is too large (at most 255)");
}

TEST(Numbers, SizesTakeBinarySuffixes) {
    EXPECT_EQ(*parse_count("4k", true), 4096u);
    EXPECT_EQ(*parse_count("4K", true), 4096u);
    EXPECT_EQ(*parse_count("4KiB", true), 4096u);
    EXPECT_EQ(*parse_count("1M", true), 1u << 20);
    EXPECT_EQ(*parse_count("2g", true), 2ull << 30);
    EXPECT_EQ(*parse_count("1T", true), 1ull << 40);
    EXPECT_EQ(*parse_count("512", true), 512u);
    for (auto bad : {"4x", "4kk", "k", "0x10k", "-4k", "4 k"}) EXPECT_FALSE(parse_count(bad, true)) << bad;
    EXPECT_EQ(parse_count("20000000T", true).error().code(), ERANGE);
}

TEST(Numbers, Durations) {
    EXPECT_DOUBLE_EQ(*parse_seconds("10"), 10);
    EXPECT_DOUBLE_EQ(*parse_seconds("2.5"), 2.5);
    EXPECT_DOUBLE_EQ(*parse_seconds("10s"), 10);
    EXPECT_DOUBLE_EQ(*parse_seconds("500ms"), 0.5);
    EXPECT_DOUBLE_EQ(*parse_seconds("2m"), 120);
    EXPECT_DOUBLE_EQ(*parse_seconds("1h"), 3600);
    for (auto bad : {"-1", "", "s", "10x", "1e999", "nan"}) EXPECT_FALSE(parse_seconds(bad)) << bad;
}

}  // namespace
