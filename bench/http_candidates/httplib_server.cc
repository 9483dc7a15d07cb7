// A candidate for the API's HTTP library, for bench/http_candidates/compare only.
// Candidate: cpp-httplib, blocking, thread pool of N (a keep-alive connection holds a thread).
#include <httplib.h>

#include <string>
int main(int argc, char** argv) {
  int port = std::stoi(argv[1]);
  int threads = std::stoi(argv[2]);
  std::string body(std::stoi(argv[3]), 'x');
  body.front() = '"';
  body.back() = '"';
  httplib::Server server;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server.set_keep_alive_max_count(1000000);
  server.set_tcp_nodelay(true);
  server.Get(R"(/v1/customers/([^/]+))",
             [&](const httplib::Request&, httplib::Response& res) { res.set_content(body, "application/json"); });
  server.listen("127.0.0.1", port);
}
