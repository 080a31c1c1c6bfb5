// Escaping text for terminals: valid UTF-8 passes, control bytes and broken sequences become \xNN.
#include <gtest/gtest.h>

#include "udrv/text.hpp"

namespace {

TEST(Text, PrintableKeepsTextAndEscapesControls) {
    EXPECT_EQ(udrv::printable("plain text\twith a tab\n"), "plain text\twith a tab\n");
    EXPECT_EQ(udrv::printable("Sj\xc3\xb6" "berg \xe2\x82\xac"), "Sj\xc3\xb6" "berg \xe2\x82\xac");
    EXPECT_EQ(udrv::printable("\x1b[2Jgone"), "\\x1b[2Jgone");
    EXPECT_EQ(udrv::printable("bell\a del\x7f"), "bell\\x07 del\\x7f");
    EXPECT_EQ(udrv::printable("csi \xc2\x9b"), "csi \\xc2\\x9b");           // C1 control in UTF-8
    EXPECT_EQ(udrv::printable("latin-1 caf\xe9!"), "latin-1 caf\\xe9!");   // not UTF-8
    EXPECT_EQ(udrv::printable("overlong \xc0\xaf"), "overlong \\xc0\\xaf");
    EXPECT_EQ(udrv::printable("cut \xe2\x82"), "cut \\xe2\\x82");
    EXPECT_EQ(udrv::printable(std::string_view("nul\0x", 5)), "nul\\x00x");
}

TEST(Text, ValidUtf8) {
    EXPECT_TRUE(udrv::valid_utf8("ascii \xc3\xa9 \xf0\x9f\x98\x80"));
    EXPECT_FALSE(udrv::valid_utf8("\xe9"));
    EXPECT_FALSE(udrv::valid_utf8("\xed\xa0\x80"));  // a surrogate
    EXPECT_FALSE(udrv::valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
}

}  // namespace
