// The TOML subset parser: what descriptions and configuration files use parses as TOML 1.0 says, and
// malformed input of every kind is an error naming its line and column, never a crash.
#include <gtest/gtest.h>

#include <string>

#include "udrv/toml.hpp"

namespace {

using udrv::toml::Value;

Value parse_ok(std::string_view text) {
    auto r = udrv::toml::parse(text, "t.toml");
    EXPECT_TRUE(r) << (r ? "" : r.error().message());
    return r ? std::move(*r) : Value(udrv::toml::Table{}, {});
}

std::string parse_error(std::string_view text) {
    auto r = udrv::toml::parse(text, "t.toml");
    EXPECT_FALSE(r) << "parsed: " << text;
    return r ? std::string() : r.error().message();
}

TEST(Toml, ValuesOfEveryKind) {
    Value v = parse_ok(
        "# a comment\n"
        "s = \"tab\\tquote\\\" \\u00e9\"\n"
        "l = 'C:\\path'\n"
        "m = \"\"\"\nfirst\nsecond \\\n   third\"\"\"\n"
        "i = 0x1000_0000\n"
        "n = -42\n"
        "o = 0o17\n"
        "b = 0b101\n"
        "f = 6.25e-1\n"
        "t = true\n"
        "a = [ 1, 2,\n  3, ]  # trailing comma and a comment\n"
        "it = { x = 1, y.z = \"deep\" }\n");
    EXPECT_EQ(*v.get("s")->as_string(), "tab\tquote\" \xc3\xa9");
    EXPECT_EQ(*v.get("l")->as_string(), "C:\\path");
    EXPECT_EQ(*v.get("m")->as_string(), "first\nsecond third");
    EXPECT_EQ(*v.get("i")->as_integer(), 0x10000000);
    EXPECT_EQ(*v.get("n")->as_integer(), -42);
    EXPECT_EQ(*v.get("o")->as_integer(), 15);
    EXPECT_EQ(*v.get("b")->as_integer(), 5);
    EXPECT_DOUBLE_EQ(*v.get("f")->as_float(), 0.625);
    EXPECT_TRUE(*v.get("t")->as_bool());
    ASSERT_EQ(v.get("a")->as_array()->size(), 3u);
    EXPECT_EQ(*(*v.get("a")->as_array())[2].as_integer(), 3);
    EXPECT_EQ(*v.get("it")->get("y")->get("z")->as_string(), "deep");
    EXPECT_EQ(v.get("n")->position().line, 9u);
    EXPECT_EQ(v.get("n")->position().column, 5u);
}

TEST(Toml, TablesAndArraysOfTables) {
    Value v = parse_ok("[[device]]\nname = \"a\"\n[device.properties]\nk = 1\n[[device]]\nname = \"b\"\n[x.y]\nz = 2\n[x]\nw = 3\n");
    const auto* devs = v.get("device")->as_array();
    ASSERT_EQ(devs->size(), 2u);
    EXPECT_EQ(*(*devs)[0].get("properties")->get("k")->as_integer(), 1);
    EXPECT_EQ(*(*devs)[1].get("name")->as_string(), "b");
    EXPECT_EQ((*devs)[1].position().line, 5u);
    EXPECT_EQ(*v.get("x")->get("y")->get("z")->as_integer(), 2);
    EXPECT_EQ(*v.get("x")->get("w")->as_integer(), 3);
}

TEST(Toml, DefinitionRules) {
    EXPECT_EQ(parse_error("a = 1\na = 2\n"), "t.toml:2:1: 'a' is defined twice (first on line 1)");
    EXPECT_EQ(parse_error("[t]\n[t]\n"), "t.toml:2:1: 't' is defined twice (first on line 1)");
    EXPECT_EQ(parse_error("a = 1\n[a]\n"), "t.toml:2:1: 'a' is defined twice (first on line 1)");
    EXPECT_EQ(parse_error("a = {x = 1}\n[a.b]\n"), "t.toml:2:2: 'a' is an inline table (line 1): it cannot be extended");
    EXPECT_EQ(parse_error("a = [1]\n[[a]]\n"), "t.toml:2:1: 'a' is already a array (line 1), not an array of tables");
    EXPECT_EQ(parse_error("[a.b]\n[a]\nb.c = 1\n"), "t.toml:3:1: 'b' is a table of its own (line 1): add keys to it under its [header]");
    EXPECT_EQ(parse_error("[f]\napple.color = 1\n[f.apple]\n"), "t.toml:3:1: 'f.apple' is defined twice (first on line 2)");
}

TEST(Toml, MalformedInputNamesLineAndColumn) {
    EXPECT_EQ(parse_error("name = \"a\n"), "t.toml:1:8: string is not closed on its line (a '\"' is missing)");
    EXPECT_EQ(parse_error("x 1\n"), "t.toml:1:3: expected '=' after the key 'x', found '1'");
    EXPECT_EQ(parse_error("[[[1]]]\n"), "t.toml:1:3: expected a key, found '['");
    EXPECT_EQ(parse_error("[[=\n"), "t.toml:1:3: expected a key, found '='");
    EXPECT_EQ(parse_error("[#\n"), "t.toml:1:2: expected a key, found '#'");
    EXPECT_EQ(parse_error("x = 1 2\n"), "t.toml:1:7: expected the end of the line, found '2'");
    EXPECT_EQ(parse_error("x = 01\n"), "t.toml:1:5: '01': leading zeros are not allowed");
    EXPECT_EQ(parse_error("x = 1__0\n"), "t.toml:1:5: '1__0' is not a valid number");
    EXPECT_EQ(parse_error("x = 99999999999999999999\n"), "t.toml:1:5: '99999999999999999999' does not fit in 64 bits");
    EXPECT_EQ(parse_error("x = 1979-05-27\n"), "t.toml:1:5: dates and times are not supported: write them as strings");
    EXPECT_EQ(parse_error("x = \"\\q\"\n"), "t.toml:1:6: unknown escape sequence '\\q'");
    EXPECT_EQ(parse_error("x = \"\\ud800\"\n"), "t.toml:1:6: \\u escape 0xd800 is not a Unicode scalar value");
    EXPECT_EQ(parse_error("x = [1, 2\n"), "t.toml:2:1: expected ',' or ']' in the array that starts at line 1, found the end of the file");
    EXPECT_EQ(parse_error("x = {a = 1\n"),
              "t.toml:1:11: expected ',' or '}' in the inline table that starts at line 1 (inline tables are on one line), found the end of the line");
    EXPECT_EQ(parse_error("x = 1\r\r\n"), "t.toml:1:6: a carriage return must be followed by a line feed");
}

TEST(Toml, BytesThatBrokeOtherParsersAreErrors) {
    // Invalid UTF-8, control characters and overlong forms: refused, with where they are.
    EXPECT_EQ(parse_error("x = \"\xff\"\n"), "t.toml:1:6: invalid UTF-8 (byte 0xff) in strings");
    EXPECT_EQ(parse_error("# \xe2\x82\n"), "t.toml:1:3: invalid UTF-8 (truncated sequence) in comments");
    EXPECT_EQ(parse_error("x = \"\xc0\xaf\"\n"), "t.toml:1:6: invalid UTF-8 (code point 0x2f) in strings");
    EXPECT_EQ(parse_error("x = \"a\x01\"\n"), "t.toml:1:7: control character 0x01 is not allowed in strings");
    EXPECT_EQ(parse_error(std::string_view("x = \"a\0\"\n", 9)), "t.toml:1:7: control character 0x00 is not allowed in strings");
    EXPECT_EQ(parse_error("\xe2\x82\xac = 1\n"), "t.toml:1:1: expected a key, found byte 0xe2");
    // Valid non-ASCII text is kept as it is.
    EXPECT_EQ(*parse_ok("x = \"\xe2\x82\xac \xf0\x9f\x98\x80\"\n").get("x")->as_string(), "\xe2\x82\xac \xf0\x9f\x98\x80");
}

TEST(Toml, NestingAndSizeAreBounded) {
    std::string deep = "x = " + std::string(40, '[') + std::string(40, ']') + "\n";
    EXPECT_EQ(parse_error(deep), "t.toml:1:38: arrays and inline tables nested more than 32 deep");
    std::string many;
    for (int i = 0; i < 4097; ++i) many += "k" + std::to_string(i) + " = 1\n";
    EXPECT_EQ(parse_error(many), "t.toml:4097:1: more than 4096 keys in one table");
}

}  // namespace
