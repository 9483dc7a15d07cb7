package rapport.bench;

import java.lang.management.ManagementFactory;
import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Currency;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;
import rapport.v1.EnvelopeOuterClass.Envelope;

/**
 * Kafka Streams peer for bench/run: per customer, the RFM aggregate of their
 * purchases (count, first and last purchase time, total spend in minor units of
 * their first purchase's currency), read from rapport's events topic (one
 * protobuf Envelope per record, keyed by customer id) with exactly-once
 * processing (exactly_once_v2) into a RocksDB state store with its changelog.
 *
 * <p>Runs until its consumer group has committed every record that was on the
 * topic at start, then prints one line: {@code peer: RECORDS records in SECONDS s
 * (JVM start to last commit), CUSTOMERS customers with purchases, PURCHASES
 * purchases, THREADS threads}.
 *
 * <p>Usage: java -jar kstreams-rfm.jar BROKERS TOPIC STATE_DIR [THREADS]
 */
public final class RfmPeer {
  private static final String STORE = "rfm";

  /** One customer's RFM aggregate; serialized as 4 longs and the currency code. */
  record Rfm(long purchases, long firstMs, long lastMs, long monetaryMinor, String currency) {
    static final Rfm EMPTY = new Rfm(0, Long.MAX_VALUE, Long.MIN_VALUE, 0, "");

    Rfm add(Purchase p) {
      String code = currency.isEmpty() ? p.currency() : currency;
      long spend = p.currency().equals(code) ? monetaryMinor + p.minor() : monetaryMinor;
      return new Rfm(purchases + 1, Math.min(firstMs, p.atMs()), Math.max(lastMs, p.atMs()), spend, code);
    }

    byte[] encode() {
      byte[] code = currency.getBytes(StandardCharsets.US_ASCII);
      return ByteBuffer.allocate(32 + code.length)
          .putLong(purchases).putLong(firstMs).putLong(lastMs).putLong(monetaryMinor).put(code).array();
    }

    static Rfm decode(byte[] bytes) {
      ByteBuffer b = ByteBuffer.wrap(bytes);
      long n = b.getLong(), first = b.getLong(), last = b.getLong(), spend = b.getLong();
      return new Rfm(n, first, last, spend, new String(bytes, 32, bytes.length - 32, StandardCharsets.US_ASCII));
    }
  }

  record Purchase(long atMs, long minor, String currency) {
    byte[] encode() {
      byte[] code = currency.getBytes(StandardCharsets.US_ASCII);
      return ByteBuffer.allocate(16 + code.length).putLong(atMs).putLong(minor).put(code).array();
    }

    static Purchase decode(byte[] bytes) {
      ByteBuffer b = ByteBuffer.wrap(bytes);
      long at = b.getLong(), minor = b.getLong();
      return new Purchase(at, minor, new String(bytes, 16, bytes.length - 16, StandardCharsets.US_ASCII));
    }
  }

  static <T> Serde<T> serde(java.util.function.Function<T, byte[]> encode,
                            java.util.function.Function<byte[], T> decode) {
    return Serdes.serdeFrom((topic, value) -> value == null ? null : encode.apply(value),
                            (topic, bytes) -> bytes == null ? null : decode.apply(bytes));
  }

  /** The purchase in a record, or none: other event types and undecodable records are skipped. */
  static List<Purchase> purchaseIn(byte[] value) {
    try {
      Envelope e = Envelope.parseFrom(value);
      if (!e.hasPurchaseCompleted()) return Collections.emptyList();
      var total = e.getPurchaseCompleted().getTotal();
      int digits = Currency.getInstance(total.getCurrency()).getDefaultFractionDigits();
      long minor = new BigDecimal(total.getAmount()).movePointRight(Math.max(digits, 0)).longValueExact();
      long at = e.getOccurredAt().getSeconds() * 1000 + e.getOccurredAt().getNanos() / 1_000_000;
      return List.of(new Purchase(at, minor, total.getCurrency()));
    } catch (Exception bad) {
      return Collections.emptyList();
    }
  }

