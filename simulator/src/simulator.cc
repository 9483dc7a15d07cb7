#include "rapport/simulator/simulator.h"

#include <functional>
#include <queue>

#include "absl/strings/str_format.h"
#include "journey.h"
#include "rapport/events/codec.h"

namespace rapport::simulator {
namespace {

// The wire bytes of a protobuf field key.
std::string FieldKey(int number, int wire_type) {
  std::string out;
  uint32_t key = static_cast<uint32_t>(number << 3 | wire_type);
  while (key >= 0x80) {
    out.push_back(static_cast<char>((key & 0x7f) | 0x80));
    key >>= 7;
  }
  out.push_back(static_cast<char>(key));
  return out;
}

std::string LengthDelimited(int number, const std::string& bytes) {
  std::string out = FieldKey(number, 2);
  size_t size = bytes.size();
  while (size >= 0x80) {
    out.push_back(static_cast<char>((size & 0x7f) | 0x80));
    size >>= 7;
  }
  out.push_back(static_cast<char>(size));
  return out + bytes;
}

}  // namespace

struct Simulator::Impl {
  explicit Impl(const SimulationOptions& o)
      : options(o),
        start_ms(absl::ToUnixMillis(o.start)),
        end_ms(start_ms + o.days * kDay),
        world(o.seed, start_ms, end_ms),
        invalid_random(Mix(o.seed, 0xbad)) {
    journeys.reserve(o.customers);
    for (uint64_t i = 0; i < o.customers; ++i) {
      journeys.emplace_back(world, options, static_cast<uint32_t>(i));
      if (journeys.back().next_time() != kNever) heap.push({journeys.back().next_time(), static_cast<uint32_t>(i)});
    }
  }

  // An invalid record near time `at` (the next valid event's).
  void Invalid(SimulatedRecord& record, int64_t at) {
    record.valid = false;
    record.time = absl::FromUnixMillis(at);
    record.invalid_kind = static_cast<InvalidKind>(invalid_random.UniformInt(0, 3));
    uint32_t customer =
        static_cast<uint32_t>(invalid_random.UniformInt(0, static_cast<int64_t>(options.customers) - 1));
    const std::string customer_id = absl::StrFormat("c-%07d", customer + 1);
    ++invalid_count;

    if (record.invalid_kind == InvalidKind::kGarbageBytes) {
      // Starts with bytes that are neither JSON nor a valid protobuf key (a
      // varint longer than ten bytes), then noise without line breaks.
      std::string noise;
      for (int i = 0, n = static_cast<int>(invalid_random.UniformInt(8, 48)); i < n; ++i) {
        char c = static_cast<char>(invalid_random.UniformInt(0, 255));
        noise.push_back(c == '\n' || c == '\r' ? ' ' : c);
      }
      record.invalid_json = "\xff\xfe" + noise;
      record.invalid_key = customer_id;
      record.invalid_value = std::string(11, '\xff') + noise;
      return;
    }
    // A review of a store, made invalid in one of three ways.
    v1::Envelope e;
    uint64_t bits = Mix(options.seed, 0xbad, invalid_count);
    e.set_event_id(absl::StrFormat("%08x-%04x-7%03x-8%03x-%012x", static_cast<uint64_t>(at) >> 16,
                                   static_cast<uint64_t>(at) & 0xffff, bits & 0xfff, (bits >> 12) & 0xfff,
                                   (bits >> 24) & 0xffffffffffffULL));
    e.set_customer_id(customer_id);
    e.mutable_occurred_at()->set_seconds(at / 1000);
    e.mutable_recorded_at()->set_seconds(at / 1000 + 1);
    e.set_source("web/reviews");
    e.set_channel(v1::CHANNEL_WEB);
    auto* review = e.mutable_review_submitted();
    review->set_subject_type(v1::SUBJECT_TYPE_STORE);
    review->set_subject_id(absl::StrFormat("store-%03d", invalid_random.UniformInt(1, 40)));
    review->set_rating(static_cast<int32_t>(invalid_random.UniformInt(1, 5)));
    record.invalid_key = customer_id;
    switch (record.invalid_kind) {
      case InvalidKind::kWrongFieldType: {
        std::string json = events::EventToJson(e);
        std::string rating = absl::StrFormat("\"rating\":%d", review->rating());
        json.replace(json.find(rating), rating.size(), "\"rating\":\"five\"");
        record.invalid_json = json;
        // In binary: the rating as a string, which a reader takes for an
        // unknown field and so sees no rating at all.
        review->clear_rating();
        std::string review_bytes = review->SerializeAsString() + LengthDelimited(4, "five");
        e.clear_review_submitted();
        record.invalid_value =
            events::EncodeEvent(e) + LengthDelimited(v1::Envelope::kReviewSubmittedFieldNumber, review_bytes);
        return;
      }
      case InvalidKind::kRatingOutOfRange:
        review->set_rating(static_cast<int32_t>(invalid_random.UniformInt(6, 10)));
        break;
      case InvalidKind::kMissingCustomer:
        e.clear_customer_id();
        record.invalid_key.clear();
        break;
      case InvalidKind::kGarbageBytes:
        break;
    }
    record.invalid_json = events::EventToJson(e);
    record.invalid_value = events::EncodeEvent(e);
  }

  SimulationOptions options;
  int64_t start_ms;
  int64_t end_ms;
  World world;
  std::vector<Journey> journeys;
  // (next event time, customer): the earliest customer next; ties by customer index.
  std::priority_queue<std::pair<int64_t, uint32_t>, std::vector<std::pair<int64_t, uint32_t>>, std::greater<>> heap;
  Random invalid_random;
  uint64_t invalid_count = 0;
  uint64_t records = 0;
};

Simulator::Simulator(const SimulationOptions& options) : impl_(std::make_unique<Impl>(options)) {}

Simulator::~Simulator() = default;

bool Simulator::Next(SimulatedRecord& record) {
  auto& heap = impl_->heap;
  if (heap.empty()) return false;
  ++impl_->records;
  if (impl_->options.invalid_rate > 0 && impl_->invalid_random.Chance(impl_->options.invalid_rate)) {
    impl_->Invalid(record, heap.top().first);
    return true;
  }
  auto [at, index] = heap.top();
  heap.pop();
  Journey& journey = impl_->journeys[index];
  journey.Emit(record.event);
  record.valid = true;
  record.time = absl::FromUnixMillis(at);
  if (journey.next_time() != kNever) heap.push({journey.next_time(), index});
  return true;
}

std::vector<CustomerTruth> Simulator::Truth() const {
  std::vector<CustomerTruth> truth;
  truth.reserve(impl_->journeys.size());
  for (const auto& journey : impl_->journeys) truth.push_back(journey.Truth());
  return truth;
}

absl::Time Simulator::end() const { return absl::FromUnixMillis(impl_->end_ms); }

uint64_t Simulator::records() const { return impl_->records; }

}  // namespace rapport::simulator
