// The lifetime-value models end to end against the real broker: simulated
// touchpoints published to Kafka, folded by `rapport run`, fitted by
// `rapport churn fit`; the fit agrees with the reference implementation (the
// Python `lifetimes` package, run on the same purchases as `rapport export`
// gives them), and P(alive) is calibrated against the simulator's truth file.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "rapport/consumers/projection_runner.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/kafka/topics.h"
#include "rapport/projections/churn.h"
#include "rapport/projections/registry.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

using nlohmann::json;

constexpr char kEnd[] = "2026-01-01";  // the simulated year's end: 2025-01-01 plus 365 days

void ExpectRelative(double actual, double expected, double tolerance, const std::string& what) {
  EXPECT_LE(std::abs(actual - expected), tolerance * std::abs(expected))
      << what << ": rapport " << actual << ", lifetimes " << expected;
}

class ChurnModel : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::CheckBrokerAnswers(broker_));
    prefix_ = testing::UniqueTopicName("it.churn");
    dir_ = ::testing::TempDir() + prefix_;
    ASSERT_OK(kafka::EnsureTopics(
                  broker_,
                  {{prefix_ + ".events", 4, -1, {}}, {prefix_ + ".dlq", 1, -1, {}}, {prefix_ + ".alerts", 1, -1, {}}})
                  .status());
    config_ = Config("");
  }
  std::string Config(const std::string& extra, const std::string& log_level = "warn") {
    return testing::WriteTestConfig(broker_, prefix_,
                                    "[topics]\nevents = \"" + prefix_ + ".events\"\ndead_letter = \"" + prefix_ +
                                        ".dlq\"\nalerts = \"" + prefix_ + ".alerts\"\nevents_partitions = 4\n" +
                                        "[run]\ngroup_id = \"" + prefix_ + "\"\n[store]\ndata_dir = \"" + dir_ +
                                        "\"\n[log]\nlevel = \"" + log_level + "\"\n" + extra);
  }
  void TearDown() override {
    std::filesystem::remove_all(dir_);
    for (const auto& file : files_) std::filesystem::remove(file);
  }
  testing::CommandResult Rapport(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", config_});
    return testing::RunRapport(args);
  }
  std::string File(const std::string& name) {
    files_.push_back(::testing::TempDir() + prefix_ + "." + name);
    return files_.back();
  }

  kafka::KafkaSettings broker_ = testing::TestBroker();
  std::string prefix_, dir_, config_;
  std::vector<std::string> files_;
};

