#include "rapport/cli/store_commands.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <ostream>
#include <random>
#include <stop_token>
#include <thread>

#include "absl/time/clock.h"
#include "fmt/format.h"
#include "rapport/api/http_server.h"
#include "rapport/api/ingest.h"
#include "rapport/api/openapi_document.h"
#include "rapport/api/reads.h"
#include "rapport/api/service.h"
#include "rapport/base/logging.h"
#include "rapport/cli/progress.h"
#include "rapport/cli/simulate_command.h"
#include "rapport/cluster/membership.h"
#include "rapport/consumers/projection_runner.h"
#include "rapport/events/time_text.h"
#include "rapport/projections/churn.h"
#include "rapport/projections/customer_profile.h"
#include "rapport/projections/registry.h"
#include "rapport/projections/reviews.h"
#include "spdlog/spdlog.h"

namespace rapport::cli {
namespace {

enum class Access { kReadWrite, kReadOnly };

// The store of the built-in projections (registered into `registry`) and the
// runner, as the config places and sizes it.
Result<std::unique_ptr<projections::ProjectionStore>> OpenStore(const Config& config,
                                                                projections::ProjectionRegistry& registry,
                                                                Access access) {
  projections::RegisterProjections(registry);
  std::vector<std::string> families = registry.families();
  families.push_back(consumers::ProjectionRunner::kFamily);
  return projections::ProjectionStore::Open(
      {.path = config.store.data_dir,
       .read_only = access == Access::kReadOnly,
       .block_cache_bytes = static_cast<size_t>(config.store.block_cache_bytes),
       .write_buffer_bytes = static_cast<size_t>(config.store.write_buffer_bytes),
       .max_open_files = static_cast<int>(std::min<int64_t>(config.store.max_open_files, 1 << 20))},
      families);
}

// The default static-membership id: stable for this host and store.
std::string DefaultInstanceId(const std::string& data_dir) {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::error_code ignored;
  std::string path = std::filesystem::weakly_canonical(data_dir, ignored).string();
  uint64_t hash = 1469598103934665603ULL;  // FNV-1a
  for (char c : path) hash = (hash ^ static_cast<uint8_t>(c)) * 1099511628211ULL;
  return fmt::format("rapport-{}-{:08x}", host, hash & 0xffffffffULL);
}

// Starts the HTTP API over `store`: ingest through its own producer, reads
// from the views, metrics from `metrics`.
// `progress` null: a read-only store that nobody applies to (no ingest, no broker).
// `directory` non-null: several instances, reads forwarded to the owner of
// their partition (`instance_id`: this one's).
Status StartApi(const Config& config, projections::ProjectionStore& store, const consumers::RunnerProgress* progress,
                Metrics& metrics, std::unique_ptr<api::Ingest>& ingest, std::unique_ptr<api::ApiService>& service,
                std::unique_ptr<api::HttpServer>& server, const cluster::Directory* directory = nullptr,
                const std::string& instance_id = "", const std::string& instance_token = "") {
  const ApiConfig& a = config.api;
  api::ServerOptions server_options;
  RETURN_IF_ERROR(ParseListenAddress(a.listen, server_options.address, server_options.port, "--http"));
  server_options.io_threads = static_cast<int>(a.io_threads);
  server_options.workers = static_cast<int>(a.workers);
  server_options.max_body_bytes = static_cast<size_t>(a.max_body_bytes);
  server_options.max_header_bytes = static_cast<size_t>(a.max_header_bytes);
  server_options.request_timeout = std::chrono::milliseconds(a.request_timeout_ms);
  server_options.max_in_flight = static_cast<size_t>(a.max_in_flight);
  server_options.max_connections = static_cast<size_t>(a.max_connections);
  server_options.tls_cert_file = a.tls_cert_file;
  server_options.tls_key_file = a.tls_key_file;

  producers::ProducerOptions producer_options{
      .kafka = config.kafka, .topic = config.topics.events, .delivery_timeout = config.publish.delivery_timeout};
  if (progress != nullptr) {
    ASSIGN_OR_RETURN(ingest, api::Ingest::Connect(producer_options, config.publish.limits));
  }

  api::ServiceOptions service_options;
  service_options.auth = {.keys = a.keys, .open_reads_on_loopback = a.open_reads_on_loopback};
  service_options.events_topic = config.topics.events;
  service_options.consistency_wait = std::chrono::milliseconds(a.consistency_wait_ms);
  service_options.ready_max_lag = a.ready_max_lag;
  service_options.max_batch_events = static_cast<size_t>(a.max_batch_events);
  service_options.openapi_json = std::string(api::kOpenApiJson);
  service_options.directory = directory;
  service_options.instance_id = instance_id;
  service_options.instance_token = instance_token;
  service = std::make_unique<api::ApiService>(std::move(service_options), store, progress, ingest.get(), metrics);
  if (a.keys.empty()) {
    ModuleLogger("api")->warn(
        "no API keys configured ([api.keys.NAME] in the config): {}",
        a.open_reads_on_loopback ? "only reads from this host are served" : "every /v1 route will answer 401");
  }
  api::ApiService* handler = service.get();
  api::Handler routes{[handler](const api::HttpRequest& r) { return handler->Handle(r); },
                      [handler](const api::HttpRequest& r) { return handler->Quick(r); }};
  ASSIGN_OR_RETURN(server, api::HttpServer::Start(server_options, std::move(routes)));
  return absl::OkStatus();
}

// Where other instances reach this one's API: [api] advertised_url, or
// http(s)://LISTEN with the host's name for a wildcard address.
std::string AdvertisedUrl(const ApiConfig& api) {
  if (!api.advertised_url.empty()) return api.advertised_url;
  std::string host;
  uint16_t port = 0;
  if (!ParseListenAddress(api.listen, host, port, "api.listen").ok()) return "";
  if (host == "0.0.0.0" || host == "::" || host.empty()) {
    char name[256] = {};
    host = gethostname(name, sizeof(name) - 1) == 0 ? name : "localhost";
  } else if (host.find(':') != std::string::npos) {
    host = "[" + host + "]";
  }
  return fmt::format("{}://{}:{}", api.tls_cert_file.empty() ? "http" : "https", host, port);
}

// The members topic, read and written, when it exists: every instance then
// knows who applies which partition, and forwards reads. Without it this
// instance answers only for the partitions it applies (with a warning).
// The churn models this instance fitted over every partition (serialized),
// published with its member record: the other instances store them.
struct FittedModels {
  std::mutex mutex;
  std::string bytes;
};

// A random token for the routes only instances ask each other (hex, 128 bits).
std::string NewInstanceToken() {
  std::random_device random;  // the kernel's generator
  std::string token;
  for (int i = 0; i < 4; ++i) token += fmt::format("{:08x}", random());
  return token;
}

Status JoinMembers(const Config& config, const std::string& instance_id, const std::string& instance_token,
                   const consumers::RunnerProgress& progress, FittedModels& fitted,
                   std::unique_ptr<cluster::Directory>& directory, std::unique_ptr<cluster::Publisher>& publisher) {
  auto started = cluster::Directory::Start(config.kafka, config.topics.members, config.run.group_id);
  if (!started.ok()) {
    if (started.status().code() != absl::StatusCode::kNotFound) return started.status();
    ModuleLogger("cluster")->warn(
        "{} does not exist: this instance cannot tell other instances of group {} where it answers, nor forward "
        "reads for partitions they apply (create it with `rapport topics ensure`)",
        config.topics.members, config.run.group_id);
    return absl::OkStatus();
  }
  directory = std::move(*started);
  cluster::v1::Member self;
  self.set_instance_id(instance_id);
  self.set_advertised_url(AdvertisedUrl(config.api));
  self.set_group_id(config.run.group_id);
  self.set_version(RAPPORT_VERSION);
  self.set_instance_token(instance_token);
  auto describe = [&progress, &fitted](cluster::v1::Member& member) {
    for (const auto& [p, state] : progress.Snapshot()) {
      // A standby is published once it has caught up: only then may it
      // answer for the partition.
      const bool warm_standby = state.standby && state.applied >= state.catch_up_to;
      if (!state.owned && !warm_standby) continue;
      auto* published = state.owned ? member.add_owned() : member.add_standby();
      published->set_partition(p);
      published->set_applied(state.applied);
      published->set_end(state.end);
      if (state.owned) published->set_assigned_at_ms(state.owned_since_ms);
    }
    std::lock_guard lock(fitted.mutex);
    member.set_churn_model(fitted.bytes);
  };
  ASSIGN_OR_RETURN(publisher, cluster::Publisher::Start(config.kafka, config.topics.members, self, describe));
  directory->WaitCaughtUp(config.kafka.timeout);
  ModuleLogger("cluster")->info("instance {} answers at {}; members on {}", instance_id, self.advertised_url(),
                                config.topics.members);
  return absl::OkStatus();
}

// --as-of TEXT for `command`, or `otherwise` when it is not given; nullopt
// (after saying why on `err`) when TEXT is not a date or time.
std::optional<absl::Time> AsOf(const std::string& text, absl::Time otherwise, std::string_view command,
                               std::ostream& err) {
  if (text.empty()) return otherwise;
  auto parsed = ParseStartTime(text);
  if (!parsed.ok()) {
    err << command << ": --as-of: \"" << text << "\" is not a date such as 2026-01-31 or an RFC 3339 time\n";
    return std::nullopt;
  }
  return *parsed;
}

}  // namespace

// `run` holds RocksDB's table files, the API's connections and Kafka's
// sockets at once: the soft open-file limit (often 1,024) is raised to the
// hard one, as servers do, and a hard limit below what the config allows is
// said at start rather than found as "Too many open files" under load.
void RaiseOpenFileLimit(const Config& config, bool serving) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) getrlimit(RLIMIT_NOFILE, &limit);
  }
  constexpr int64_t kOthers = 256;  // Kafka sockets, write-ahead log, logs, threads' files
  const int64_t needed = config.store.max_open_files + (serving ? config.api.max_connections : 0) + kOthers;
  if (limit.rlim_cur != RLIM_INFINITY && static_cast<int64_t>(limit.rlim_cur) < needed) {
    ModuleLogger("cli")->warn(
        "the open-file limit is {}, and this config may use {} ([store] max_open_files {}{} and {} more): raise it "
        "(ulimit -n, LimitNOFILE= under systemd) or lower those settings",
        limit.rlim_cur, needed, config.store.max_open_files,
        serving ? fmt::format(", [api] max_connections {}", config.api.max_connections) : "", kOthers);
  }
}

