#include "rapport/api/http_server.h"

// Boost 1.74's Asio uses std::exchange without including <utility> (fixed
// in later Boost); include it first.
// clang-format off
#include <utility>
// clang-format on

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast.hpp>
#include <boost/beast/ssl.hpp>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <unordered_map>

#include "fmt/format.h"
#include "nlohmann/json.hpp"
#include "rapport/base/logging.h"

namespace rapport::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// What every session shares with the server.
struct Core {
  ServerOptions options;
  Handler handler;
  asio::thread_pool workers;
  std::atomic<size_t> in_flight{0};
  std::atomic<bool> stopping{false};
  std::shared_ptr<spdlog::logger> log = ModuleLogger("api");

  // Open sessions, so that shutdown can close the idle ones.
  std::mutex sessions_mutex;
  uint64_t next_session = 0;
  std::unordered_map<uint64_t, std::function<void()>> closers;

  size_t OpenSessions() {
    std::lock_guard lock(sessions_mutex);
    return closers.size();
  }

  Core(ServerOptions o, Handler h)
      : options(std::move(o)), handler(std::move(h)), workers(static_cast<size_t>(std::max(1, options.workers))) {}
};

HttpRequest ToRequest(const http::request<http::string_body>& in, bool loopback, bool& ok) {
  HttpRequest out;
  out.method = std::string(in.method_string());
  out.target = std::string(in.target());
  out.from_loopback = loopback;
  for (const auto& field : in) {
    std::string name(field.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(field.value());
  }
  out.body = in.body();
  std::string_view target(in.target().data(), in.target().size());
  size_t question = target.find('?');
  std::string_view raw_path = target.substr(0, question);
  ok = PercentDecode(raw_path, false, out.path) && !raw_path.empty() && raw_path.front() == '/';
  for (std::string_view rest = ok ? raw_path.substr(1) : std::string_view(); ok;) {
    size_t slash = rest.find('/');
    ok = PercentDecode(rest.substr(0, slash), false, out.segments.emplace_back());
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (ok && question != std::string_view::npos) {
    std::string_view query = target.substr(question + 1);
    while (ok && !query.empty()) {
      size_t amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      size_t eq = pair.find('=');
      std::string name, value;
      ok = PercentDecode(pair.substr(0, eq), true, name) &&
           (eq == std::string_view::npos || PercentDecode(pair.substr(eq + 1), true, value));
      if (!name.empty()) out.query.emplace(std::move(name), std::move(value));
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    }
  }
  return out;
}

// The answer to a read that failed with `ec`, or nullopt when there is no
// one to answer (the peer left, timed out, or shutdown cancelled the read).
std::optional<HttpResponse> ReadErrorResponse(beast::error_code ec, const ServerOptions& options) {
  if (ec == http::error::body_limit) {
    return ErrorResponse(413, "payload_too_large",
                         fmt::format("the body is larger than {} bytes", options.max_body_bytes));
  }
  if (ec == http::error::header_limit) {
    return ErrorResponse(431, "headers_too_large",
                         fmt::format("the request line and headers exceed {} bytes", options.max_header_bytes));
  }
  if (ec.category() == beast::error_code(http::error::end_of_stream).category() && ec != http::error::end_of_stream &&
      ec != http::error::partial_message) {
    return ErrorResponse(400, "malformed_request", "not a valid HTTP/1.1 request: " + ec.message());
  }
  return std::nullopt;
}

std::optional<HttpResponse> TooLargeBody(const http::request_parser<http::string_body>& parser,
                                         const ServerOptions& options) {
  if (auto length = parser.content_length(); length && *length > options.max_body_bytes) {
    return ErrorResponse(413, "payload_too_large",
                         fmt::format("the body is {} bytes; at most {} are accepted", *length, options.max_body_bytes));
  }
  return std::nullopt;
}

const HttpResponse kMalformedTarget =
    ErrorResponse(400, "malformed_request", "the URL's path must start with '/' and its %-escapes be valid");

template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(Stream stream, Core& core, bool loopback) : stream_(std::move(stream)), core_(core), loopback_(loopback) {}

  ~Session() {
    std::lock_guard lock(core_.sessions_mutex);
    core_.closers.erase(id_);
  }

  void Start() {
    {
      std::lock_guard lock(core_.sessions_mutex);
      id_ = core_.next_session++;
      std::weak_ptr<Session> weak = this->shared_from_this();
      core_.closers[id_] = [weak] {
        if (auto self = weak.lock()) {
          asio::post(self->stream_.get_executor(), [self] {
            if (!self->busy_) beast::get_lowest_layer(self->stream_).cancel();
          });
        }
      };
    }
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      beast::get_lowest_layer(stream_).expires_after(core_.options.request_timeout);
      stream_.async_handshake(asio::ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
        if (!ec) self->ReadHeader();
      });
    } else {
      ReadHeader();
    }
  }

 private:
  void ReadHeader() {
    if (core_.stopping) return Close();
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(core_.options.max_header_bytes));
    parser_->body_limit(core_.options.max_body_bytes);
    beast::get_lowest_layer(stream_).expires_after(core_.options.request_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    if (auto too_large = TooLargeBody(*parser_, core_.options)) return Reply(std::move(*too_large), false);
    if (beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
      auto proceed = std::make_shared<http::response<http::empty_body>>(http::status::continue_, 11);
      http::async_write(stream_, *proceed, [self = this->shared_from_this(), proceed](beast::error_code e, size_t) {
        if (e) return self->Close();
        self->ReadBody();
      });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnRequest(ec); });
  }

  void OnReadError(beast::error_code ec) {
    if (auto answer = ReadErrorResponse(ec, core_.options)) return Reply(std::move(*answer), false);
    Close();  // the peer left, timed out, or shutdown cancelled an idle read
  }

  void OnRequest(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    auto request = parser_->release();
    bool ok = true;
    HttpRequest converted = ToRequest(request, loopback_, ok);
    const bool keep_alive = request.keep_alive();
    if (!ok) return Reply(kMalformedTarget, keep_alive);
    if (core_.in_flight.fetch_add(1) >= core_.options.max_in_flight) {
      core_.in_flight.fetch_sub(1);
      return Reply(
          ErrorResponse(429, "too_many_requests",
                        fmt::format("more than {} requests in flight; retry shortly", core_.options.max_in_flight)),
          keep_alive);
    }
    busy_ = true;
    if (core_.handler.quick && core_.handler.quick(converted)) {
      // Quick: answered here on the I/O thread, sparing two thread hand-offs.
      HttpResponse response = Call(core_, converted);
      core_.in_flight.fetch_sub(1);
      return Reply(std::move(response), keep_alive);
    }
    asio::post(core_.workers, [self = this->shared_from_this(), converted = std::move(converted), keep_alive] {
      HttpResponse response = Call(self->core_, converted);
      asio::post(self->stream_.get_executor(), [self, response = std::move(response), keep_alive]() mutable {
        self->core_.in_flight.fetch_sub(1);
        self->Reply(std::move(response), keep_alive);
      });
    });
  }

  static HttpResponse Call(Core& core, const HttpRequest& request) {
    try {
      return core.handler.handle(request);
    } catch (const std::exception& e) {  // a bug: answer and log rather than die
      core.log->error("{} {}: {}", request.method, request.target, e.what());
      return ErrorResponse(500, "internal", "the server failed to handle this request");
    }
  }

  void Reply(HttpResponse in, bool keep_alive) {
    busy_ = true;
    keep_alive = keep_alive && !core_.stopping;
    response_ = {};
    response_.result(static_cast<unsigned>(in.status));
    response_.version(11);
    response_.set(http::field::server, "rapport");
    response_.set(http::field::content_type, in.content_type);
    for (auto& [name, value] : in.headers) response_.set(name, value);
    response_.body() = std::move(in.body);
    response_.keep_alive(keep_alive);
    response_.prepare_payload();
    http::async_write(stream_, response_, [self = this->shared_from_this(), keep_alive](beast::error_code ec, size_t) {
      self->busy_ = false;
      if (ec || !keep_alive) return self->Close();
      self->ReadHeader();
    });
  }

  void Close() {
    beast::error_code ignored;
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    } else {
      stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    }
    beast::get_lowest_layer(stream_).close();
  }

  Stream stream_;
  Core& core_;
  bool loopback_;
  uint64_t id_ = 0;
  bool busy_ = false;  // a request is being handled or answered (touched on the strand only)
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;
};

}  // namespace