  public static void main(String[] args) throws Exception {
    if (args.length < 3 || args[0].equals("--help")) {
      System.err.println("usage: java -jar kstreams-rfm.jar BROKERS TOPIC STATE_DIR [THREADS]");
      System.exit(args.length < 3 ? 2 : 0);
    }
    String brokers = args[0], topic = args[1];
    Path stateDir = Path.of(args[2]);
    int threads = args.length > 3 ? Integer.parseInt(args[3]) : Runtime.getRuntime().availableProcessors();
    String applicationId = "rapport-bench-rfm-" + ProcessHandle.current().pid() + "-" + System.currentTimeMillis();
    Files.createDirectories(stateDir);

    Properties adminProps = new Properties();
    adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    try (Admin admin = Admin.create(adminProps)) {
      List<TopicPartition> partitions = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic)
          .partitions().stream().map(p -> new TopicPartition(topic, p.partition())).collect(Collectors.toList());
      Map<TopicPartition, Long> ends = admin
          .listOffsets(partitions.stream().collect(Collectors.toMap(p -> p, p -> OffsetSpec.latest())))
          .all().get().entrySet().stream().collect(Collectors.toMap(Map.Entry::getKey, x -> x.getValue().offset()));
      long records = ends.values().stream().mapToLong(Long::longValue).sum();

      Properties props = new Properties();
      props.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
      props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
      props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
      props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
      props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
      props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

      Serde<Purchase> purchaseSerde = serde(Purchase::encode, Purchase::decode);
      Serde<Rfm> rfmSerde = serde(Rfm::encode, Rfm::decode);
      StreamsBuilder builder = new StreamsBuilder();
      builder.stream(topic, Consumed.with(Serdes.String(), Serdes.ByteArray()))
          .flatMapValues(RfmPeer::purchaseIn)  // same key: no repartition topic
          .groupByKey(Grouped.with(Serdes.String(), purchaseSerde))
          .aggregate(() -> Rfm.EMPTY, (customer, purchase, rfm) -> rfm.add(purchase),
                     Materialized.<String, Rfm, KeyValueStore<Bytes, byte[]>>as(STORE)
                         .withKeySerde(Serdes.String()).withValueSerde(rfmSerde));

      KafkaStreams streams = new KafkaStreams(builder.build(), props);
      streams.start();
      // Done when the group has committed (transactionally) every record that was there at start.
      long committed = 0;
      while (committed < records) {
        TimeUnit.MILLISECONDS.sleep(20);
        Map<TopicPartition, OffsetAndMetadata> offsets =
            admin.listConsumerGroupOffsets(applicationId).partitionsToOffsetAndMetadata().get();
        committed = offsets.entrySet().stream().filter(x -> x.getKey().topic().equals(topic) && x.getValue() != null)
            .mapToLong(x -> x.getValue().offset()).sum();
        if (streams.state() == KafkaStreams.State.ERROR || streams.state() == KafkaStreams.State.NOT_RUNNING) {
          throw new IllegalStateException("Kafka Streams stopped: " + streams.state());
        }
      }
      double seconds = (System.currentTimeMillis() - ManagementFactory.getRuntimeMXBean().getStartTime()) / 1000.0;

      long customers = 0, purchases = 0;
      ReadOnlyKeyValueStore<String, Rfm> store = null;
      while (store == null) {
        try {
          store = streams.store(StoreQueryParameters.fromNameAndType(STORE, QueryableStoreTypes.keyValueStore()));
        } catch (org.apache.kafka.streams.errors.InvalidStateStoreException notYet) {
          TimeUnit.MILLISECONDS.sleep(50);
        }
      }
      try (KeyValueIterator<String, Rfm> all = store.all()) {
        while (all.hasNext()) {
          KeyValue<String, Rfm> kv = all.next();
          ++customers;
          purchases += kv.value.purchases();
        }
      }
      streams.close();
      streams.cleanUp();
      admin.deleteConsumerGroups(List.of(applicationId));  // best effort: the group may still be leaving
      System.out.printf("peer: %d records in %.2f s (JVM start to last commit), %d customers with purchases, "
                        + "%d purchases, %d threads%n", records, seconds, customers, purchases, threads);
    }
  }
}
