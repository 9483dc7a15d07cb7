// The HTTP server on its own: parsing, limits, timeouts, errors, TLS and
// graceful shutdown, with a handler that echoes what it was given.
#include "rapport/api/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <thread>

#include "nlohmann/json.hpp"
#include "rapport/testing/command.h"
#include "rapport/testing/status.h"

namespace rapport::api {
namespace {

using nlohmann::json;

// Sends `text` on a new connection and returns all the server answers until
// it closes the connection (or 5 s pass).
std::string RawExchange(uint16_t port, const std::string& text, int pause_ms = 0) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) return "connect failed";
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  (void)!write(fd, text.data(), text.size());
  if (pause_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
  std::string out;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) out.append(buffer, static_cast<size_t>(n));
  close(fd);
  return out;
}

class Server : public ::testing::Test {
 protected:
  void Start(ServerOptions options = {}) {
    options.port = 0;
    options.max_body_bytes = 1000;
    options.max_header_bytes = 2000;
    // "/quick..." paths run on the I/O thread, the rest on workers: both paths are exercised.
    Handler handler{[this](const HttpRequest& r) { return Echo(r); },
                    [](const HttpRequest& r) { return r.path.rfind("/quick", 0) == 0; }};
    auto started = HttpServer::Start(options, std::move(handler));
    ASSERT_OK(started);
    server_ = std::move(started).value();
  }
  HttpResponse Echo(const HttpRequest& r) {
    ++handled_;
    if (r.path == "/throw") throw std::runtime_error("a bug");
    if (r.path == "/slow") std::this_thread::sleep_for(std::chrono::milliseconds(500));
    json query = json::object();
    for (const auto& [name, value] : r.query) query[name] = value;
    HttpResponse response;
    response.body = json{{"method", r.method}, {"path", r.path}, {"segments", r.segments},
                         {"query", query},     {"body", r.body}, {"loopback", r.from_loopback}}
                        .dump();
    return response;
  }
  httplib::Client Client() { return httplib::Client("127.0.0.1", server_->port()); }

  std::unique_ptr<HttpServer> server_;
  std::atomic<int> handled_{0};
};

TEST_F(Server, DecodesPathSegmentsAndQuery) {
  Start();
  std::string answer = RawExchange(
      server_->port(), "GET /v1/a%2Fb/c%20d?x=1+2&y=%41&flag HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  json echoed = json::parse(answer.substr(answer.find("\r\n\r\n") + 4));
  EXPECT_EQ(echoed["segments"], (json{"v1", "a/b", "c d"}));
  EXPECT_EQ(echoed["path"], "/v1/a/b/c d");
  EXPECT_EQ(echoed["query"], (json{{"x", "1 2"}, {"y", "A"}, {"flag", ""}}));
  EXPECT_EQ(echoed["loopback"], true);
}

TEST_F(Server, LimitsAnswerBeforeTheHandlerRuns) {
  Start();
  std::string too_big = RawExchange(
      server_->port(), "POST /x HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n");
  EXPECT_EQ(too_big.rfind("HTTP/1.1 413", 0), 0u) << too_big;
  EXPECT_NE(too_big.find("\"payload_too_large\""), std::string::npos);
  // Chunked, so the size is only known while reading.
  std::string chunked = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) chunked += "1f4\r\n" + std::string(500, 'x') + "\r\n";
  std::string too_big_chunked = RawExchange(server_->port(), chunked + "0\r\n\r\n");
  EXPECT_EQ(too_big_chunked.rfind("HTTP/1.1 413", 0), 0u) << too_big_chunked;
  std::string long_headers =
      RawExchange(server_->port(), "GET /x HTTP/1.1\r\nHost: h\r\nX-Pad: " + std::string(3000, 'p') + "\r\n\r\n");
  EXPECT_EQ(long_headers.rfind("HTTP/1.1 431", 0), 0u) << long_headers;
  std::string garbage = RawExchange(server_->port(), "HELLO THERE\r\n\r\n");
  EXPECT_EQ(garbage.rfind("HTTP/1.1 400", 0), 0u) << garbage;
  EXPECT_NE(garbage.find("\"malformed_request\""), std::string::npos);
  EXPECT_EQ(handled_.load(), 0);
  // Within limits, with Expect: 100-continue (what curl sends for larger bodies).
  std::string body(900, 'b');
  std::string fits =
      RawExchange(server_->port(), "POST /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: " +
                                       std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
  EXPECT_EQ(fits.rfind("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200", 0), 0u) << fits.substr(0, 200);
  EXPECT_EQ(handled_.load(), 1);
}

TEST_F(Server, ASlowSenderIsCutOffAfterTheRequestTimeout) {
  ServerOptions options;
  options.request_timeout = std::chrono::milliseconds(300);
  Start(options);
  const auto started = std::chrono::steady_clock::now();
  std::string answer = RawExchange(server_->port(), "GET /x HTTP/1.1\r\nHost: h\r\n");  // never finishes
  EXPECT_EQ(answer, "");
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(3));
}

