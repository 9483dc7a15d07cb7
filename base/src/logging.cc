#include "rapport/base/logging.h"

#include "spdlog/spdlog.h"

namespace rapport {

std::shared_ptr<spdlog::logger> ModuleLogger(const std::string& name) {
  if (auto existing = spdlog::get(name)) return existing;
  auto logger = spdlog::default_logger()->clone(name);
  try {
    spdlog::register_logger(logger);
  } catch (const spdlog::spdlog_ex&) {  // another thread registered it first
    return spdlog::get(name);
  }
  return logger;
}

}  // namespace rapport