std::variant<HttpRequest, HttpResponse> ParseHttpRequest(std::string_view bytes, const ServerOptions& options,
                                                         bool loopback) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<uint32_t>(options.max_header_bytes));
  parser.body_limit(options.max_body_bytes);
  parser.eager(true);
  beast::error_code ec;
  bool header_checked = false;
  // The bytes ending inside a request: as if the peer closed the connection
  // there (put_eof asserts that something came).
  auto end_of_bytes = [&] {
    if (parser.got_some()) parser.put_eof(ec);
    if (!ec && !parser.is_done()) ec = http::error::partial_message;
  };
  while (!ec && !parser.is_done()) {
    if (bytes.empty()) {
      end_of_bytes();
      break;
    }
    const size_t used = parser.put(asio::buffer(bytes.data(), bytes.size()), ec);
    bytes.remove_prefix(used);
    if (ec == http::error::need_more) {
      ec = {};
      if (used == 0) {
        end_of_bytes();
        break;
      }
    }
    if (!ec && parser.is_header_done() && !header_checked) {
      header_checked = true;
      if (auto too_large = TooLargeBody(parser, options)) return std::move(*too_large);
    }
  }
  if (ec) {
    if (auto answer = ReadErrorResponse(ec, options)) return std::move(*answer);
    return ErrorResponse(400, "malformed_request", "not a whole HTTP/1.1 request: " + ec.message());
  }
  bool ok = true;
  HttpRequest request = ToRequest(parser.get(), loopback, ok);
  if (!ok) return kMalformedTarget;
  return request;
}

