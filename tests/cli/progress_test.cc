#include "rapport/cli/progress.h"

#include <gtest/gtest.h>

#include <sstream>
#include <thread>

namespace rapport::cli {
namespace {

TEST(Progress, GroupsThousands) {
  EXPECT_EQ(Grouped(0), "0");
  EXPECT_EQ(Grouped(999), "999");
  EXPECT_EQ(Grouped(1000), "1,000");
  EXPECT_EQ(Grouped(1234567), "1,234,567");
}

TEST(Progress, ATerminalGetsABarRedrawnInPlaceThenCleared) {
  std::ostringstream err;
  Progress progress(err, true, "export", 1024);
  for (int i = 0; i < 512; ++i) progress.Advance(0, i, 1024);
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  for (int i = 512; i < 768; ++i) progress.Advance(0, i, 1024);
  const std::string drawn = err.str();
  EXPECT_EQ(drawn.rfind("\rexport [##################------]  75%  768/1,024 events  ", 0), 0u) << drawn;
  EXPECT_NE(drawn.find("ETA"), std::string::npos);
  EXPECT_EQ(drawn.find('\n'), std::string::npos);  // redrawn in place, never scrolled
  progress.Finish();
  EXPECT_EQ(err.str().back(), '\r');
}

TEST(Progress, ALogGetsPlainLinesNamingThePartitionFurthestBehind) {
  std::ostringstream err;
  Progress progress(err, false, "replay", 300, std::chrono::milliseconds(100));
  progress.Advance(0, 99, 100);
  EXPECT_EQ(err.str(), "");  // the first line after the interval
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  for (int i = 0; i < 255; ++i) progress.Advance(1, i, 1000);
  EXPECT_EQ(err.str().rfind("replay: 256/300 events (85%), ", 0), 0u) << err.str();
  EXPECT_NE(err.str().find("; furthest behind: partition 1 at offset 255 of 1000\n"), std::string::npos) << err.str();
  progress.Finish();
  EXPECT_EQ(err.str().back(), '\n');  // nothing to clear in a log
}

}  // namespace
}  // namespace rapport::cli
