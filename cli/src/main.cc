// rapport: the command-line entry point. Wires the modules; all logic lives in
// the libraries (see README "Code map").
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <iostream>

#include "CLI/CLI.hpp"
#include "rapport/cli/api_key_command.h"
#include "rapport/cli/cluster_command.h"
#include "rapport/cli/config.h"
#include "rapport/cli/export_command.h"
#include "rapport/cli/publish.h"
#include "rapport/cli/simulate_command.h"
#include "rapport/cli/store_commands.h"
#include "rapport/cli/tail_command.h"
#include "rapport/cli/topics_command.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace {

std::atomic<bool> g_stop{false};  // set by SIGINT/SIGTERM; commands finish cleanly

void OnSignal(int) { g_stop.store(true); }

constexpr int kUsageError = 2;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rapport: an event-sourced customer-experience platform on Kafka and RocksDB", "rapport"};
  app.set_version_flag("--version", "rapport " RAPPORT_VERSION);

  std::string config_file;
  std::string brokers;
  std::string log_level;
  app.add_option("--config", config_file,
                 "TOML config file (default: $RAPPORT_CONFIG, else ./rapport.toml if present)");
  app.add_option("--brokers", brokers, "Kafka bootstrap servers, overriding config and $RAPPORT_BROKERS");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));

  rapport::cli::PublishArgs publish_args;
  auto* publish = app.add_subcommand("publish", "Validate JSON-lines events and publish them to the events topic");
  publish->add_option("input", publish_args.input, "JSON-lines file, or - for standard input")->capture_default_str();
  publish->add_flag("--dry-run", publish_args.dry_run, "Validate only; send nothing (no broker needed)");
  publish->add_flag("-v,--verbose", publish_args.verbose, "Print the partition and offset of each sent event");
  publish->footer(
      "Each invalid line is reported on stderr as 'line N: field: reason' and not sent.\n"
      "Exit status: 0 all sent, 1 some lines rejected or undelivered, 2 could not start.");

  auto* topics = app.add_subcommand("topics", "Manage rapport's Kafka topics");
  topics->require_subcommand(1);
  auto* ensure = topics->add_subcommand(
      "ensure",
      "Create the events, dead-letter, alerts and members topics if missing; report differences on existing ones");

  auto* cluster = app.add_subcommand("cluster", "The instances of [run] group_id and the partitions each applies");
  cluster->require_subcommand(1);
  bool cluster_json = false;
  auto* cluster_status = cluster->add_subcommand(
      "status",
      "Who applies which partition and stands by for which, how far behind, where each API answers (from the members "
      "topic)");
  cluster_status->add_flag("--json", cluster_json, "One JSON object instead of a table");
  cluster_status->footer(
      "Exit status: 0 every partition applied by a live instance (its owner, or a standby while it has none), 1 some "
      "are not, 2 cannot read.");

  rapport::cli::TailArgs tail_args;
  auto* tail = app.add_subcommand("tail", "Print the records of a topic as JSON lines, decoded");
  tail->add_option("--topic", tail_args.topic, "events, dlq, alerts, or a topic name")->capture_default_str();
  tail->add_flag("--from-end", tail_args.from_end, "Only records that arrive from now on");
  tail->add_flag("-f,--follow", tail_args.follow, "Keep waiting for new records (stop with Ctrl-C)");
  tail->add_option("-n,--max", tail_args.max, "Stop after this many records");
  tail->footer("Without --follow, stops when every partition has been read to its end.");

  rapport::cli::SimulateArgs simulate_args;
  std::string simulate_start = "2025-01-01";
  auto* simulate = app.add_subcommand("simulate", "Generate a realistic, reproducible stream of touchpoint events");
  auto& sim = simulate_args.options;
  simulate->add_option("--customers", sim.customers, "Number of customers")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  simulate->add_option("--days", sim.days, "Length of the simulated period in days")
      ->capture_default_str()
      ->check(CLI::Range(1, 36500));
  simulate->add_option("--seed", sim.seed, "Seed: the same seed gives the same stream, byte for byte")
      ->capture_default_str();
  simulate->add_option("--start", simulate_start, "First day of the period (UTC), e.g. 2025-01-01")
      ->capture_default_str();
  simulate->add_option("--invalid-rate", sim.invalid_rate, "Share of invalid records to mix in (0 to 1)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  auto* out_option =
      simulate->add_option("--out", simulate_args.out, "Write JSON lines to FILE (- for standard output)");
  auto* publish_flag = simulate->add_flag("--publish", simulate_args.publish, "Publish to the events topic");
  out_option->excludes(publish_flag);
  simulate->add_option("--truth", simulate_args.truth, "Write what generated each customer to FILE (CSV)");
  simulate
      ->add_option("--rate", simulate_args.rate, "With --publish: records per second (default: as fast as possible)")
      ->check(CLI::NonNegativeNumber);
  simulate->add_option("--bgnbd-r", sim.model.r, "Purchase rate heterogeneity: gamma shape r")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  simulate->add_option("--bgnbd-alpha", sim.model.alpha, "Purchase rate: gamma rate alpha, per day")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  simulate->add_option("--bgnbd-a", sim.model.a, "Dropout probability: beta a")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  simulate->add_option("--bgnbd-b", sim.model.b, "Dropout probability: beta b")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  simulate->footer(
      "Customers buy by the BG/NBD process: rate lambda ~ Gamma(r, alpha) per day, dropout after each repeat\n"
      "purchase with probability p ~ Beta(a, b). One of --out or --publish is required.");

  std::string data_dir;
  std::string churn_period;
  rapport::cli::RunArgs run_args;
  auto* run = app.add_subcommand("run", "Fold the events topic into the projections (RocksDB), exactly once");
  run->add_option("--data-dir", data_dir, "Projection store directory (default: [store] data_dir, $RAPPORT_DATA_DIR)");
  run->add_flag("--until-caught-up", run_args.until_caught_up,
                "Stop once the log as it was at start is applied, then fit the churn models once (default: run "
                "until Ctrl-C, refitting every [churn] refit_interval_s)");
  run->add_flag("--read-only", run_args.read_only,
                "Apply nothing: serve the API (--http) from --data-dir as it is, e.g. a `rapport replay` directory");
  std::string http_listen;
  run->add_option("--http", http_listen,
                  "Serve the HTTP API on HOST:PORT, e.g. 127.0.0.1:8080 (default: [api] listen; none)");
  run->footer("Stop with Ctrl-C or SIGTERM: the current batch completes. Restarting resumes where the store is.");

  rapport::cli::ExportArgs export_args;
  auto* export_command =
      app.add_subcommand("export", "Stream events from the log, filtered, as JSON lines or CSV (for notebooks)");
  export_command->add_option("--type", export_args.types, "Only these event types (comma-separated)")->delimiter(',');
  export_command->add_option("--customer", export_args.customer, "Only this customer's events");
  export_command->add_option("--since", export_args.since,
                             "Events that occurred at or after this date or RFC 3339 time (seeks, no scan)");
  export_command->add_option("--until", export_args.until,
                             "Events that occurred before this date or time (wherever they sit in the log)");
  export_command->add_option("--known-at", export_args.known_at,
                             "Events the log held at this date or time: recorded (recorded_at) before it");
  export_command->add_option("--format", export_args.format, "jsonl or csv")
      ->capture_default_str()
      ->check(CLI::IsMember({"jsonl", "csv"}));
  export_command->add_option("--out", export_args.out, "Write to FILE (default: standard output)")
      ->capture_default_str();
  export_command->footer(
      "CSV: one row per event; columns are the envelope's fields, type, then each selected type's fields\n"
      "(nested ones with dots, lists and maps as JSON). A progress bar shows on a terminal.");

  std::string key_name = "service";
  std::vector<std::string> key_scopes = {"read"};
  auto* api_key = app.add_subcommand("api-key", "Make an API key: prints it once, with the config lines that admit it");
  api_key->add_option("--name", key_name, "The key's name in the config, logs and metrics")
      ->capture_default_str()
      ->check([](const std::string& n) {
        bool ok = !n.empty() && n.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_") == std::string::npos;
        return ok ? std::string() : std::string("a name is lower-case letters, digits, '-' and '_'");
      });
  api_key->add_option("--scopes", key_scopes, "What it may do: read, ingest, admin (comma-separated)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::IsMember({"read", "ingest", "admin"}));

  rapport::cli::ReplayArgs replay_args;
  auto* replay =
      app.add_subcommand("replay", "Build projection state from the log's history into a directory of its own");
  replay
      ->add_option("--projection", replay_args.projections, "customer_profile, reviews, churn or all (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  replay->add_option("--into", replay_args.into, "The directory to build (query it with --data-dir)")->required();
  replay->add_option("--from-time", replay_args.from_time,
                     "Only events that occurred at or after this date or time (seeks, then filters)");
  replay->add_option("--until", replay_args.until,
                     "The state as of this date or time: every event that occurred before it, wherever it sits in "
                     "the log (imports and late tills included)");
  replay->add_option("--known-at", replay_args.known_at,
                     "The state as the log knew it at this date or time: every event recorded (recorded_at) before it");
  replay->footer(
      "Joins no consumer group and sends nothing (no alerts, no dead letters). Ctrl-C leaves a consistent\n"
      "directory; the same command resumes it. A progress bar shows on a terminal.");

  auto* digest = app.add_subcommand("digest", "Print a digest of each projection's state: NAME HEX");
  digest->add_option("--data-dir", data_dir, "Projection store directory");

  rapport::cli::ChurnFitArgs churn_fit_args;
  auto* churn_command = app.add_subcommand("churn", "Lifetime-value models: P(alive), expected purchases, CLV");
  auto* churn_fit = churn_command->add_subcommand(
      "fit", "Fit BG/NBD and Gamma-Gamma on the churn state, store the parameters, print them as JSON");
  churn_fit->add_option("--data-dir", data_dir, "Projection store directory");
  churn_fit->add_option("--as-of", churn_fit_args.as_of,
                        "Customers' ages are taken at this date or time (default: now, or the latest purchase if "
                        "later); the state must hold no purchase after it");
  churn_fit->add_option("--period", churn_period, "day or week: the unit of frequency, recency and age")
      ->check(CLI::IsMember({"day", "week"}));
  churn_fit->add_flag("--no-store", churn_fit_args.no_store,
                      "Print the fit without storing it (opens the store read-only, beside a running `rapport run`)");
  churn_fit->footer(
      "CLV settings come from the [churn] section of the config file (clv_months, monthly_discount_rate,\n"
      "min_spend_customers). To fit on a past date, build the state as of then first:\n"
      "  rapport replay --projection churn --until T --into DIR && rapport churn fit --data-dir DIR --as-of T");
  churn_command->require_subcommand(1);

  rapport::cli::QueryArgs query_args;
  auto* query = app.add_subcommand("query", "Read a projection as JSON (works beside a running `rapport run`)");
  query->add_option("--data-dir", data_dir, "Projection store directory");
  auto* profile = query->add_subcommand("profile", "A customer's total view");
  profile->add_option("customer_id", query_args.id, "Customer id")->required();
  auto* lookup = query->add_subcommand("lookup", "The customer an identity belongs to, and their total view");
  lookup
      ->add_option("kind", query_args.identity_kind,
                   "email, phone, card, device or external_id (as the API names them)")
      ->required()
      ->check(CLI::IsMember({"email", "phone", "card", "device", "external_id", "external"}));
  lookup->add_option("value", query_args.id, "The identity's value")->required();
  auto* reviews = query->add_subcommand("reviews", "A subject's review figures, its reviews, or a customer's reviews");
  reviews->add_option("subject", query_args.id, "TYPE/ID, e.g. hotel/hotel-001 (hotel, product, store, agent, ...)");
  reviews->add_option("--as-of", query_args.as_of, "Time for the last-30-days figures (default: now)");
  reviews->add_flag("--items", query_args.items, "The reviews themselves, newest first, paged");
  reviews->add_option("--limit", query_args.limit, "Reviews per page")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  reviews->add_option("--cursor", query_args.cursor, "Continue after the page whose next_cursor this is");
  reviews->add_option("--customer", query_args.customer, "The reviews this customer wrote");
  auto* churn = query->add_subcommand("churn", "A customer's recency, frequency, value, RFM segment and churn risk");
  churn->add_option("customer_id", query_args.id, "Customer id")->required();
  churn->add_option("--as-of", query_args.as_of, "Time the figures are computed as of (default: now)");
  auto* segments = query->add_subcommand("segments", "Customers per RFM segment and the top 20%'s revenue share");
  segments->add_option("--as-of", query_args.as_of, "Time the figures are computed as of (default: now)");
  query->require_subcommand(1);

  // Extra words at the top level are reported below as an unknown command;
  // subcommands (created above) keep rejecting unknown options themselves.
  app.allow_extras();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kUsageError;  // --help and --version exit 0
  }
  if (!app.remaining().empty()) {
    std::cerr << "rapport: unknown command or argument '" << app.remaining().front()
              << "'; commands: publish, topics ensure, tail, simulate, run, replay, digest, query, churn fit, export, "
                 "api-key (see "
                 "rapport "
                 "--help)\n";
    return kUsageError;
  }
  if (app.get_subcommands().empty()) {
    std::cerr << app.help();
    return kUsageError;
  }

  std::optional<std::filesystem::path> config_path;
  if (!config_file.empty()) config_path = config_file;
  auto config = rapport::cli::LoadConfig(config_path, rapport::cli::ProcessEnvironment());
  if (!config.ok()) {
    std::cerr << "rapport: " << config.status().message() << "\n";
    return kUsageError;
  }
  if (!brokers.empty()) config->kafka.brokers = brokers;
  if (!log_level.empty()) config->log_level = log_level;

  auto logger = spdlog::stderr_color_mt("rapport");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(config->log_level));

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);

  if (*api_key) return rapport::cli::RunApiKey(key_name, key_scopes, std::cout, std::cerr);
  if (*export_command) {
    export_args.progress = isatty(STDERR_FILENO) != 0;
    return rapport::cli::RunExport(*config, export_args, std::cout, std::cerr, g_stop);
  }
  if (*publish) {
    publish_args.progress = isatty(STDERR_FILENO) != 0;
    if (publish_args.input == "-") {
      return rapport::cli::RunPublish(*config, publish_args, std::cin, std::cout, std::cerr, g_stop);
    }
    std::ifstream in(publish_args.input, std::ios::binary);
    if (!in) {
      std::cerr << "publish: cannot open " << publish_args.input << ": " << std::strerror(errno) << "\n";
      return rapport::cli::kPublishCannotStart;
    }
    return rapport::cli::RunPublish(*config, publish_args, in, std::cout, std::cerr, g_stop);
  }
  if (!data_dir.empty()) config->store.data_dir = data_dir;
  if (!http_listen.empty()) config->api.listen = http_listen;
  if (*ensure) return rapport::cli::RunTopicsEnsure(*config, std::cout, std::cerr);
  if (*cluster_status) return rapport::cli::RunClusterStatus(*config, cluster_json, std::cout, std::cerr);
  if (*run) return rapport::cli::RunProjections(*config, run_args, std::cout, std::cerr, g_stop);
  if (*replay) {
    replay_args.progress = isatty(STDERR_FILENO) != 0;
    return rapport::cli::RunReplay(*config, replay_args, std::cout, std::cerr, g_stop);
  }
  if (*digest) return rapport::cli::RunDigest(*config, std::cout, std::cerr);
  if (*churn_fit) {
    if (!churn_period.empty()) config->churn.period = churn_period;
    return rapport::cli::RunChurnFit(*config, churn_fit_args, std::cout, std::cerr);
  }
  if (*query) {
    query_args.what = *profile ? "profile" : *lookup ? "lookup" : *reviews ? "reviews" : *churn ? "churn" : "segments";
    if (*reviews && query_args.id.empty() && query_args.customer.empty()) {
      std::cerr << "query: reviews needs a subject (TYPE/ID) or --customer\n";
      return kUsageError;
    }
    return rapport::cli::RunQuery(*config, query_args, std::cout, std::cerr);
  }
  if (*simulate) {
    if (simulate_args.out.empty() && !simulate_args.publish) {
      std::cerr << "simulate: say where the events go: --out FILE (or - for standard output) or --publish\n";
      return kUsageError;
    }
    auto start = rapport::cli::ParseStartTime(simulate_start);
    if (!start.ok()) {
      std::cerr << "simulate: " << start.status().message() << "\n";
      return kUsageError;
    }
    simulate_args.options.start = *start;
    simulate_args.progress = isatty(STDERR_FILENO) != 0;
    return rapport::cli::RunSimulate(*config, simulate_args, std::cout, std::cerr, g_stop);
  }
  if (*tail) return rapport::cli::RunTail(*config, tail_args, std::cout, std::cerr, g_stop);
  return kUsageError;
}
