// The baseline for rapport's consume-and-project throughput: plain librdkafka
// reading every partition of a topic from the beginning to its end (batch
// consume, no decoding, no state), as fast as the broker serves it.
//
// usage: rapport_bench_raw_consume BROKERS TOPIC
// prints: "<records> records in <seconds> s"
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdio>
#include <set>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s BROKERS TOPIC\n", argv[0]);
    return 2;
  }
  char error[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], error, sizeof(error));
  rd_kafka_conf_set(conf, "group.id", "rapport-bench-raw", error, sizeof(error));
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", error, sizeof(error));
  rd_kafka_conf_set(conf, "enable.partition.eof", "true", error, sizeof(error));
  rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof(error));
  if (consumer == nullptr) {
    std::fprintf(stderr, "%s\n", error);
    return 2;
  }
  rd_kafka_topic_t* topic = rd_kafka_topic_new(consumer, argv[2], nullptr);
  const rd_kafka_metadata_t* metadata = nullptr;
  if (rd_kafka_metadata(consumer, 0, topic, &metadata, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    std::fprintf(stderr, "no metadata for %s\n", argv[2]);
    return 2;
  }
  int partitions = metadata->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(metadata);
  rd_kafka_topic_destroy(topic);

  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(assignment, argv[2], p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(consumer, assignment);
  rd_kafka_topic_partition_list_destroy(assignment);
  rd_kafka_queue_t* queue = rd_kafka_queue_get_consumer(consumer);

  std::vector<rd_kafka_message_t*> batch(5000);
  std::set<int> done;
  long long records = 0, bytes = 0;
  auto start = std::chrono::steady_clock::now();
  while (static_cast<int>(done.size()) < partitions) {
    ssize_t n = rd_kafka_consume_batch_queue(queue, 100, batch.data(), batch.size());
    for (ssize_t i = 0; i < n; ++i) {
      if (batch[i]->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        done.insert(batch[i]->partition);
      } else if (batch[i]->err == 0) {
        ++records;
        bytes += static_cast<long long>(batch[i]->len);
      }
      rd_kafka_message_destroy(batch[i]);
    }
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%lld records in %.3f s (%lld bytes)\n", records, seconds, bytes);
  rd_kafka_queue_destroy(queue);
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);
  return 0;
}
