#pragma once

#include <cstdint>
#include <span>

namespace rapport::simulator {

// A fully specified pseudo-random generator (xoshiro256**, seeded through
// splitmix64) with samplers written out here rather than taken from <random>,
// whose distributions differ between standard libraries: the same seed gives
// the same numbers on every platform and compiler that shares the libm.
class Random {
 public:
  explicit Random(uint64_t seed);

  uint64_t NextU64();
  double Uniform();                               // [0, 1)
  double Uniform(double low, double high);        // [low, high)
  int64_t UniformInt(int64_t low, int64_t high);  // [low, high]
  bool Chance(double probability);
  double Normal(double mean, double stddev);
  double LogNormal(double log_mean, double log_stddev);
  double Exponential(double rate);          // mean 1/rate
  double Gamma(double shape, double rate);  // mean shape/rate
  double Beta(double a, double b);
  // An index drawn with probability proportional to its weight.
  size_t Pick(std::span<const double> weights);

 private:
  uint64_t state_[4];
};

// A 64-bit hash of a few integers (splitmix64 finalizer chained), for ids and
// per-customer seeds that must not depend on the order of draws.
uint64_t Mix(uint64_t a, uint64_t b, uint64_t c = 0);

}  // namespace rapport::simulator