std::string HttpRequest::Header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

const std::string* HttpRequest::Param(const std::string& name) const {
  auto it = query.lower_bound(name);  // equal keys keep their order: the first sent
  return it == query.end() || it->first != name ? nullptr : &it->second;
}

HttpResponse ErrorResponse(int status, std::string_view code, std::string_view message, std::string_view field) {
  nlohmann::ordered_json error = {{"code", code}, {"message", message}};
  if (!field.empty()) error["field"] = field;
  HttpResponse response;
  response.status = status;
  response.body =
      nlohmann::ordered_json{{"error", error}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

bool PercentDecode(std::string_view in, bool plus_is_space, std::string& out) {
  out.clear();
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%') {
      if (i + 2 >= in.size()) return false;
      int high = hex(in[i + 1]);
      int low = hex(in[i + 2]);
      if (high < 0 || low < 0) return false;
      out += static_cast<char>(high * 16 + low);
      i += 2;
    } else if (plus_is_space && in[i] == '+') {
      out += ' ';
    } else {
      out += in[i];
    }
  }
  return true;
}

struct HttpServer::Impl {
  explicit Impl(ServerOptions options, Handler handler)
      : core(std::move(options), std::move(handler)),
        io(std::max(1, core.options.io_threads)),
        accepting(asio::make_strand(io)),
        acceptor(accepting),
        tls(asio::ssl::context::tls_server) {}

  Core core;
  asio::io_context io;
  // Keeps io.run() going while no socket operation is pending, such as
  // during shutdown when handlers still have answers to post back.
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  // Accepting, its pauses and its closing at shutdown run on one strand.
  asio::strand<asio::io_context::executor_type> accepting;
  tcp::acceptor acceptor;
  asio::ssl::context tls;
  bool use_tls = false;
  std::vector<std::thread> threads;
  bool shut_down = false;

  // Accept errors that pass (out of file descriptors or memory) pause
  // accepting for a while, doubling up to kMaxAcceptPause: the listening
  // socket stays readable, so retrying at once would spin on the error.
  static constexpr std::chrono::milliseconds kFirstAcceptPause{10}, kMaxAcceptPause{1000};
  asio::steady_timer accept_pause{accepting};
  std::chrono::milliseconds next_pause = kFirstAcceptPause;
  uint64_t accept_failures = 0;  // since the last accepted connection
  uint64_t refused = 0;          // connections over max_connections, since the last warning
  std::chrono::steady_clock::time_point last_refusal_warning{};

