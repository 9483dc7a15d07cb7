// A candidate for the API's HTTP library, for bench/http_candidates/compare only.
// Candidate: Boost.Beast, asynchronous, one io_context run by N threads.

// Boost 1.74's Asio needs <utility> first with GCC 12 in C++20.
// clang-format off
#include <utility>
// clang-format on

#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>
namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
static std::string body;
class Session : public std::enable_shared_from_this<Session> {
 public:
  explicit Session(tcp::socket s) : stream_(std::move(s)) {}
  void Read() {
    req_ = {};
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buf_, req_, beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }
  void OnRead(beast::error_code ec, size_t) {
    if (ec) return;
    res_ = http::response<http::string_body>(http::status::ok, req_.version());
    res_.set(http::field::content_type, "application/json");
    res_.keep_alive(req_.keep_alive());
    res_.body() = body;
    res_.prepare_payload();
    http::async_write(stream_, res_, beast::bind_front_handler(&Session::OnWrite, shared_from_this()));
  }
  void OnWrite(beast::error_code ec, size_t) {
    if (ec || !res_.keep_alive()) return;
    Read();
  }

 private:
  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
};
void Accept(tcp::acceptor& a, asio::io_context& io) {
  a.async_accept(asio::make_strand(io), [&](beast::error_code ec, tcp::socket s) {
    if (!ec) std::make_shared<Session>(std::move(s))->Read();
    Accept(a, io);
  });
}
int main(int argc, char** argv) {
  int port = std::stoi(argv[1]);
  int threads = std::stoi(argv[2]);
  body.assign(std::stoi(argv[3]), 'x');
  body.front() = '"';
  body.back() = '"';
  asio::io_context io(threads);
  tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
  Accept(a, io);
  std::vector<std::thread> ts;
  for (int i = 1; i < threads; ++i) ts.emplace_back([&] { io.run(); });
  io.run();
}
