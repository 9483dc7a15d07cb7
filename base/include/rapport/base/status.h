#pragma once

// Errors at module boundaries are values (absl::Status). The code says what
// the caller should do next:
//   kInvalidArgument     the input is bad: reject it or dead-letter the record
//   kUnavailable         the broker or store is not reachable now: retry later
//   kDeadlineExceeded    a bounded wait ran out: retry or report
//   kNotFound            a named thing (topic, file) does not exist: stop and say so
//   kFailedPrecondition  the environment is not as required (config, topic layout): stop
//   kInternal            a bug or a library failure: stop
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rapport {

using Status = absl::Status;
template <typename T>
using Result = absl::StatusOr<T>;

}  // namespace rapport

#define RAPPORT_STATUS_CONCAT_INNER(a, b) a##b
#define RAPPORT_STATUS_CONCAT(a, b) RAPPORT_STATUS_CONCAT_INNER(a, b)

// Returns the status of `expr` from the current function when it is not OK.
#define RETURN_IF_ERROR(expr)                                             \
  do {                                                                    \
    if (::absl::Status rapport_status_ = (expr); !rapport_status_.ok()) { \
      return rapport_status_;                                             \
    }                                                                     \
  } while (false)

// Evaluates a Result<T>; on error returns its status, else moves the value into `lhs`.
#define ASSIGN_OR_RETURN(lhs, rexpr) ASSIGN_OR_RETURN_IMPL(RAPPORT_STATUS_CONCAT(rapport_result_, __LINE__), lhs, rexpr)
#define ASSIGN_OR_RETURN_IMPL(result, lhs, rexpr) \
  auto result = (rexpr);                          \
  if (!result.ok()) return result.status();       \
  lhs = std::move(result).value()
