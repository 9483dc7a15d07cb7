#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace rapport::cli {

// `rapport api-key`: makes a random API key (256 bits, base64url, "rk_"
// prefix) and prints it once with the config table that admits it. Only the
// key's SHA-256 goes into the config.
int RunApiKey(const std::string& name, const std::vector<std::string>& scopes, std::ostream& out, std::ostream& err);

}  // namespace rapport::cli
