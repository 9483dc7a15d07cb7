#pragma once

#include <gtest/gtest.h>

#include "rapport/base/status.h"

// Assert that a Status or Result is OK, printing its message when it is not.
#define ASSERT_OK(expr)                                          \
  do {                                                           \
    const auto& rapport_ok_ = (expr);                            \
    ASSERT_TRUE(::rapport::testing::StatusOf(rapport_ok_).ok())  \
        << ::rapport::testing::StatusOf(rapport_ok_).ToString(); \
  } while (false)
#define EXPECT_OK(expr)                                          \
  do {                                                           \
    const auto& rapport_ok_ = (expr);                            \
    EXPECT_TRUE(::rapport::testing::StatusOf(rapport_ok_).ok())  \
        << ::rapport::testing::StatusOf(rapport_ok_).ToString(); \
  } while (false)

namespace rapport::testing {

inline const Status& StatusOf(const Status& s) { return s; }
template <typename T>
const Status& StatusOf(const Result<T>& r) {
  return r.status();
}

}  // namespace rapport::testing
