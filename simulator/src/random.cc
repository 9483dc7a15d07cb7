#include "rapport/simulator/random.h"

#include <cmath>

namespace rapport::simulator {
namespace {

uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t RotateLeft(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

constexpr double kTwoPi = 6.283185307179586;

}  // namespace

uint64_t Mix(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t x = a;
  uint64_t h = SplitMix64(x);
  x = h ^ b;
  h = SplitMix64(x);
  x = h ^ c;
  return SplitMix64(x);
}

Random::Random(uint64_t seed) {
  for (uint64_t& s : state_) s = SplitMix64(seed);
}

uint64_t Random::NextU64() {
  const uint64_t result = RotateLeft(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = RotateLeft(state_[3], 45);
  return result;
}

double Random::Uniform() { return static_cast<double>(NextU64() >> 11) * 0x1.0p-53; }

double Random::Uniform(double low, double high) { return low + (high - low) * Uniform(); }

int64_t Random::UniformInt(int64_t low, int64_t high) {
  const uint64_t span = static_cast<uint64_t>(high - low) + 1;
  return low + static_cast<int64_t>(NextU64() % span);  // bias < 2^-40 for the spans used here
}

bool Random::Chance(double probability) { return Uniform() < probability; }

double Random::Normal(double mean, double stddev) {
  // Box-Muller, one value per call (no cached second value: simpler state).
  double u1 = 1.0 - Uniform();  // (0, 1]
  double u2 = Uniform();
  return mean + stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
}

double Random::LogNormal(double log_mean, double log_stddev) { return std::exp(Normal(log_mean, log_stddev)); }

double Random::Exponential(double rate) { return -std::log(1.0 - Uniform()) / rate; }

double Random::Gamma(double shape, double rate) {
  // Marsaglia and Tsang (2000); for shape < 1, boost: G(a) = G(a+1) * U^(1/a).
  if (shape < 1.0) {
    double u = 1.0 - Uniform();
    return Gamma(shape + 1.0, rate) * std::pow(u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x = Normal(0.0, 1.0);
    double v = 1.0 + c * x;
    if (v <= 0.0) continue;
    v = v * v * v;
    double u = 1.0 - Uniform();
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v / rate;
  }
}

double Random::Beta(double a, double b) {
  double x = Gamma(a, 1.0);
  double y = Gamma(b, 1.0);
  return x / (x + y);
}

size_t Random::Pick(std::span<const double> weights) {
  double total = 0;
  for (double w : weights) total += w;
  double target = Uniform() * total;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (target < weights[i]) return i;
    target -= weights[i];
  }
  return weights.size() - 1;
}

}  // namespace rapport::simulator
