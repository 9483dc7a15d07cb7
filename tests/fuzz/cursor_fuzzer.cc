// Page cursors as the paged views take them (profile targeting, churn
// segment members, a subject's reviews): anything a client sends back must
// be refused or resume a scan, never loop or read out of bounds.
#include <cstddef>
#include <cstdint>

#include "fuzz_store.h"
#include "rapport/projections/churn.h"
#include "rapport/projections/customer_profile.h"
#include "rapport/projections/reviews.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static rapport::fuzz::FuzzStore* fuzz = new rapport::fuzz::FuzzStore();
  const std::string cursor(reinterpret_cast<const char*>(data), size);
  auto& store = *fuzz->store;
  rapport::projections::TargetQuery query;
  query.category = "dining";
  (void)rapport::projections::CustomerProfileView(store, rapport::fuzz::kPartitions).Targeted(query, 3, cursor);
  (void)rapport::projections::ChurnView(store, rapport::fuzz::kPartitions)
      .Members(rapport::projections::Segment::kChampions, absl::FromUnixSeconds(1795348800), 3, cursor);
  (void)rapport::projections::ReviewsView(store, rapport::fuzz::kPartitions)
      .Reviews(rapport::v1::SUBJECT_TYPE_HOTEL, "hotel-berlin-mitte", 3, cursor);
  return 0;
}
