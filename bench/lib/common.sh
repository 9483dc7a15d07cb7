# Shared by the bench/* scripts (source it after setting repo and build).

# Builds `targets` (RelWithDebInfo), installs what is missing and starts the
# local broker. Quick when bench/run has done it already.
bench_prepare() {  # target...
  "$repo/ops/install-deps" >/dev/null
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" --target "$@" --parallel "$(nproc)" >/dev/null
  "$repo/ops/kafka" start >/dev/null
}

# Prints a rapport config of a benchmark's own: topics bench.NAME.events,
# .events.dlq and .alerts (bench/run deletes bench.* at its end), the store
# in DATA_DIR, consumer group bench-NAME, warnings only. Append more tables
# (not [kafka], [topics], [store], [run] or [log]) after it.
bench_config() {  # name data_dir
  cat <<TOML
[kafka]
brokers = "127.0.0.1:${KAFKA_PORT:-9092}"
[topics]
events = "bench.$1.events"
dead_letter = "bench.$1.events.dlq"
alerts = "bench.$1.alerts"
[store]
data_dir = "$2"
[run]
group_id = "bench-$1"
[log]
level = "warn"
TOML
}

# A TCP port free on 127.0.0.1 now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Deletes every topic the benchmarks made (bench.*): the local broker keeps
# records forever, and each partition holds open files. Warns if it cannot.
bench_delete_topics() {
  java -cp "$("$repo/ops/kafka" libs 2>/dev/null)/*" -Dlog4j.configuration="file:$repo/ops/broker/log4j.properties" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:${KAFKA_PORT:-9092}" --delete --topic 'bench\..*' \
    >"${TMPDIR:-/tmp}/bench-delete-topics.log" 2>&1 ||
    echo "bench: warning: could not delete the bench.* topics (see ${TMPDIR:-/tmp}/bench-delete-topics.log)" >&2
}