// `run --read-only`: serves a store nobody applies to (a replay's directory)
// until stopped.
int ServeReadOnly(const Config& config, std::ostream& out, std::ostream& err, const std::atomic<bool>& stop) {
  if (config.api.listen.empty()) {
    err << "run: --read-only serves the API and applies nothing: give --http HOST:PORT\n";
    return 2;
  }
  RaiseOpenFileLimit(config, true);
  projections::ProjectionRegistry registry;
  auto store = OpenStore(config, registry, Access::kReadOnly);
  if (!store.ok()) {
    err << "run: " << store.status().message() << "\n";
    return 2;
  }
  Metrics metrics;
  std::unique_ptr<api::Ingest> ingest;
  std::unique_ptr<api::ApiService> service;
  std::unique_ptr<api::HttpServer> server;
  if (Status started = StartApi(config, **store, nullptr, metrics, ingest, service, server); !started.ok()) {
    err << "run: " << started.message() << "\n";
    return 2;
  }
  while (!stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server->Shutdown(std::chrono::seconds(10));
  out << "run: served " << config.store.data_dir << " read-only\n";
  return 0;
}

projections::ChurnModelOptions ChurnModelOptionsOf(const ChurnConfig& churn);

// Fits the churn models as of now with `fit` (this store's, or every
// partition's across instances) and stores them; logs what it did. A fit
// that cannot run (no purchases yet) is logged, not fatal.
using ModelFit = std::function<Result<state::v1::ChurnModel>()>;
std::optional<state::v1::ChurnModel> RefitChurnModels(projections::ProjectionStore& store, const ModelFit& fit) {
  const auto started = absl::Now();
  auto model = fit();
  if (!model.ok()) {
    spdlog::info("churn models not refitted: {}", std::string(model.status().message()));
    return std::nullopt;
  }
  if (Status stored = projections::StoreChurnModel(store, *model); !stored.ok()) {
    spdlog::warn("churn models not stored: {}", std::string(stored.message()));
    return std::nullopt;
  }
  const auto& bg = model->purchases();
  spdlog::info(
      "churn models refitted in {:.2f} s: BG/NBD r={:.4g} alpha={:.4g} a={:.4g} b={:.4g} over {} customers, "
      "{} spend model(s)",
      absl::ToDoubleSeconds(absl::Now() - started), bg.r(), bg.alpha(), bg.a(), bg.b(), bg.customers(),
      model->spend_size());
  return *std::move(model);
}

ModelFit LocalFit(const Config& config, projections::ProjectionStore& store) {
  return [&config, &store]() -> Result<state::v1::ChurnModel> {
    ASSIGN_OR_RETURN(int32_t partitions, consumers::StoredPartitionCount(store, config.topics.events));
    return projections::ChurnView(store, partitions).Fit(absl::InfiniteFuture(), ChurnModelOptionsOf(config.churn));
  };
}

// The models the instance applying partition 0 publishes, when they differ
// from `adopted` (the last stored): parsed, checked and stored.
void AdoptPublishedModels(const cluster::Directory& directory, projections::ProjectionStore& store,
                          std::string& adopted) {
  auto fitter = directory.OwnerOf(0);
  if (!fitter || fitter->standby) return;  // a standby fits nothing
  const auto members = directory.Members();
  auto member = members.find(fitter->instance_id);
  if (member == members.end() || member->second.member.churn_model().empty()) return;
  const std::string& bytes = member->second.member.churn_model();
  if (bytes == adopted) return;
  auto parsed = projections::ParseChurnModel(bytes);
  if (!parsed.ok()) {
    ModuleLogger("cluster")->warn("instance {} publishes churn models that are not sound ({}); kept the last ones",
                                  fitter->instance_id, std::string(parsed.status().message()));
    adopted = bytes;  // said once
    return;
  }
  const state::v1::ChurnModel& model = *parsed;
  const auto& bg = model.purchases();
  if (Status stored = projections::StoreChurnModel(store, model); !stored.ok()) {
    spdlog::warn("churn models from instance {} not stored: {}", fitter->instance_id, std::string(stored.message()));
    return;
  }
  adopted = bytes;
  spdlog::info("churn models from instance {} (which fits them over every partition) stored: BG/NBD over {} customers",
               fitter->instance_id, bg.customers());
}

// `rapport run`'s refit schedule: once the runner has caught up, then every
// [churn] refit_interval_s, until stopped. With several instances
// (`directory`), the one applying partition 0 fits over every partition
// (`service`) and publishes the models (`fitted`); the others store what it
// publishes, looking every second: one set of models, as one instance has.
void RefitOnSchedule(const Config& config, projections::ProjectionStore& store,
                     const consumers::RunnerProgress& progress, std::stop_token stop, api::ApiService* service,
                     const cluster::Directory* directory, FittedModels& fitted) {
  std::mutex mutex;
  std::condition_variable_any wake;
  std::unique_lock lock(mutex);
  auto pause = [&](std::chrono::seconds how_long) { wake.wait_for(lock, stop, how_long, [] { return false; }); };
  while (!stop.stop_requested() && !(progress.started() && progress.joined() && progress.TotalLag() == 0)) {
    pause(std::chrono::seconds(1));
  }
  if (directory == nullptr || service == nullptr) {
    while (!stop.stop_requested()) {
      RefitChurnModels(store, LocalFit(config, store));
      pause(std::chrono::seconds(config.churn.refit_interval_s));
    }
    return;
  }
  const auto options = ChurnModelOptionsOf(config.churn);
  std::string adopted;
  auto next_fit = std::chrono::steady_clock::now();
  while (!stop.stop_requested()) {
    if (!progress.Owned(0)) {
      AdoptPublishedModels(*directory, store, adopted);
      next_fit = std::chrono::steady_clock::now();  // fits at once should partition 0 come here
    } else if (std::chrono::steady_clock::now() >= next_fit) {
      auto model = RefitChurnModels(store, [&] { return service->FitChurnModels(options); });
      // Failed (an instance did not answer): tried again in a few seconds.
      next_fit = std::chrono::steady_clock::now() +
                 (model ? std::chrono::seconds(config.churn.refit_interval_s) : std::chrono::seconds(5));
      if (model) {
        std::lock_guard published(fitted.mutex);
        fitted.bytes = model->SerializeAsString();
      }
    }
    pause(std::chrono::seconds(1));
  }
}

int RunProjections(const Config& config, const RunArgs& args, std::ostream& out, std::ostream& err,
                   const std::atomic<bool>& stop) {
  if (args.read_only) return ServeReadOnly(config, out, err, stop);
  RaiseOpenFileLimit(config, !config.api.listen.empty());
  projections::ProjectionRegistry registry;
  auto store = OpenStore(config, registry, Access::kReadWrite);
  if (!store.ok()) {
    err << "run: " << store.status().message() << "\n";
    return 2;
  }
  const bool serve = !config.api.listen.empty();
  Metrics metrics;
  std::atomic<cluster::Publisher*> publishing{nullptr};     // told of each assignment
  std::atomic<const cluster::Directory*> placing{nullptr};  // where standbys go
  const std::string instance_id =
      config.run.instance_id.empty() ? DefaultInstanceId(config.store.data_dir) : config.run.instance_id;
  std::function<std::set<int32_t>(int32_t)> standbys;
  if (config.run.standby_replicas > 0) {
    standbys = [&placing, &instance_id, replicas = static_cast<int>(config.run.standby_replicas),
                current = std::set<int32_t>()](int32_t partition_count) mutable {
      const cluster::Directory* directory = placing.load();
      if (directory == nullptr) return std::set<int32_t>();
      current = cluster::StandbyPartitions(directory->Members(), instance_id, partition_count, replicas, current);
      return current;
    };
  }
  consumers::RunnerOptions options{.kafka = config.kafka,
                                   .group_id = config.run.group_id,
                                   .instance_id = instance_id,
                                   .topic = config.topics.events,
                                   .dead_letter_topic = config.topics.dead_letter,
                                   .alerts_topic = config.topics.alerts,
                                   .max_batch = static_cast<size_t>(config.run.max_batch),
                                   .batch_wait = std::chrono::milliseconds(config.run.batch_wait_ms),
                                   .dedup_window = static_cast<uint32_t>(config.run.dedup_window),
                                   .apply_threads = static_cast<unsigned>(config.run.apply_threads),
                                   .state_cache_bytes = static_cast<size_t>(config.run.state_cache_bytes),
                                   .stop_when_caught_up = args.until_caught_up,
                                   .metrics = serve ? &metrics : nullptr,
                                   .replay = std::nullopt,
                                   .on_batch = nullptr,
                                   .on_assignment =
                                       [&publishing] {
                                         if (cluster::Publisher* publisher = publishing.load()) publisher->Nudge();
                                       },
                                   .standby_partitions = standbys};
  auto runner = consumers::ProjectionRunner::Create(options, **store, registry.all());
  if (!runner.ok()) {
    err << "run: " << runner.status().message() << "\n";
    return 2;
  }
  // The API serves the live store while the runner applies to it.
  std::unique_ptr<api::Ingest> ingest;
  std::unique_ptr<api::ApiService> service;
  std::unique_ptr<api::HttpServer> server;
  std::unique_ptr<cluster::Directory> directory;
  std::unique_ptr<cluster::Publisher> publisher;
  FittedModels fitted;
  const std::string instance_token = NewInstanceToken();
  if (serve && !args.until_caught_up) {
    if (Status joined = JoinMembers(config, options.instance_id, instance_token, (*runner)->progress(), fitted,
                                    directory, publisher);
        !joined.ok()) {
      err << "run: " << config.topics.members << ": " << joined.message() << "\n";
      return 2;
    }
    publishing = publisher.get();
    placing = directory.get();
  }
  if (config.run.standby_replicas > 0 && directory == nullptr) {
    ModuleLogger("cluster")->warn(
        "run.standby_replicas is {}, but standbys are placed through the members topic, which this instance {}: "
        "it keeps none",
        config.run.standby_replicas,
        serve && !args.until_caught_up ? "could not join" : "joins only when it serves the API ([api] listen)");
  }
  if (serve) {
    auto started = StartApi(config, **store, &(*runner)->progress(), metrics, ingest, service, server, directory.get(),
                            options.instance_id, instance_token);
    if (!started.ok()) {
      err << "run: " << started.message() << "\n";
      return 2;
    }
  }
  std::jthread refits;
  if (config.churn.refit_interval_s > 0 && !args.until_caught_up) {
    refits = std::jthread([&](std::stop_token token) {
      RefitOnSchedule(config, **store, (*runner)->progress(), token, service.get(), directory.get(), fitted);
    });
  }
  Status status = (*runner)->Run(stop);
  if (refits.joinable()) {
    refits.request_stop();
    refits.join();
  }
  // Caught up and stopping: fit once, so queries of this store have the models' figures.
  if (status.ok() && args.until_caught_up && config.churn.refit_interval_s > 0)
    RefitChurnModels(**store, LocalFit(config, **store));
  if (server) server->Shutdown(std::chrono::seconds(10));  // drains requests in flight
  publisher.reset();                                       // its last record: this instance left
  const auto& stats = (*runner)->stats();
  out << fmt::format("run: {} events applied, {} duplicates skipped, {} dead-lettered in {} batches{}\n", stats.applied,
                     stats.duplicates, stats.dead_lettered, stats.batches,
                     stats.rebuilt > 0
                         ? fmt::format("; {} events folded into raised projection versions being built", stats.rebuilt)
                         : "");
  if (!status.ok()) {
    err << "run: " << status.message() << "\n";
    return 2;
  }
  return 0;
}

int RunReplay(const Config& config, const ReplayArgs& args, std::ostream& out, std::ostream& err,
              const std::atomic<bool>& stop) {
  if (args.into.empty()) {
    err << "replay: --into DIR is required (a directory of its own, never the live store)\n";
    return 2;
  }
  std::optional<int64_t> from_ms, until_ms, known_at_ms;
  for (auto [text, flag, target] : {std::tuple{&args.from_time, "--from-time", &from_ms},
                                    {&args.until, "--until", &until_ms},
                                    {&args.known_at, "--known-at", &known_at_ms}}) {
    if (text->empty()) continue;
    auto parsed = events::ParseDateOrTime(*text);
    if (!parsed) {
      err << "replay: " << flag << ": \"" << *text << "\" is not a date such as 2026-01-31 or an RFC 3339 time\n";
      return 2;
    }
    *target = absl::ToUnixMillis(*parsed);
  }
  if (from_ms && until_ms && *until_ms <= *from_ms) {
    err << "replay: --until must be later than --from-time\n";
    return 2;
  }
  Config target = config;
  target.store.data_dir = args.into;
  projections::ProjectionRegistry registry;
  auto store = OpenStore(target, registry, Access::kReadWrite);
  if (!store.ok()) {
    err << "replay: " << store.status().message() << "\n";
    return 2;
  }
  // The projections to build; the others' families stay empty.
  const bool all = std::find(args.projections.begin(), args.projections.end(), "all") != args.projections.end();
  std::vector<projections::Projection*> selected;
  std::string names;
  for (auto* projection : registry.all()) {
    if (all ||
        std::find(args.projections.begin(), args.projections.end(), projection->Name()) != args.projections.end()) {
      selected.push_back(projection);
      names += (names.empty() ? "" : ",") + std::string(projection->Name());
    }
  }
  for (const auto& name : args.projections) {
    bool known = name == "all";
    for (auto* projection : registry.all()) known |= projection->Name() == name;
    if (!known) {
      err << "replay: --projection: \"" << name << "\" is not a projection (customer_profile, reviews, churn, all)\n";
      return 2;
    }
  }
  // A directory holds one replay: resuming with other arguments would mix two.
  // (Replays before the window became a filter stored "until=": they differ.)
  auto shown = [](const std::optional<int64_t>& ms) { return ms ? std::to_string(*ms) : std::string("-"); };
  const std::string what =
      fmt::format("topic={} projections={} occurred-from={} occurred-before={} known-before={}", config.topics.events,
                  names, shown(from_ms), shown(until_ms), shown(known_at_ms));
  auto* runner_family = (*store)->family(consumers::ProjectionRunner::kFamily);
  auto previous = (*store)->Get(runner_family, "replay");
  if (previous.ok() && *previous != what) {
    err << "replay: " << args.into << " holds another replay (" << *previous << "); use a new directory\n";
    return 2;
  }
  if (!previous.ok()) {
    // Offsets but no replay marker: the live store of `rapport run`. A replay
    // would resume from its offsets and mix the two.
    auto offsets = consumers::StoredOffsets(**store, config.topics.events);
    if (offsets.ok() && !offsets->empty()) {
      err << "replay: " << args.into << " is the store of `rapport run`, not a replay; replay into a directory of "
          << "its own\n";
      return 2;
    }
    rocksdb::WriteBatch batch;
    batch.Put(runner_family, "replay", what).PermitUncheckedError();
    if (Status written = (*store)->Write(batch); !written.ok()) {
      err << "replay: " << written.message() << "\n";
      return 2;
    }
  }

  consumers::RunnerOptions options;
  options.kafka = config.kafka;
  options.group_id = "rapport-replay";  // librdkafka wants one; no group is joined
  options.topic = config.topics.events;
  options.dead_letter_topic = config.topics.dead_letter;
  options.alerts_topic = config.topics.alerts;
  options.max_batch = static_cast<size_t>(config.run.max_batch);
  options.batch_wait = std::chrono::milliseconds(config.run.batch_wait_ms);
  options.dedup_window = static_cast<uint32_t>(config.run.dedup_window);
  options.apply_threads = static_cast<unsigned>(config.run.apply_threads);
  options.state_cache_bytes = static_cast<size_t>(config.run.state_cache_bytes);
  options.replay = consumers::RunnerOptions::Replay{from_ms, until_ms, known_at_ms};
  std::map<int32_t, int64_t> first;  // each partition's applied offset when this run started
  std::unique_ptr<Progress> progress;
  options.on_batch = [&](const consumers::RunnerProgress& state) {
    uint64_t done = 0;
    std::map<int32_t, std::pair<int64_t, int64_t>> positions;
    for (const auto& [p, s] : state.Snapshot()) {
      done += static_cast<uint64_t>(std::max<int64_t>(s.applied - first[p], 0));
      positions[p] = {s.applied, s.end};
    }
    if (progress) progress->Report(done, positions);
  };
  auto runner = consumers::ProjectionRunner::Create(options, **store, selected);
  if (!runner.ok()) {
    err << "replay: " << runner.status().message() << "\n";
    return 2;
  }
  uint64_t total = 0;
  for (const auto& [p, s] : (*runner)->progress().Snapshot()) {
    first[p] = s.applied;
    total += static_cast<uint64_t>(std::max<int64_t>(s.end - s.applied, 0));
  }
  progress = std::make_unique<Progress>(err, args.progress, "replay", total);
  Status status = (*runner)->Run(stop);
  progress->Finish();
  const auto& stats = (*runner)->stats();
  if (!status.ok()) {
    err << "replay: " << status.message() << "\n";
    return 2;
  }
  const int64_t left = (*runner)->progress().TotalLag();
  std::string window;
  if (until_ms) window += " as of " + args.until;
  if (known_at_ms) window += " as known at " + args.known_at;
  out << fmt::format(
      "replay: {} events applied ({} duplicates skipped, {} invalid, {} outside the window) into {} "
      "[{}]{}{}\n",
      stats.applied, stats.duplicates, stats.dead_lettered, stats.outside_window, args.into, names, window,
      left > 0 ? fmt::format("; interrupted with {} records to go: run the same command to resume", left)
               : "; query it with `rapport query --data-dir " + args.into + "`");
  return left > 0 ? 130 : 0;
}

int RunDigest(const Config& config, std::ostream& out, std::ostream& err) {
  projections::ProjectionRegistry registry;
  auto store = OpenStore(config, registry, Access::kReadOnly);
  if (!store.ok()) {
    err << "digest: " << store.status().message() << "\n";
    return 2;
  }
  for (const auto* projection : registry.all()) {
    auto serving = (*store)->ServingFamily(projection->Family());  // the version queries read
    auto digest = (*store)->Digest(serving ? serving->GetName() : projection->Family());
    if (!digest.ok()) {
      err << "digest: " << digest.status().message() << "\n";
      return 2;
    }
    out << projection->Name() << " " << *digest << "\n";
  }
  return 0;
}

int RunQuery(const Config& config, const QueryArgs& args, std::ostream& out, std::ostream& err) {
  projections::ProjectionRegistry registry;
  auto store = OpenStore(config, registry, Access::kReadOnly);
  if (!store.ok()) {
    err << "query: " << store.status().message() << "\n";
    return 2;
  }
  auto partitions = consumers::StoredPartitionCount(**store, config.topics.events);
  if (!partitions.ok()) {
    err << "query: " << partitions.status().message() << "\n";
    return 2;
  }
  const std::optional<absl::Time> maybe_as_of = AsOf(args.as_of, absl::Now(), "query", err);
  if (!maybe_as_of) return 2;
  const absl::Time as_of = *maybe_as_of;
  // An answer is printed; a customer or subject the store does not know exits 1.
  auto print = [&](const Result<api::Answer>& answer) {
    if (!answer.ok()) {
      err << "query: " << answer.status().message() << "\n";
      return answer.status().code() == absl::StatusCode::kNotFound ? 1 : 2;
    }
    out << answer->json << "\n";
    return 0;
  };
  const api::StoreReads reads(**store, *partitions, events::JsonStyle::kIndented);
  if (args.what == "segments") {
    auto population = projections::ChurnView(**store, *partitions).Population(as_of);
    if (!population.ok()) {
      err << "query: " << population.status().message() << "\n";
      return 2;
    }
    out << projections::ChurnView::ToJson(*population, as_of) << "\n";
    return 0;
  }
  if (args.what == "churn") return print(reads.Churn(args.id, as_of));
  if (args.what == "reviews") {
    if (!args.customer.empty()) return print(reads.CustomerReviews(args.customer));
    const size_t slash = args.id.find('/');
    const auto type = slash == std::string::npos ? std::nullopt : api::SubjectTypeNamed(args.id.substr(0, slash));
    if (!type) {
      err << "query: reviews: \"" << args.id
          << "\" is not a subject such as hotel/hotel-001 (types: hotel, product, store, agent, route, restaurant, "
             "service, other)\n";
      return 2;
    }
    const std::string subject_id = args.id.substr(slash + 1);
    if (args.items) return print(reads.SubjectReviews(*type, subject_id, args.limit, args.cursor));
    return print(reads.SubjectSummary(*type, subject_id, as_of));
  }
  if (args.what == "lookup") {
    // The API's names; "external", this command's name for external_id
    // before, still works.
    const auto kind = api::LookupKindNamed(args.identity_kind == "external" ? "external_id" : args.identity_kind);
    if (!kind) {
      err << "query: lookup: \"" << args.identity_kind << "\" is not one of email, phone, card, device, external_id\n";
      return 2;
    }
    return print(reads.Lookup(*kind, args.id));
  }
  return print(reads.Profile(args.id));
}

projections::ChurnModelOptions ChurnModelOptionsOf(const ChurnConfig& churn) {
  return {.period = projections::ModelPeriodNamed(churn.period).value_or(projections::ModelPeriod::kDay),
          .clv_months = static_cast<int>(churn.clv_months),
          .monthly_discount_rate = churn.monthly_discount_rate,
          .min_spend_customers = static_cast<size_t>(churn.min_spend_customers)};
}

int RunChurnFit(const Config& config, const ChurnFitArgs& args, std::ostream& out, std::ostream& err) {
  const std::optional<absl::Time> maybe_as_of = AsOf(args.as_of, absl::InfiniteFuture(), "churn fit", err);
  if (!maybe_as_of) return 2;
  const absl::Time as_of = *maybe_as_of;
  projections::ProjectionRegistry registry;
  auto store = OpenStore(config, registry, args.no_store ? Access::kReadOnly : Access::kReadWrite);
  if (!store.ok()) {
    err << "churn fit: " << store.status().message()
        << (args.no_store ? ""
                          : "\n(a running `rapport run` holds the store and refits on its schedule, "
                            "[churn] refit_interval_s; add --no-store to fit beside it without storing)")
        << "\n";
    return 2;
  }
  auto partitions = consumers::StoredPartitionCount(**store, config.topics.events);
  if (!partitions.ok()) {
    err << "churn fit: " << partitions.status().message() << "\n";
    return 2;
  }
  const auto started = absl::Now();
  auto model = projections::ChurnView(**store, *partitions).Fit(as_of, ChurnModelOptionsOf(config.churn));
  if (!model.ok()) {
    err << "churn fit: " << model.status().message() << "\n";
    return 2;
  }
  if (!args.no_store) {
    if (Status stored = projections::StoreChurnModel(**store, *model); !stored.ok()) {
      err << "churn fit: storing the model: " << stored.message() << "\n";
      return 2;
    }
  }
  spdlog::info("churn fit: BG/NBD over {} customers, {} spend model(s), in {:.2f} s{}", model->purchases().customers(),
               model->spend_size(), absl::ToDoubleSeconds(absl::Now() - started), args.no_store ? " (not stored)" : "");
  out << projections::ChurnView::ToJson(*model) << "\n";
  return 0;
}

}  // namespace rapport::cli
