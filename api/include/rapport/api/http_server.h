#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "rapport/base/status.h"

namespace rapport::api {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as sent: path and query
  std::string path;    // percent-decoded, without the query
  // The path split at '/' and then decoded, so "%2F" inside an id stays in
  // its segment. "/v1/customers/a%2Fb" -> {"v1", "customers", "a/b"}.
  std::vector<std::string> segments;
  std::multimap<std::string, std::string> query;  // percent-decoded; '+' is a space
  std::map<std::string, std::string> headers;     // names in lower case
  std::string body;
  bool from_loopback = false;  // the peer is 127.0.0.0/8 or ::1

  std::string Header(const std::string& lower_case_name) const;
  // The first value of a query parameter, if present.
  const std::string* Param(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// {"error":{"code":..,"message":..,"field":..}} with `status`; `field` is left
// out when empty. Every error rapport's API answers has this shape.
HttpResponse ErrorResponse(int status, std::string_view code, std::string_view message, std::string_view field = {});

struct ServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 8080;  // 0: any free port (see HttpServer::port)
  int io_threads = 2;    // accept, parse and write (never block)
  int workers = 8;       // run handlers, which may wait (reads after a position, ingest acks)
  size_t max_body_bytes = 1 << 20;
  size_t max_header_bytes = 16 << 10;
  // A connection that has not sent a whole request in this time is closed:
  // it bounds slow senders and idle keep-alive connections alike.
  std::chrono::milliseconds request_timeout{30000};
  // Requests being handled at once; more are answered 429 at once.
  size_t max_in_flight = 256;
  // Open connections; one more is answered 503 and closed (over TLS: closed)
  // at once, so that idle clients cannot take every file descriptor.
  size_t max_connections = 1024;
  // Both set: serve HTTPS only (PEM files).
  std::string tls_cert_file;
  std::string tls_key_file;
};

// What answers requests. `handle` runs on a worker thread for every
// well-formed request, unless `quick` (optional) says the request never
// waits (a point read): then it runs on the I/O thread that read it, which
// spares two thread hand-offs. Both are called from many threads at once.
struct Handler {
  std::function<HttpResponse(const HttpRequest&)> handle;
  std::function<bool(const HttpRequest&)> quick;
};

// Reads one request from `bytes` as a connection of the server does (its
// header and body limits, the URL's percent-decoding): the request, or the
// error the server answers instead (400, 413, 431). For the fuzzer and tests.
std::variant<HttpRequest, HttpResponse> ParseHttpRequest(std::string_view bytes, const ServerOptions& options,
                                                         bool loopback);

// An HTTP/1.1 server (Boost.Beast, asynchronous): keep-alive, request size,
// header size, connection and time limits enforced before a handler runs,
// JSON errors for what it rejects itself (400 malformed, 413, 431, 429, 503),
// accepting paused with a back-off while the process is out of file
// descriptors (rather than spinning on the error), and a graceful
// shutdown that stops accepting, lets handlers in flight finish and answer,
// then closes idle connections.
class HttpServer {
 public:
  static Result<std::unique_ptr<HttpServer>> Start(ServerOptions options, Handler handler);
  ~HttpServer();  // Shutdown with a 10 s drain

  uint16_t port() const;
  void Shutdown(std::chrono::milliseconds drain);

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Decodes %XX escapes (and '+' as a space when `plus_is_space`) into `out`;
// false for a malformed escape.
bool PercentDecode(std::string_view in, bool plus_is_space, std::string& out);

}  // namespace rapport::api