TEST_F(ChurnModel, FitAgreesWithLifetimesAndPAliveIsCalibratedOnTheSimulatorsTruth) {
  const std::string truth_file = File("truth.csv");
  auto simulated =
      Rapport({"simulate", "--customers", "5000", "--days", "365", "--seed", "17", "--truth", truth_file, "--publish"});
  ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
  auto run = Rapport({"run", "--until-caught-up"});
  ASSERT_EQ(run.exit_code, 0) << run.err;

  // `run --until-caught-up` fitted the models once at its end (as of now).
  auto before = Rapport({"query", "churn", "c-0000001", "--as-of", kEnd});
  ASSERT_EQ(before.exit_code, 0) << before.err;
  EXPECT_TRUE(json::parse(before.out).contains("p_alive")) << before.out;

  auto fit = Rapport({"churn", "fit", "--as-of", kEnd});
  ASSERT_EQ(fit.exit_code, 0) << fit.err;
  const json ours = json::parse(fit.out);

  const std::string purchases = File("purchases.csv");
  auto exported =
      Rapport({"export", "--type", "purchase_completed", "--format", "csv", "--until", kEnd, "--out", purchases});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  auto reference =
      testing::RunProgram({testing::VenvBin("python"), testing::SourceDir() + "/tests/churn/lifetimes_reference.py",
                           purchases, "--as-of", kEnd, "--horizon", "30"});
  ASSERT_EQ(reference.exit_code, 0) << reference.err
                                    << "\n(the reference needs the packages of tests/churn/requirements.txt, "
                                       "which ops/install-deps installs)";
  const json theirs = json::parse(reference.out);

  // BG/NBD: parameters and log-likelihood to 1e-3 relative, over the same customers.
  EXPECT_EQ(ours["purchases"]["customers"].get<std::string>(),
            std::to_string(theirs["purchases"]["customers"].get<int64_t>()));
  for (const char* name : {"r", "alpha", "a", "b", "log_likelihood"}) {
    ExpectRelative(ours["purchases"][name].get<double>(), theirs["purchases"][name].get<double>(), 1e-3,
                   std::string("BG/NBD ") + name);
  }
  // Gamma-Gamma, per currency.
  std::map<std::string, json> our_spend;
  for (const auto& spend : ours["spend"]) our_spend[spend["currency"].get<std::string>()] = spend;
  ASSERT_EQ(our_spend.size(), theirs["spend"].size());
  for (const auto& [currency, spend] : theirs["spend"].items()) {
    ASSERT_TRUE(our_spend.contains(currency)) << currency;
    for (const char* name : {"p", "q", "v", "log_likelihood"}) {
      ExpectRelative(our_spend[currency][name].get<double>(), spend[name].get<double>(), 1e-3,
                     "Gamma-Gamma " + currency + " " + name);
    }
  }

  // The generating population (simulator defaults r 0.5, alpha 20, a 0.8,
  // b 2.5): the well-identified combinations, mean purchase rate r/alpha and
  // mean drop-out probability a/(a+b), within 15%.
  const double r = ours["purchases"]["r"], alpha = ours["purchases"]["alpha"];
  const double a = ours["purchases"]["a"], b = ours["purchases"]["b"];
  EXPECT_NEAR(r / alpha, 0.5 / 20, 0.15 * 0.5 / 20);
  EXPECT_NEAR(a / (a + b), 0.8 / 3.3, 0.15 * 0.8 / 3.3);

  // Per customer, through the same view the API serves: P(alive) and
  // expected purchases to 1e-3 relative, and the model's value at risk orders the at-risk list.
  projections::ProjectionRegistry registry;
  projections::RegisterProjections(registry);
  std::vector<std::string> families = registry.families();
  families.push_back(consumers::ProjectionRunner::kFamily);
  auto store = projections::ProjectionStore::Open({.path = dir_, .read_only = true}, families);
  ASSERT_OK(store);
  projections::ChurnView view(**store, 4);
  absl::Time end = absl::FromUnixSeconds(1767225600);
  std::map<std::string, double> p_alive;
  int compared = 0;
  for (const auto& [id, customer] : theirs["customers"].items()) {
    auto assessed = view.Assess(id, end);
    ASSERT_OK(assessed);
    ASSERT_TRUE(assessed->model.has_value()) << id;
    ExpectRelative(assessed->model->p_alive, customer["p_alive"].get<double>(), 1e-3, id + " P(alive)");
    ExpectRelative(assessed->model->expected_purchases_30d, customer["expected_purchases"].get<double>(), 1e-3,
                   id + " expected purchases in 30 days");
    p_alive[id] = assessed->model->p_alive;
    ++compared;
    if (::testing::Test::HasFailure()) break;  // one customer's failure says enough
  }
  EXPECT_EQ(compared, static_cast<int>(theirs["customers"].size()));
  auto at_risk_list = view.AtRisk(end, 50);
  ASSERT_OK(at_risk_list);
  // Ranked within the currency most customers pay in: amounts in JPY and
  // EUR are not comparable.
  ASSERT_GE(at_risk_list->customers_per_currency.size(), 2u);
  for (const auto& [code, customers] : at_risk_list->customers_per_currency) {
    EXPECT_LE(customers, at_risk_list->customers_per_currency.at(at_risk_list->currency)) << code;
  }
  const std::vector<projections::ChurnAssessment>& at_risk = at_risk_list->customers;
  ASSERT_FALSE(at_risk.empty());
  for (size_t i = 0; i < at_risk.size(); ++i) {
    EXPECT_EQ(at_risk[i].stats.currency(), at_risk_list->currency);
    ASSERT_TRUE(at_risk[i].model && at_risk[i].model->has_order_value);
    EXPECT_NEAR(at_risk[i].value_at_risk, at_risk[i].model->value_at_risk, 1e-9);
    if (i > 0) {
      EXPECT_GE(at_risk[i - 1].value_at_risk, at_risk[i].value_at_risk);
    }
  }
  auto in_jpy = view.AtRisk(end, 5, "JPY");
  ASSERT_OK(in_jpy);
  EXPECT_EQ(in_jpy->currency, "JPY");
  ASSERT_FALSE(in_jpy->customers.empty());
  for (const auto& ranked : in_jpy->customers) EXPECT_EQ(ranked.stats.currency(), "JPY");

  // Calibration: of the customers given P(alive) in a decile, about that
  // share is alive in the simulator's truth.
  std::ifstream truth(truth_file);
  std::string line;
  std::getline(truth, line);  // header
  struct Decile {
    int customers = 0, alive = 0;
    double predicted = 0;
  };
  std::array<Decile, 10> deciles;
  while (std::getline(truth, line)) {
    std::stringstream fields(line);
    std::string id, acquired, rate, dropout, alive;
    std::getline(fields, id, ',');
    std::getline(fields, acquired, ',');
    std::getline(fields, rate, ',');
    std::getline(fields, dropout, ',');
    std::getline(fields, alive, ',');
    auto it = p_alive.find(id);
    if (it == p_alive.end()) continue;  // no purchase by the end
    Decile& d = deciles[std::min(9, static_cast<int>(it->second * 10))];
    ++d.customers;
    d.alive += alive == "true";
    d.predicted += it->second;
  }
  std::string table = "P(alive)   customers  predicted  observed\n";
  int checked = 0;
  for (int i = 0; i < 10; ++i) {
    const Decile& d = deciles[i];
    if (d.customers == 0) continue;
    const double predicted = d.predicted / d.customers, observed = static_cast<double>(d.alive) / d.customers;
    char row[96];
    std::snprintf(row, sizeof row, "%.1f-%.1f   %9d  %9.3f  %8.3f\n", i / 10.0, (i + 1) / 10.0, d.customers, predicted,
                  observed);
    table += row;
    if (d.customers < 100) continue;  // too few to judge
    ++checked;
    // Binomial noise (3 standard errors) plus 0.08 for a model fitted, not known.
    const double noise = 3 * std::sqrt(predicted * (1 - predicted) / d.customers);
    EXPECT_NEAR(observed, predicted, noise + 0.08) << "decile " << i;
  }
  EXPECT_GE(checked, 4) << table;
  std::cout << "reliability of P(alive) on the simulator's truth:\n" << table;
}

