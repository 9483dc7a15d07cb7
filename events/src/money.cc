#include "rapport/events/money.h"

#include <algorithm>
#include <array>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"

namespace rapport::events {
namespace {

struct Currency {
  std::string_view code;
  int minor_digits;
};

// Active ISO 4217 currencies and their minor units (ISO 4217 list one),
// sorted by code for binary search.
constexpr auto kCurrencies = std::to_array<Currency>({
    {"AED", 2}, {"AFN", 2}, {"ALL", 2}, {"AMD", 2}, {"ANG", 2}, {"AOA", 2}, {"ARS", 2}, {"AUD", 2}, {"AWG", 2},
    {"AZN", 2}, {"BAM", 2}, {"BBD", 2}, {"BDT", 2}, {"BGN", 2}, {"BHD", 3}, {"BIF", 0}, {"BMD", 2}, {"BND", 2},
    {"BOB", 2}, {"BOV", 2}, {"BRL", 2}, {"BSD", 2}, {"BTN", 2}, {"BWP", 2}, {"BYN", 2}, {"BZD", 2}, {"CAD", 2},
    {"CDF", 2}, {"CHE", 2}, {"CHF", 2}, {"CHW", 2}, {"CLF", 4}, {"CLP", 0}, {"CNY", 2}, {"COP", 2}, {"COU", 2},
    {"CRC", 2}, {"CUP", 2}, {"CVE", 2}, {"CZK", 2}, {"DJF", 0}, {"DKK", 2}, {"DOP", 2}, {"DZD", 2}, {"EGP", 2},
    {"ERN", 2}, {"ETB", 2}, {"EUR", 2}, {"FJD", 2}, {"FKP", 2}, {"GBP", 2}, {"GEL", 2}, {"GHS", 2}, {"GIP", 2},
    {"GMD", 2}, {"GNF", 0}, {"GTQ", 2}, {"GYD", 2}, {"HKD", 2}, {"HNL", 2}, {"HTG", 2}, {"HUF", 2}, {"IDR", 2},
    {"ILS", 2}, {"INR", 2}, {"IQD", 3}, {"IRR", 2}, {"ISK", 0}, {"JMD", 2}, {"JOD", 3}, {"JPY", 0}, {"KES", 2},
    {"KGS", 2}, {"KHR", 2}, {"KMF", 0}, {"KPW", 2}, {"KRW", 0}, {"KWD", 3}, {"KYD", 2}, {"KZT", 2}, {"LAK", 2},
    {"LBP", 2}, {"LKR", 2}, {"LRD", 2}, {"LSL", 2}, {"LYD", 3}, {"MAD", 2}, {"MDL", 2}, {"MGA", 2}, {"MKD", 2},
    {"MMK", 2}, {"MNT", 2}, {"MOP", 2}, {"MRU", 2}, {"MUR", 2}, {"MVR", 2}, {"MWK", 2}, {"MXN", 2}, {"MXV", 2},
    {"MYR", 2}, {"MZN", 2}, {"NAD", 2}, {"NGN", 2}, {"NIO", 2}, {"NOK", 2}, {"NPR", 2}, {"NZD", 2}, {"OMR", 3},
    {"PAB", 2}, {"PEN", 2}, {"PGK", 2}, {"PHP", 2}, {"PKR", 2}, {"PLN", 2}, {"PYG", 0}, {"QAR", 2}, {"RON", 2},
    {"RSD", 2}, {"RUB", 2}, {"RWF", 0}, {"SAR", 2}, {"SBD", 2}, {"SCR", 2}, {"SDG", 2}, {"SEK", 2}, {"SGD", 2},
    {"SHP", 2}, {"SLE", 2}, {"SOS", 2}, {"SRD", 2}, {"SSP", 2}, {"STN", 2}, {"SVC", 2}, {"SYP", 2}, {"SZL", 2},
    {"THB", 2}, {"TJS", 2}, {"TMT", 2}, {"TND", 3}, {"TOP", 2}, {"TRY", 2}, {"TTD", 2}, {"TWD", 2}, {"TZS", 2},
    {"UAH", 2}, {"UGX", 0}, {"USD", 2}, {"USN", 2}, {"UYI", 0}, {"UYU", 2}, {"UYW", 4}, {"UZS", 2}, {"VED", 2},
    {"VES", 2}, {"VND", 0}, {"VUV", 0}, {"WST", 2}, {"XAF", 0}, {"XCD", 2}, {"XCG", 2}, {"XOF", 0}, {"XPF", 0},
    {"YER", 2}, {"ZAR", 2}, {"ZMW", 2}, {"ZWG", 2},
});

// Amounts beyond 10^13 major units are not plausible for one customer event
// and would not fit int64 minor units at 4 digits.
constexpr int kMaxIntegerDigits = 13;

struct Decimal {
  bool negative = false;
  std::string_view integer;
  std::string_view fraction;
};

// Parses -?(0|[1-9][0-9]*)(\.[0-9]+)? ; nullopt when `text` is not of that form.
std::optional<Decimal> ParseDecimal(std::string_view text) {
  Decimal d;
  if (!text.empty() && text.front() == '-') {
    d.negative = true;
    text.remove_prefix(1);
  }
  size_t dot = text.find('.');
  d.integer = text.substr(0, dot);
  if (dot != std::string_view::npos) {
    d.fraction = text.substr(dot + 1);
    if (d.fraction.empty()) return std::nullopt;
  }
  auto all_digits = [](std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (d.integer.empty() || !all_digits(d.integer) || !all_digits(d.fraction)) return std::nullopt;
  if (d.integer.size() > 1 && d.integer.front() == '0') return std::nullopt;
  return d;
}

bool IsZero(const Decimal& d) {
  auto zeros = [](std::string_view s) { return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; }); };
  return zeros(d.integer) && zeros(d.fraction);
}

}  // namespace

