#include "rapport/api/reads.h"

#include <cctype>

#include "rapport/kafka/partitioner.h"
#include "rapport/projections/churn.h"
#include "rapport/projections/customer_profile.h"
#include "rapport/projections/reviews.h"

namespace rapport::api {

using projections::ChurnView;
using projections::CustomerProfileView;
using projections::ReviewsView;

std::optional<v1::SubjectType> SubjectTypeNamed(std::string_view name) {
  std::string full = "SUBJECT_TYPE_";
  for (char c : name) full.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  v1::SubjectType type = v1::SUBJECT_TYPE_UNSPECIFIED;
  if (!v1::SubjectType_Parse(full, &type) || type == v1::SUBJECT_TYPE_UNSPECIFIED) return std::nullopt;
  return type;
}

std::optional<v1::IdentityKind> LookupKindNamed(std::string_view name) {
  for (const auto& [kind_name, kind] : projections::kLookupKinds) {
    if (kind_name == name) return kind;
  }
  return std::nullopt;
}

StoreReads::StoreReads(projections::ProjectionStore& store, int32_t partition_count, events::JsonStyle style)
    : store_(store), partition_count_(partition_count), style_(style) {}

Result<Answer> StoreReads::Profile(const std::string& customer_id) const {
  ASSIGN_OR_RETURN(auto profile, CustomerProfileView(store_, partition_count_).Profile(customer_id));
  return Answer{CustomerProfileView::ToJson(profile, style_), kafka::PartitionForKey(customer_id, partition_count_)};
}

Result<Answer> StoreReads::Lookup(v1::IdentityKind kind, const std::string& value,
                                  const std::function<bool(int32_t)>& in) const {
  ASSIGN_OR_RETURN(std::string customer_id, CustomerProfileView(store_, partition_count_).Lookup(kind, value, in));
  return Profile(customer_id);
}

Result<Answer> StoreReads::Churn(const std::string& customer_id, absl::Time as_of,
                                 const projections::ChurnHistograms* histograms) const {
  ChurnView view(store_, partition_count_);
  if (histograms != nullptr) view.UseHistograms(*histograms);
  ASSIGN_OR_RETURN(auto assessment, view.Assess(customer_id, as_of));
  return Answer{ChurnView::ToJson(assessment, as_of, style_), kafka::PartitionForKey(customer_id, partition_count_)};
}

Result<Answer> StoreReads::CustomerReviews(const std::string& customer_id) const {
  ASSIGN_OR_RETURN(auto reviews, ReviewsView(store_, partition_count_).ByCustomer(customer_id));
  return Answer{ReviewsView::ToJson(reviews, style_), kafka::PartitionForKey(customer_id, partition_count_)};
}

Result<Answer> StoreReads::SubjectSummary(v1::SubjectType type, const std::string& id, absl::Time as_of) const {
  ASSIGN_OR_RETURN(auto summary, ReviewsView(store_, partition_count_).Summary(type, id, as_of));
  return Answer{ReviewsView::ToJson(summary, style_), std::nullopt};
}

Result<Answer> StoreReads::SubjectReviews(v1::SubjectType type, const std::string& id, size_t limit,
                                          const std::string& cursor) const {
  ASSIGN_OR_RETURN(auto page, ReviewsView(store_, partition_count_).Reviews(type, id, limit, cursor));
  return Answer{ReviewsView::ToJson(page, style_), std::nullopt};
}

}  // namespace rapport::api
