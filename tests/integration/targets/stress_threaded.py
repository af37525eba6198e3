"""An HTTP/1.1 server with a pool of 8 worker threads, each request doing a
little CPU work under the GIL (stdlib only). The main thread runs the accept
loop. Prints "port N threads T" once all workers exist; exits when stdin
closes."""
import http.server
import os
import socketserver
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

WORKERS = 8


def work(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY the body
    # waits for the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def do_GET(self):
        work(2000)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class PoolServer(socketserver.TCPServer):
    allow_reuse_address = True
    # socketserver's default backlog (5) drops some of 8 simultaneous
    # connects: a SYN retransmitted after 1 s looks like a stalled request.
    request_queue_size = 128

    def __init__(self, address, handler):
        super().__init__(address, handler)
        self.pool = ThreadPoolExecutor(WORKERS)

    def process_request(self, request, client_address):
        self.pool.submit(self.serve_one, request, client_address)

    def serve_one(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


def main():
    server = PoolServer(("127.0.0.1", 0), Handler)
    # Start all the workers now, not lazily under load.
    barrier = threading.Barrier(WORKERS + 1)
    for _ in range(WORKERS):
        server.pool.submit(barrier.wait)
    barrier.wait()

    def watch_stdin():
        sys.stdin.read()
        server.shutdown()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"port {server.server_address[1]} threads {threading.active_count()}",
          flush=True)
    server.serve_forever()
    # Workers may still sit on keep-alive connections: do not join them.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
