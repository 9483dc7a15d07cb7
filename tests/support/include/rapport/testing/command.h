#pragma once

#include <map>
#include <string>
#include <vector>

namespace rapport::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs the built `rapport` binary with `args`, feeding `input` on stdin, and
// collects what it prints. `env` adds environment variables.
CommandResult RunRapport(const std::vector<std::string>& args, const std::string& input = "",
                         const std::map<std::string, std::string>& env = {});

// Runs any program the same way (argv[0] searched in PATH).
CommandResult RunProgram(const std::vector<std::string>& argv, const std::string& input = "",
                         const std::map<std::string, std::string>& env = {});

// Starts a program (argv[0] searched in PATH) in the background with its
// output appended to `log_path` and `env` added; returns its pid.
int StartProgram(const std::vector<std::string>& argv, const std::string& log_path,
                 const std::map<std::string, std::string>& env = {});

// Starts the rapport binary the same way.
int StartRapport(const std::vector<std::string>& args, const std::string& log_path);

// Sends `signal` to `pid` and waits for it; returns its wait status.
int KillAndWait(int pid, int signal);

// A program in rapport's Python virtual environment (ops/install-deps makes
// it): $RAPPORT_VENV, else $RAPPORT_CACHE/venv, else ~/.cache/rapport/venv.
std::string VenvBin(const std::string& program);

// The path of the built rapport binary (its build directory holds it in cli/).
std::string RapportBinary();

// A TCP port free on 127.0.0.1 right now.
int FreePort();

// Whether something accepts connections on 127.0.0.1:`port`.
bool PortAnswers(int port);

// The repository's root directory (for examples/ and ops/).
std::string SourceDir();

// Reads a whole file; fails the current test when it cannot.
std::string ReadFile(const std::string& path);

// Splits text into lines (without the newlines), dropping a last empty one.
std::vector<std::string> Lines(const std::string& text);

}  // namespace rapport::testing
