#include "rapport/api/auth.h"

#include <gtest/gtest.h>

namespace rapport::api {
namespace {

HttpRequest WithHeader(const std::string& name, const std::string& value, bool loopback = false) {
  HttpRequest request;
  request.headers[name] = value;
  request.from_loopback = loopback;
  return request;
}

TEST(Auth, Sha256HexIsTheStandardDigest) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::array<uint8_t, 32> digest{};
  EXPECT_TRUE(ParseSha256Hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", digest));
  EXPECT_EQ(digest[0], 0xba);
  EXPECT_EQ(digest[31], 0xad);
  EXPECT_FALSE(ParseSha256Hex("ba7816bf", digest));
  EXPECT_FALSE(ParseSha256Hex(std::string(63, 'a') + "g", digest));
}

class Keys : public ::testing::Test {
 protected:
  static ApiKey Key(const std::string& name, const std::string& key, std::vector<Scope> scopes) {
    ApiKey out{name, {}, std::move(scopes)};
    ParseSha256Hex(Sha256Hex(key), out.sha256);
    return out;
  }
  Authenticator auth_{AuthOptions{
      {Key("reader", "reader-secret-0001", {Scope::kRead}), Key("writer", "writer-secret-0001", {Scope::kIngest}),
       Key("boss", "boss-secret-000001", {Scope::kAdmin})},
      false}};
};

TEST_F(Keys, BearerOrXApiKeyWithTheRightScope) {
  auto bearer = auth_.Check(WithHeader("authorization", "Bearer reader-secret-0001"), Scope::kRead);
  EXPECT_TRUE(bearer.allowed);
  EXPECT_EQ(bearer.key_name, "reader");
  EXPECT_TRUE(auth_.Check(WithHeader("authorization", "bearer reader-secret-0001"), Scope::kRead).allowed);
  EXPECT_TRUE(auth_.Check(WithHeader("x-api-key", "writer-secret-0001"), Scope::kIngest).allowed);
  // admin includes the other scopes.
  EXPECT_TRUE(auth_.Check(WithHeader("x-api-key", "boss-secret-000001"), Scope::kIngest).allowed);
  EXPECT_TRUE(auth_.Check(WithHeader("x-api-key", "boss-secret-000001"), Scope::kRead).allowed);
}

TEST_F(Keys, MissingWrongAndUnderScopedKeys) {
  auto missing = auth_.Check(HttpRequest{}, Scope::kRead);
  EXPECT_FALSE(missing.allowed);
  EXPECT_EQ(missing.denial.status, 401);
  auto wrong = auth_.Check(WithHeader("x-api-key", "reader-secret-0002"), Scope::kRead);
  EXPECT_EQ(wrong.denial.status, 401);
  EXPECT_EQ(wrong.denial.body.find("reader-secret"), std::string::npos);  // never echoed
  auto scope = auth_.Check(WithHeader("x-api-key", "reader-secret-0001"), Scope::kIngest);
  EXPECT_FALSE(scope.allowed);
  EXPECT_EQ(scope.denial.status, 403);
  EXPECT_NE(scope.denial.body.find("'reader' lacks the 'ingest' scope"), std::string::npos) << scope.denial.body;
  EXPECT_EQ(auth_.Check(WithHeader("authorization", "Basic cmVhZGVy"), Scope::kRead).denial.status, 401);
}

TEST(Auth, OpenReadsOnLoopbackAreReadsFromLoopbackOnly) {
  Authenticator open(AuthOptions{{}, true});
  EXPECT_TRUE(open.Check(WithHeader("accept", "*/*", true), Scope::kRead).allowed);
  EXPECT_FALSE(open.Check(WithHeader("accept", "*/*", false), Scope::kRead).allowed);
  EXPECT_FALSE(open.Check(WithHeader("accept", "*/*", true), Scope::kIngest).allowed);
  EXPECT_FALSE(open.Check(WithHeader("accept", "*/*", true), Scope::kAdmin).allowed);
  // A key that is presented is checked, even on loopback.
  EXPECT_EQ(open.Check(WithHeader("x-api-key", "made-up-key-000000", true), Scope::kRead).denial.status, 401);
}

}  // namespace
}  // namespace rapport::api
