// The event catalog as users meet it: one example per event type in
// examples/catalog, and the schema's marking of personal data.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "rapport/events/admission.h"
#include "rapport/events/codec.h"
#include "rapport/events/event_type.h"
#include "rapport/testing/command.h"
#include "rapport/v1/options.pb.h"

namespace rapport::events {
namespace {

namespace pb = google::protobuf;

const absl::Time kNow = absl::FromUnixSeconds(1795348800);  // 2026-11-22T12:00:00Z

// The examples are pretty-printed for reading; publish reads one event per line.
std::string OneLine(const std::string& pretty) {
  pb::Struct parsed;
  EXPECT_TRUE(pb::util::JsonStringToMessage(pretty, &parsed).ok());
  std::string line;
  EXPECT_TRUE(pb::util::MessageToJsonString(parsed, &line).ok());
  return line;
}

TEST(Catalog, EveryEventTypeHasAValidExample) {
  std::set<std::string> covered;
  for (const auto& entry : std::filesystem::directory_iterator(testing::SourceDir() + "/examples/catalog")) {
    std::string type = entry.path().stem().string();
    EventAdmission admission;
    Admission result = admission.AdmitJson(OneLine(testing::ReadFile(entry.path().string())), kNow);
    ASSERT_TRUE(result.accepted()) << entry.path() << ": " << result.violations.front().ToString();
    EXPECT_EQ(EventTypeName(result.event.envelope), type) << entry.path() << " is named after its event type";
    covered.insert(type);
  }
  std::set<std::string> all(EventTypeNames().begin(), EventTypeNames().end());
  EXPECT_EQ(covered, all);
}

TEST(Catalog, EveryEventTypeRoundTripsThroughJsonAndBinary) {
  int types = 0;
  for (const auto& entry : std::filesystem::directory_iterator(testing::SourceDir() + "/examples/catalog")) {
    v1::Envelope original;
    ASSERT_FALSE(ParseEventJson(OneLine(testing::ReadFile(entry.path().string())), original).has_value());
    v1::Envelope from_json;
    ASSERT_FALSE(ParseEventJson(EventToJson(original), from_json).has_value()) << entry.path();
    EXPECT_TRUE(pb::util::MessageDifferencer::Equals(original, from_json)) << entry.path();
    v1::Envelope from_binary;
    ASSERT_FALSE(DecodeEvent(EncodeEvent(original), from_binary).has_value()) << entry.path();
    EXPECT_TRUE(pb::util::MessageDifferencer::Equals(original, from_binary)) << entry.path();
    EXPECT_EQ(EventToJson(from_binary), EventToJson(original)) << entry.path();
    ++types;
  }
  EXPECT_EQ(types, static_cast<int>(EventTypeNames().size()));
}

TEST(Catalog, PersonalDataLivesOnlyInMessagesMarkedPersonal) {
  // Fields that hold names, contact details or free text. Crypto-shredding
  // (ARCHITECTURE 10) encrypts marked messages as a unit; such a field outside
  // one would survive an erasure.
  const std::set<std::string> personal_names = {"given_name", "family_name", "email", "phone",
                                                "birth_date", "title",       "body",  "value"};
  const pb::FileDescriptor* file = v1::Envelope::descriptor()->file();
  std::vector<const pb::FileDescriptor*> files = {file};
  for (int i = 0; i < file->dependency_count(); ++i) files.push_back(file->dependency(i));
  int personal_messages = 0;
  for (const auto* f : files) {
    if (f->package() != "rapport.v1") continue;
    for (int m = 0; m < f->message_type_count(); ++m) {
      const pb::Descriptor* message = f->message_type(m);
      bool marked = message->options().GetExtension(v1::personal);
      personal_messages += marked;
      for (int i = 0; i < message->field_count(); ++i) {
        const pb::FieldDescriptor* field = message->field(i);
        if (marked) {
          EXPECT_EQ(field->type(), pb::FieldDescriptor::TYPE_STRING) << field->full_name();
        } else {
          EXPECT_FALSE(personal_names.contains(field->name()) && field->type() == pb::FieldDescriptor::TYPE_STRING)
              << field->full_name() << " looks personal but its message is not marked (rapport.v1.personal)";
        }
      }
    }
  }
  EXPECT_EQ(personal_messages, 3);  // PersonalDetails, PersonalText, PersonalIdentifier
}

}  // namespace
}  // namespace rapport::events