TEST_F(ChurnModel, RunRefitsOnItsScheduleWhileItKeepsConsuming) {
  config_ = Config("[churn]\nrefit_interval_s = 1\n", "info");
  auto first = Rapport({"simulate", "--customers", "400", "--days", "90", "--seed", "5", "--publish"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::string log = File("run.log");
  const int pid = testing::StartRapport({"--config", config_, "run"}, log);
  auto read_log = [&] {  // empty until the process has written to it
    std::ifstream in(log);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  auto refits = [&] {
    std::string text = read_log();
    size_t count = 0;
    for (size_t at = text.find("churn models refitted"); at != std::string::npos;
         at = text.find("churn models refitted", at + 1)) {
      ++count;
    }
    return count;
  };
  auto wait_for = [&](const std::function<bool()>& done) {
    for (int i = 0; i < 600 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return done();
  };
  EXPECT_TRUE(wait_for([&] { return refits() >= 2; })) << testing::ReadFile(log);
  // The stored model serves queries beside the running process.
  auto query = Rapport({"query", "churn", "c-0000001"});
  ASSERT_EQ(query.exit_code, 0) << query.err;
  EXPECT_TRUE(json::parse(query.out).contains("p_alive")) << query.out;

  // More customers arrive; a later refit covers them while consuming goes on.
  auto second = Rapport({"simulate", "--customers", "800", "--days", "90", "--seed", "6", "--publish"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  auto covers_more = [&] {
    std::string text = read_log();
    size_t at = text.rfind("churn models refitted");
    if (at == std::string::npos) return false;
    size_t over = text.find(" over ", at);
    return over != std::string::npos && std::stoi(text.substr(over + 6)) > 400;
  };
  EXPECT_TRUE(wait_for(covers_more)) << testing::ReadFile(log);
  int status = testing::KillAndWait(pid, SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << testing::ReadFile(log);
}

TEST_F(ChurnModel, FitRefusesAStateLaterThanAsOfAndSaysHowToFitThePast) {
  auto simulated = Rapport({"simulate", "--customers", "300", "--days", "60", "--seed", "3", "--publish"});
  ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
  ASSERT_EQ(Rapport({"run", "--until-caught-up"}).exit_code, 0);
  auto fit = Rapport({"churn", "fit", "--as-of", "2025-01-20"});
  EXPECT_EQ(fit.exit_code, 2);
  EXPECT_NE(fit.err.find("purchases after 2025-01-20"), std::string::npos) << fit.err;
  EXPECT_NE(fit.err.find("rapport replay --projection churn --until"), std::string::npos) << fit.err;
  auto bad = Rapport({"churn", "fit", "--as-of", "last tuesday"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--as-of"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace rapport
