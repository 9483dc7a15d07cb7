// DedupWindow, one partition's de-duplication window: which ids it takes as
// new, what it stores per batch, what it forgets, and that a window loaded
// from what it stored is the window it was (a restart changes nothing).
#include "dedup_window.h"

#include <gtest/gtest.h>

#include <map>

namespace rapport::consumers {
namespace {

EventIdBytes Id(int n) {
  char uuid[37];
  std::snprintf(uuid, sizeof(uuid), "019a6f3e-5b10-7c3a-9d4e-%012d", n);
  return IdBytes(uuid);
}

// What the runner stores: first sequence number -> the chunk's ids.
struct Stored {
  std::map<uint64_t, std::string> chunks;
  void EndBatch(DedupWindow& window) {
    window.EndBatch([&](uint64_t first, std::string ids) { chunks[first] = std::move(ids); },
                    [&](uint64_t first) { EXPECT_EQ(chunks.erase(first), 1u) << "chunk " << first; });
  }
  DedupWindow Load(size_t capacity) {
    DedupWindow window(capacity);
    for (const auto& [first, ids] : chunks) EXPECT_TRUE(window.AddStoredChunk(first, ids));
    window.Trim([&](uint64_t first) { chunks.erase(first); });
    return window;
  }
  // `batches` batches of three new ids each (0, 1, 2, then 3, 4, 5, ...).
  void Fill(DedupWindow& window, int batches) {
    for (int batch = 0; batch < batches; ++batch) {
      for (int n = 0; n < 3; ++n) window.Remember(Id(batch * 3 + n));
      EndBatch(window);
    }
  }
};

TEST(DedupWindow, IdBytesReadsAUuidInEitherCase) {
  EXPECT_EQ(IdBytes("019A6F3E-5B10-7C3A-9D4E-1F2A3B4C5D6E"), IdBytes("019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d6e"));
  const EventIdBytes id = IdBytes("019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d6e");
  EXPECT_EQ(static_cast<unsigned char>(id[0]), 0x01);
  EXPECT_EQ(static_cast<unsigned char>(id[15]), 0x6e);
  EXPECT_NE(Id(1), Id(2));
}

TEST(DedupWindow, AnIdSeenWithinTheWindowIsADuplicateAndTheOldestLeaves) {
  DedupWindow window(3);
  EXPECT_TRUE(window.Remember(Id(1)));
  EXPECT_FALSE(window.Remember(Id(1)));
  EXPECT_TRUE(window.Remember(Id(2)));
  EXPECT_TRUE(window.Remember(Id(3)));
  EXPECT_TRUE(window.Remember(Id(4)));  // id 1 leaves
  EXPECT_EQ(window.size(), 3u);
  EXPECT_FALSE(window.contains(Id(1)));
  EXPECT_TRUE(window.Remember(Id(1))) << "beyond the window an id is new again";
  EXPECT_FALSE(window.Remember(Id(4)));
}

TEST(DedupWindow, EachBatchIsOneChunkForgottenOnceAllItsIdsHaveLeft) {
  DedupWindow window(4);
  Stored stored;
  for (int n : {1, 2, 3}) window.Remember(Id(n));
  stored.EndBatch(window);
  ASSERT_EQ(stored.chunks.size(), 1u);
  EXPECT_EQ(stored.chunks.begin()->first, 0u);
  EXPECT_EQ(stored.chunks.begin()->second.size(), 3u * 16);
  stored.EndBatch(window);  // a batch with no new id stores nothing
  EXPECT_EQ(stored.chunks.size(), 1u);

  window.Remember(Id(3));  // a duplicate: not stored
  for (int n : {4, 5}) window.Remember(Id(n));
  stored.EndBatch(window);  // ids 2..5 kept: the first chunk still holds two of them
  EXPECT_EQ(stored.chunks.size(), 2u);
  EXPECT_EQ(stored.chunks.count(3), 1u) << "the second chunk starts at sequence number 3";

  for (int n : {6, 7}) window.Remember(Id(n));
  stored.EndBatch(window);  // ids 4..7 kept: none of the first chunk's
  EXPECT_EQ(stored.chunks.count(0), 0u);
  EXPECT_EQ(stored.chunks.size(), 2u);
}

TEST(DedupWindow, AWindowLoadedFromWhatItStoredIsTheSameWindow) {
  DedupWindow window(5);
  Stored stored;
  stored.Fill(window, 6);
  DedupWindow loaded = stored.Load(5);
  EXPECT_EQ(loaded.size(), window.size());
  for (int n = 0; n < 18; ++n) EXPECT_EQ(loaded.contains(Id(n)), window.contains(Id(n))) << n;
  // Both go on alike: sequence numbers continue where they were.
  Stored again = stored;
  for (int n : {18, 19}) {
    EXPECT_TRUE(window.Remember(Id(n)));
    EXPECT_TRUE(loaded.Remember(Id(n)));
  }
  stored.EndBatch(window);
  again.EndBatch(loaded);
  EXPECT_EQ(again.chunks, stored.chunks);
}

TEST(DedupWindow, AWindowShrunkByTheConfigForgetsTheOldestOnLoad) {
  DedupWindow window(10);
  Stored stored;
  stored.Fill(window, 3);
  ASSERT_EQ(stored.chunks.size(), 3u);
  DedupWindow smaller = stored.Load(4);  // ids 5..8 kept
  EXPECT_EQ(smaller.size(), 4u);
  EXPECT_FALSE(smaller.contains(Id(4)));
  EXPECT_TRUE(smaller.contains(Id(5)));
  EXPECT_EQ(stored.chunks.size(), 2u) << "the chunk of ids 0..2 is deleted";
}

TEST(DedupWindow, ADamagedStoredChunkIsRefused) {
  DedupWindow window(4);
  EXPECT_FALSE(window.AddStoredChunk(0, ""));
  EXPECT_FALSE(window.AddStoredChunk(0, std::string(17, 'x')));
  EXPECT_TRUE(window.AddStoredChunk(0, std::string(32, 'x')));
}

}  // namespace
}  // namespace rapport::consumers
