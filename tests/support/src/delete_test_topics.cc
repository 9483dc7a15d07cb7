// rapport_delete_test_topics BROKERS PREFIX...: deletes every topic whose
// name starts with one of the prefixes. ops/test runs it before the tests with
// the prefixes the tests name their throwaway topics by ("it.", "fault."):
// the local broker keeps records forever, and a partition costs the broker
// open files, so topics left by earlier runs would pile up until it runs out
// of file descriptors.
#include <librdkafka/rdkafka.h>

#include <cstdio>
#include <string>
#include <vector>

#include "rapport/kafka/client.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s BROKERS PREFIX...\n", argv[0]);
    return 2;
  }
  rapport::kafka::KafkaSettings settings;
  settings.brokers = argv[1];
  auto conf = rapport::kafka::BuildKafkaConf(settings, {});
  if (!conf.ok()) {
    std::fprintf(stderr, "delete-test-topics: %s\n", std::string(conf.status().message()).c_str());
    return 2;
  }
  auto client = rapport::kafka::NewKafkaHandle(RD_KAFKA_PRODUCER, std::move(conf).value());
  if (!client.ok()) {
    std::fprintf(stderr, "delete-test-topics: %s\n", std::string(client.status().message()).c_str());
    return 2;
  }
  rd_kafka_t* rk = client->get();
  const rd_kafka_metadata_t* metadata = nullptr;
  if (rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, nullptr, &metadata, 15000)) {
    std::fprintf(stderr, "delete-test-topics: listing topics: %s\n", rd_kafka_err2str(err));
    return 2;
  }
  std::vector<std::string> doomed;
  for (int i = 0; i < metadata->topic_cnt; ++i) {
    std::string name = metadata->topics[i].topic;
    for (int p = 2; p < argc; ++p) {
      if (name.rfind(argv[p], 0) == 0) {
        doomed.push_back(name);
        break;
      }
    }
  }
  rd_kafka_metadata_destroy(metadata);

  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  size_t deleted = 0;
  int status = 0;
  // A few hundred at a time: a broker near its open-file limit copes better.
  for (size_t from = 0; from < doomed.size(); from += 200) {
    std::vector<rd_kafka_DeleteTopic_t*> topics;
    for (size_t i = from; i < doomed.size() && i < from + 200; ++i)
      topics.push_back(rd_kafka_DeleteTopic_new(doomed[i].c_str()));
    rd_kafka_DeleteTopics(rk, topics.data(), topics.size(), nullptr, queue);
    rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 60000);
    if (event == nullptr || rd_kafka_event_error(event)) {
      std::fprintf(stderr, "delete-test-topics: %s\n",
                   event ? rd_kafka_event_error_string(event) : "no answer from the broker within 60 s");
      status = 2;
      if (event) rd_kafka_event_destroy(event);
      rd_kafka_DeleteTopic_destroy_array(topics.data(), topics.size());
      break;  // the broker is not answering: the rest would fail alike
    } else {
      size_t count = 0;
      const rd_kafka_topic_result_t** results =
          rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(event), &count);
      for (size_t i = 0; i < count; ++i) deleted += rd_kafka_topic_result_error(results[i]) == 0;
    }
    if (event) rd_kafka_event_destroy(event);
    rd_kafka_DeleteTopic_destroy_array(topics.data(), topics.size());
  }
  rd_kafka_queue_destroy(queue);
  std::printf("delete-test-topics: deleted %zu of %zu topics left by earlier test runs\n", deleted, doomed.size());
  return status;
}
