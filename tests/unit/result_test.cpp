#include <gtest/gtest.h>

#include <memory>

#include "udrv/result.hpp"

using udrv::Result;

namespace {
Result<std::unique_ptr<int>> make(bool ok) {
    if (!ok) return udrv::fail(ENODEV, "0000:00:03.0: BAR{} is {} KiB, driver needs {} KiB", 0, 16, 32);
    return std::make_unique<int>(7);
}
Result<int> twice(bool ok) {
    auto p = UDRV_TRY(make(ok));
    return *p * 2;
}
Result<int> with_context(bool ok) { return UDRV_TRY_CTX(twice(ok), "probe of {}", "edu"); }
}  // namespace

TEST(Result, TryUnwrapsValues) { EXPECT_EQ(twice(true).value(), 14); }

TEST(Result, TryPropagatesTheErrorUnchanged) {
    auto r = twice(false);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ENODEV);
    EXPECT_EQ(r.error().message(), "0000:00:03.0: BAR0 is 16 KiB, driver needs 32 KiB");
}

TEST(Result, ContextPrefixesTheMessage) {
    auto r = with_context(false);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message(), "probe of edu: 0000:00:03.0: BAR0 is 16 KiB, driver needs 32 KiB");
    EXPECT_EQ(r.error().to_string(), r.error().message() + " (ENODEV)");
}

TEST(Result, FailErrnoAppendsTheSystemMessage) {
    errno = ENOENT;
    Result<void> r = udrv::fail_errno("open {}", "/nonexistent");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ENOENT);
    EXPECT_EQ(r.error().message(), "open /nonexistent: No such file or directory");
    EXPECT_EQ(r.error().code_name(), "ENOENT");
}
