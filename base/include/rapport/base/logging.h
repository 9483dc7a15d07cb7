#pragma once

#include <memory>
#include <string>

#include "spdlog/logger.h"

namespace rapport {

// The named logger of a module ("producers", "kafka", "consumers", ...): the
// default logger's sinks and level under the module's name, so every line says
// where it comes from. Registered with spdlog, so `spdlog::set_level` reaches
// it. Thread-safe; created on first use.
std::shared_ptr<spdlog::logger> ModuleLogger(const std::string& name);

}  // namespace rapport
