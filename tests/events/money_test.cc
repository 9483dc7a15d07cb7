#include "rapport/events/money.h"

#include <gtest/gtest.h>

#include <limits>

namespace rapport::events {
namespace {

v1::Money M(const std::string& currency, const std::string& amount) {
  v1::Money m;
  m.set_currency(currency);
  m.set_amount(amount);
  return m;
}

TEST(Money, MinorDigitsFollowIso4217) {
  EXPECT_EQ(CurrencyMinorDigits("EUR"), 2);
  EXPECT_EQ(CurrencyMinorDigits("JPY"), 0);
  EXPECT_EQ(CurrencyMinorDigits("KWD"), 3);
  EXPECT_EQ(CurrencyMinorDigits("CLF"), 4);
  EXPECT_EQ(CurrencyMinorDigits("ZWG"), 2);
  EXPECT_EQ(CurrencyMinorDigits("eur"), std::nullopt);
  EXPECT_EQ(CurrencyMinorDigits("XYZ"), std::nullopt);
  EXPECT_EQ(CurrencyMinorDigits(""), std::nullopt);
}

TEST(Money, ConvertsExactlyToMinorUnits) {
  EXPECT_EQ(ToMinorUnits(M("EUR", "57.30")).value(), 5730);
  EXPECT_EQ(ToMinorUnits(M("EUR", "57.3")).value(), 5730);
  EXPECT_EQ(ToMinorUnits(M("EUR", "0.01")).value(), 1);
  EXPECT_EQ(ToMinorUnits(M("JPY", "45800")).value(), 45800);
  EXPECT_EQ(ToMinorUnits(M("KWD", "1.234")).value(), 1234);
  EXPECT_EQ(ToMinorUnits(M("EUR", "-3")).value(), -300);
  EXPECT_EQ(ToMinorUnits(M("EUR", "9999999999999.99")).value(), 999999999999999);
}

TEST(Money, RefusesWhatIsNotExact) {
  EXPECT_FALSE(ToMinorUnits(M("EUR", "0.001")).ok());
  EXPECT_FALSE(ToMinorUnits(M("JPY", "1.5")).ok());
  EXPECT_FALSE(ToMinorUnits(M("EUR", "1e3")).ok());
  EXPECT_FALSE(ToMinorUnits(M("EUR", "01.00")).ok());
  EXPECT_FALSE(ToMinorUnits(M("EUR", "1.")).ok());
  EXPECT_FALSE(ToMinorUnits(M("EUR", ".5")).ok());
  EXPECT_FALSE(ToMinorUnits(M("XXX", "1")).ok());
  EXPECT_FALSE(ToMinorUnits(M("EUR", "12345678901234")).ok());
}

TEST(Money, CheckNamesTheFieldAndTheRule) {
  Violations v;
  CheckMoney(M("EUR", "0"), "refund_issued.amount", AmountSign::kPositive, v);
  CheckMoney(M("EUR", "0"), "items[0].unit_price", AmountSign::kNonNegative, v);
  CheckMoney(M("EUR", "-0.00"), "items[1].unit_price", AmountSign::kNonNegative, v);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].ToString(), "refund_issued.amount.amount: must be greater than zero, got \"0\"");
}

}  // namespace
}  // namespace rapport::events

namespace rapport::events {
namespace {

TEST(Money, SumsAndProductsClampAtTheRangeInsteadOfOverflowing) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kLargestAmount = 99'999'999'999'999'9999;  // 13 integer digits at 4 minor digits
  int64_t sum = 0;
  for (int i = 0; i < 100; ++i) sum = SaturatingAdd(sum, kLargestAmount);
  EXPECT_EQ(sum, kMax);
  EXPECT_EQ(SaturatingAdd(kMin, -1), kMin);
  EXPECT_EQ(SaturatingAdd(40, 2), 42);
  EXPECT_EQ(SaturatingMultiply(kLargestAmount, 1'000'000), kMax);
  EXPECT_EQ(SaturatingMultiply(-kLargestAmount, 1'000'000), kMin);
  EXPECT_EQ(SaturatingMultiply(1250, 3), 3750);
}

}  // namespace
}  // namespace rapport::events