  void Accept() {
    acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (ec) return PauseAccepting(ec);
      if (accept_failures > 0) {
        core.log->info("accepting connections again after {} failures", accept_failures);
        accept_failures = 0;
        next_pause = kFirstAcceptPause;
      }
      if (core.OpenSessions() >= core.options.max_connections) {
        Refuse(std::move(socket));
      } else {
        beast::error_code ignored;
        auto peer = socket.remote_endpoint(ignored);
        bool loopback = !ignored && peer.address().is_loopback();
        socket.set_option(tcp::no_delay(true), ignored);
        if (use_tls) {
          std::make_shared<Session<TlsStream>>(TlsStream(beast::tcp_stream(std::move(socket)), tls), core, loopback)
              ->Start();
        } else {
          std::make_shared<Session<PlainStream>>(PlainStream(std::move(socket)), core, loopback)->Start();
        }
      }
      Accept();
    });
  }

  void PauseAccepting(beast::error_code ec) {
    if (accept_failures++ == 0) {
      core.log->warn(
          "accepting a connection failed: {}; pausing accept up to {} ms at a time until it works (raise "
          "the open-file limit, `ulimit -n`, or lower [api] max_connections)",
          ec.message(), kMaxAcceptPause.count());
    }
    accept_pause.expires_after(next_pause);
    next_pause = std::min(next_pause * 2, kMaxAcceptPause);
    accept_pause.async_wait([this](beast::error_code wait) {
      if (!wait && acceptor.is_open()) Accept();
    });
  }

  // Over max_connections: a short 503 if the socket takes it at once (plain
  // HTTP only; nothing waits on a slow peer), then closed.
  void Refuse(tcp::socket socket) {
    static const std::string kBusy = [] {
      const std::string body =
          ErrorResponse(503, "too_many_connections", "the server holds as many connections as it may; retry shortly")
              .body;
      return fmt::format(
          "HTTP/1.1 503 Service Unavailable\r\nServer: rapport\r\nContent-Type: application/json\r\n"
          "Retry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
          body.size(), body);
    }();
    beast::error_code ignored;
    if (!use_tls) {
      socket.non_blocking(true, ignored);
      socket.write_some(asio::buffer(kBusy), ignored);
    }
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
    ++refused;
    if (auto now = std::chrono::steady_clock::now(); now - last_refusal_warning > std::chrono::seconds(10)) {
      core.log->warn("refused {} connections: {} are open, as many as [api] max_connections allows", refused,
                     core.options.max_connections);
      refused = 0;
      last_refusal_warning = now;
    }
  }
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Shutdown(std::chrono::seconds(10)); }

Result<std::unique_ptr<HttpServer>> HttpServer::Start(ServerOptions options, Handler handler) {
  auto impl = std::make_unique<Impl>(std::move(options), std::move(handler));
  const ServerOptions& o = impl->core.options;
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("api: TLS needs both tls_cert_file and tls_key_file");
  }
  if (!o.tls_cert_file.empty()) {
    beast::error_code ec;
    impl->tls.use_certificate_chain_file(o.tls_cert_file, ec);
    if (ec) return absl::InvalidArgumentError(fmt::format("api: tls_cert_file {}: {}", o.tls_cert_file, ec.message()));
    impl->tls.use_private_key_file(o.tls_key_file, asio::ssl::context::pem, ec);
    if (ec) return absl::InvalidArgumentError(fmt::format("api: tls_key_file {}: {}", o.tls_key_file, ec.message()));
    impl->tls.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                          asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    impl->use_tls = true;
  }
  beast::error_code ec;
  auto address = asio::ip::make_address(o.address, ec);
  if (ec) return absl::InvalidArgumentError(fmt::format("api: \"{}\" is not an IP address", o.address));
  tcp::endpoint endpoint(address, o.port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(fmt::format("api: cannot listen on {}:{}: {}", o.address, o.port, ec.message()));
  }
  impl->Accept();
  for (int i = 0; i < std::max(1, o.io_threads); ++i) impl->threads.emplace_back([io = &impl->io] { io->run(); });
  impl->core.log->info("serving {} on {}:{}", impl->use_tls ? "https" : "http", o.address,
                       impl->acceptor.local_endpoint().port());
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

uint16_t HttpServer::port() const {
  beast::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

void HttpServer::Shutdown(std::chrono::milliseconds drain) {
  Impl& s = *impl_;
  if (s.shut_down) return;
  s.shut_down = true;
  s.core.stopping = true;
  asio::post(s.accepting, [&s] {
    beast::error_code ignored;
    s.acceptor.close(ignored);
    s.accept_pause.cancel();
  });
  // Requests in flight finish and are answered (with Connection: close).
  auto deadline = std::chrono::steady_clock::now() + drain;
  while (s.core.in_flight.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (s.core.in_flight.load() > 0) s.core.log->warn("{} requests still in flight at shutdown", s.core.in_flight.load());
  std::vector<std::function<void()>> closers;
  {
    std::lock_guard lock(s.core.sessions_mutex);
    for (auto& [id, close] : s.core.closers) closers.push_back(close);
  }
  for (auto& close : closers) close();
  // Let answers being written finish, then stop.
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(s.core.sessions_mutex);
      if (s.core.closers.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  s.io.stop();
  for (auto& t : s.threads) t.join();
  s.core.workers.join();
}

}  // namespace rapport::api
