#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "rapport/base/status.h"
#include "rapport/events/violation.h"
#include "rapport/v1/common.pb.h"

namespace rapport::events {

// Number of minor-unit digits of an active ISO 4217 currency (2 for EUR, 0 for
// JPY, 3 for KWD); nullopt for a code that is not an active currency.
std::optional<int> CurrencyMinorDigits(std::string_view code);

enum class AmountSign { kPositive, kNonNegative };

// Checks `money` and appends violations under `field` (e.g.
// "purchase_completed.total"): a known currency, a decimal amount with no more
// fraction digits than the currency allows, of the required sign.
void CheckMoney(const v1::Money& money, std::string_view field, AmountSign sign, Violations& violations);

// Sums and products of minor units, clamped at the int64 range instead of
// overflowing: one event's amount is at most 10^17 minor units, so a long
// history of implausible but valid amounts (or a unit price times a large
// quantity) could otherwise pass it. A clamped figure stays at the bound.
int64_t SaturatingAdd(int64_t a, int64_t b);
int64_t SaturatingMultiply(int64_t a, int64_t b);

// The amount in minor units (cents for EUR, yen for JPY). InvalidArgument for
// money that CheckMoney would reject.
Result<int64_t> ToMinorUnits(const v1::Money& money);

}  // namespace rapport::events
