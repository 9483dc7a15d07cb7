#include "rapport/api/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>

#include "fmt/format.h"

namespace rapport::api {
namespace {

std::array<uint8_t, 32> Sha256(std::string_view text) {
  std::array<uint8_t, 32> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  return digest;
}

std::string PresentedKey(const HttpRequest& request) {
  std::string authorization = request.Header("authorization");
  constexpr std::string_view kBearer = "bearer ";
  if (authorization.size() > kBearer.size()) {
    std::string scheme = authorization.substr(0, kBearer.size());
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
    if (scheme == kBearer) return authorization.substr(kBearer.size());
  }
  return request.Header("x-api-key");
}

}  // namespace

std::string_view ScopeName(Scope scope) {
  switch (scope) {
    case Scope::kRead:
      return "read";
    case Scope::kIngest:
      return "ingest";
    case Scope::kAdmin:
      return "admin";
  }
  return "?";
}

std::string Sha256Hex(std::string_view text) {
  std::string out;
  for (uint8_t b : Sha256(text)) out += fmt::format("{:02x}", b);
  return out;
}

bool ParseSha256Hex(std::string_view hex, std::array<uint8_t, 32>& out) {
  if (hex.size() != 64) return false;
  for (size_t i = 0; i < 32; ++i) {
    unsigned value = 0;
    for (char c : hex.substr(2 * i, 2)) {
      value <<= 4;
      if (c >= '0' && c <= '9') {
        value |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        value |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        value |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        return false;
      }
    }
    out[i] = static_cast<uint8_t>(value);
  }
  return true;
}

Authenticator::Authenticator(AuthOptions options) : options_(std::move(options)) {}

AuthDecision Authenticator::Check(const HttpRequest& request, Scope needed) const {
  AuthDecision decision;
  const std::string presented = PresentedKey(request);
  if (presented.empty()) {
    if (needed == Scope::kRead && options_.open_reads_on_loopback && request.from_loopback) {
      decision.allowed = true;
      return decision;
    }
    decision.denial = ErrorResponse(401, "unauthenticated",
                                    "this route needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key'");
    decision.denial.headers.emplace_back("WWW-Authenticate", "Bearer");
    return decision;
  }
  const auto digest = Sha256(presented);
  const ApiKey* match = nullptr;
  for (const auto& key : options_.keys) {  // every key is compared: no early exit
    if (CRYPTO_memcmp(key.sha256.data(), digest.data(), digest.size()) == 0) match = &key;
  }
  if (match == nullptr) {
    decision.denial = ErrorResponse(401, "unauthenticated", "the API key is not valid");
    decision.denial.headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\"");
    return decision;
  }
  decision.key_name = match->name;
  for (Scope scope : match->scopes) decision.allowed |= scope == needed || scope == Scope::kAdmin;
  if (!decision.allowed) {
    decision.denial = ErrorResponse(403, "forbidden",
                                    fmt::format("the key '{}' lacks the '{}' scope", match->name, ScopeName(needed)));
  }
  return decision;
}

}  // namespace rapport::api
