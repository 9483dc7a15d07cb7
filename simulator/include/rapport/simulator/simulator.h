#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "rapport/v1/envelope.pb.h"

namespace rapport::simulator {

// The BG/NBD generative process (Fader, Hardie and Lee 2005), per day: while
// alive, a customer buys at rate lambda ~ Gamma(shape r, rate alpha); after
// each repeat purchase they drop out for good with probability
// p ~ Beta(a, b). The defaults give about 9 purchases a year to the average
// active customer and a quarter dropping out after each repeat purchase.
struct PopulationModel {
  double r = 0.5;
  double alpha = 20.0;
  double a = 0.8;
  double b = 2.5;
};

struct SimulationOptions {
  uint64_t customers = 1000;
  int days = 365;
  uint64_t seed = 1;
  // A fixed default, not today: the same seed must give the same stream on any day.
  absl::Time start = absl::FromUnixSeconds(1735689600);  // 2025-01-01T00:00:00Z
  double invalid_rate = 0;                               // share of invalid records mixed into the stream
  PopulationModel model;
};

// The kinds of invalid record --invalid-rate mixes in.
enum class InvalidKind { kGarbageBytes, kWrongFieldType, kRatingOutOfRange, kMissingCustomer };

// One record of the stream: a valid event, or an invalid record given in both
// output forms (a JSON line, and a Kafka key and value) so that either path
// exercises error handling the same way.
struct SimulatedRecord {
  bool valid = true;
  v1::Envelope event;  // when valid
  InvalidKind invalid_kind = InvalidKind::kGarbageBytes;
  std::string invalid_json;   // one line, no newline
  std::string invalid_key;    // empty when the customer is missing
  std::string invalid_value;  // the record value bytes
  absl::Time time;            // event time (for an invalid record: of its neighbour)
};

// What generated a customer, for validating the churn and value models.
struct CustomerTruth {
  std::string customer_id;
  absl::Time acquired_at;            // first purchase
  double purchase_rate_per_day = 0;  // lambda
  double dropout_probability = 0;    // p
  bool alive_at_end = true;
  absl::Time dropped_out_at = absl::InfinitePast();  // the repeat purchase after which they left
  int64_t purchases = 0;                             // including the first
  int64_t revenue_eur_cents = 0;                     // purchases at fixed exchange rates, before refunds
};

// Generates touchpoint events of a customer population: customers join
// uniformly over the period, buy by the BG/NBD process, and meanwhile register,
// link identities, contact service, rate, review, complain, answer surveys,
// collect points, receive campaigns, update profiles and change consents.
// Events are in non-decreasing time per customer and interleaved across
// customers by time. Deterministic: the same options give the same records.
// Memory is per customer, not per event. Not thread-safe.
class Simulator {
 public:
  explicit Simulator(const SimulationOptions& options);
  ~Simulator();
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  // The next record in time order; false when the period is over.
  bool Next(SimulatedRecord& record);

  // Per customer, in customer order. Complete once Next has returned false.
  std::vector<CustomerTruth> Truth() const;

  absl::Time end() const;
  uint64_t records() const;  // records returned so far

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rapport::simulator