TEST_F(Server, AHandlerFailureIsA500AndTheServerGoesOn) {
  Start();
  auto failed = Client().Get("/throw");
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->status, 500);
  EXPECT_EQ(json::parse(failed->body)["error"]["code"], "internal");
  EXPECT_EQ(Client().Get("/fine")->status, 200);
  EXPECT_EQ(Client().Get("/quick/fine")->status, 200);  // answered on the I/O thread
}

TEST_F(Server, ShutdownLetsRequestsInFlightFinish) {
  Start();
  auto slow = std::async(std::launch::async, [this] { return Client().Get("/slow"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server_->Shutdown(std::chrono::seconds(5));
  auto answered = slow.get();
  ASSERT_TRUE(answered) << httplib::to_string(answered.error());
  EXPECT_EQ(answered->status, 200);
  EXPECT_EQ(answered->get_header_value("Connection"), "close");
  EXPECT_FALSE(Client().Get("/after"));  // no longer accepting
}

TEST_F(Server, ServesHttpsWhenGivenACertificate) {
  const std::string dir = ::testing::TempDir() + "rapport-tls-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  auto made = testing::RunProgram({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                                   "-days", "1", "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  ServerOptions options;
  options.tls_cert_file = dir + "/cert.pem";
  options.tls_key_file = dir + "/key.pem";
  Start(options);
  httplib::SSLClient tls("127.0.0.1", server_->port());
  tls.enable_server_certificate_verification(false);
  auto secure = tls.Get("/over-tls");
  ASSERT_TRUE(secure) << httplib::to_string(secure.error());
  EXPECT_EQ(secure->status, 200);
  EXPECT_EQ(json::parse(secure->body)["path"], "/over-tls");
  EXPECT_FALSE(Client().Get("/plain")) << "plain HTTP on the TLS port";

  options.tls_key_file = dir + "/missing.pem";
  auto bad = HttpServer::Start(options, Handler{[](const HttpRequest&) { return HttpResponse{}; }, {}});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  std::filesystem::remove_all(dir);
}

TEST(PercentDecode, EscapesPlusAndErrors) {
  std::string out;
  EXPECT_TRUE(PercentDecode("a%20b%2fc", false, out));
  EXPECT_EQ(out, "a b/c");
  EXPECT_TRUE(PercentDecode("a+b", true, out));
  EXPECT_EQ(out, "a b");
  EXPECT_TRUE(PercentDecode("a+b", false, out));
  EXPECT_EQ(out, "a+b");
  EXPECT_FALSE(PercentDecode("%", false, out));
  EXPECT_FALSE(PercentDecode("%4", false, out));
  EXPECT_FALSE(PercentDecode("%zz", false, out));
}

}  // namespace
}  // namespace rapport::api
