#include "rapport/cli/api_key_command.h"

#include <openssl/rand.h>

#include <array>

#include "absl/strings/escaping.h"
#include "fmt/format.h"
#include "rapport/api/auth.h"

namespace rapport::cli {

int RunApiKey(const std::string& name, const std::vector<std::string>& scopes, std::ostream& out, std::ostream& err) {
  std::array<unsigned char, 32> random{};
  if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
    err << "api-key: the system's random number generator failed\n";
    return 2;
  }
  const std::string key =
      "rk_" + absl::WebSafeBase64Escape(std::string(reinterpret_cast<const char*>(random.data()), random.size()));
  std::string scope_list;
  for (const auto& scope : scopes) scope_list += fmt::format("{}\"{}\"", scope_list.empty() ? "" : ", ", scope);
  out << fmt::format(
      "# The key (shown only now; give it to the service, which sends it as 'Authorization: Bearer <key>'):\n"
      "# {}\n"
      "# Add to the config file:\n"
      "[api.keys.{}]\n"
      "key_sha256 = \"{}\"\n"
      "scopes = [{}]\n",
      key, name, api::Sha256Hex(key), scope_list);
  return 0;
}

}  // namespace rapport::cli