std::optional<int> CurrencyMinorDigits(std::string_view code) {
  auto it = std::lower_bound(kCurrencies.begin(), kCurrencies.end(), code,
                             [](const Currency& c, std::string_view k) { return c.code < k; });
  if (it == kCurrencies.end() || it->code != code) return std::nullopt;
  return it->minor_digits;
}

void CheckMoney(const v1::Money& money, std::string_view field, AmountSign sign, Violations& violations) {
  const std::string prefix(field);
  std::optional<int> digits;
  if (money.currency().empty()) {
    violations.push_back({prefix + ".currency", "required; an ISO 4217 code such as \"EUR\""});
  } else if (!(digits = CurrencyMinorDigits(money.currency()))) {
    violations.push_back(
        {prefix + ".currency", absl::StrCat("\"", money.currency(),
                                            "\" is not an active ISO 4217 currency code (upper case, e.g. \"EUR\")")});
  }
  const std::string amount_field = prefix + ".amount";
  if (money.amount().empty()) {
    violations.push_back({amount_field, "required; a decimal string such as \"12.50\""});
    return;
  }
  std::optional<Decimal> decimal = ParseDecimal(money.amount());
  if (!decimal) {
    violations.push_back(
        {amount_field, absl::StrCat("\"", money.amount(), "\" is not a decimal number such as \"12.50\"")});
    return;
  }
  if (decimal->integer.size() > kMaxIntegerDigits) {
    violations.push_back({amount_field, absl::StrCat("\"", money.amount(), "\" is implausibly large (more than ",
                                                     kMaxIntegerDigits, " integer digits)")});
  }
  if (digits && static_cast<int>(decimal->fraction.size()) > *digits) {
    violations.push_back(
        {amount_field, absl::StrCat("\"", money.amount(), "\" has ", decimal->fraction.size(),
                                    decimal->fraction.size() == 1 ? " decimal place; " : " decimal places; ",
                                    money.currency(), " allows ", *digits)});
  }
  bool zero = IsZero(*decimal);
  if (sign == AmountSign::kPositive && (decimal->negative || zero)) {
    violations.push_back({amount_field, absl::StrCat("must be greater than zero, got \"", money.amount(), "\"")});
  } else if (sign == AmountSign::kNonNegative && decimal->negative && !zero) {
    violations.push_back({amount_field, absl::StrCat("must not be negative, got \"", money.amount(), "\"")});
  }
}

int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t sum = 0;
  if (!__builtin_add_overflow(a, b, &sum)) return sum;
  return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
}

int64_t SaturatingMultiply(int64_t a, int64_t b) {
  int64_t product = 0;
  if (!__builtin_mul_overflow(a, b, &product)) return product;
  return (a < 0) != (b < 0) ? std::numeric_limits<int64_t>::min() : std::numeric_limits<int64_t>::max();
}

Result<int64_t> ToMinorUnits(const v1::Money& money) {
  Violations violations;
  CheckMoney(money, "money", AmountSign::kNonNegative, violations);
  std::optional<Decimal> decimal = ParseDecimal(money.amount());
  std::optional<int> digits = CurrencyMinorDigits(money.currency());
  // A negative amount is a valid Money (a correction); only the sign check may fail.
  if (!decimal || !digits || decimal->integer.size() > kMaxIntegerDigits ||
      static_cast<int>(decimal->fraction.size()) > *digits) {
    return absl::InvalidArgumentError(violations.empty() ? "invalid money" : violations.front().ToString());
  }
  int64_t units = 0;
  for (char c : decimal->integer) units = units * 10 + (c - '0');
  for (int i = 0; i < *digits; ++i) {
    units = units * 10 + (i < static_cast<int>(decimal->fraction.size()) ? decimal->fraction[i] - '0' : 0);
  }
  return decimal->negative ? -units : units;
}

}  // namespace rapport::events
