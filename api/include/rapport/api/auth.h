#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "rapport/api/http_server.h"

namespace rapport::api {

// What a key may do. `admin` includes the others.
enum class Scope { kRead, kIngest, kAdmin };
std::string_view ScopeName(Scope scope);

struct ApiKey {
  std::string name;                  // for logs and metrics; never the key itself
  std::array<uint8_t, 32> sha256{};  // of the key; the key itself is not kept
  std::vector<Scope> scopes;
};

struct AuthOptions {
  std::vector<ApiKey> keys;
  // Lets requests from 127.0.0.0/8 and ::1 read without a key (never ingest or admin).
  bool open_reads_on_loopback = false;
};

// SHA-256 of `text` as 64 lower-case hex digits (what `key_sha256` holds).
std::string Sha256Hex(std::string_view text);
// Parses 64 hex digits; false if it is not that.
bool ParseSha256Hex(std::string_view hex, std::array<uint8_t, 32>& out);

struct AuthDecision {
  bool allowed = false;
  std::string key_name;  // the key used, if any
  HttpResponse denial;   // 401 or 403 when not allowed
};

// Checks the key a request presents, as `Authorization: Bearer <key>` or
// `X-API-Key: <key>`. The presented key is hashed and compared with every
// configured hash in constant time, so neither timing nor an early exit tells
// an attacker how close a guess was.
class Authenticator {
 public:
  explicit Authenticator(AuthOptions options);
  AuthDecision Check(const HttpRequest& request, Scope needed) const;

 private:
  AuthOptions options_;
};

}  // namespace rapport::api
