// SPDX-License-Identifier: MIT
/*
 * The Prometheus endpoint: one thread polling the listener and up to
 * CONN_MAX connections at once, HTTP/1.0, one answer per connection. Each
 * connection has CONN_TIMEOUT_MS for its request and its answer, so slow
 * or silent clients hold a slot for that long at most and never keep the
 * others waiting.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "errbuf.h"
#include "metrics.h"

#define CONN_MAX	16
#define CONN_TIMEOUT_MS	2000
#define REQUEST_MAX	4096
#define CONTENT_TYPE	"text/plain; version=0.0.4"

struct conn {
	int fd;				/* -1: free slot */
	uint64_t deadline_ms;
	char req[REQUEST_MAX];
	size_t req_len;
	char *out;			/* the answer, once the request is in */
	size_t out_len, out_off;
};

struct metrics {
	int listen_fd;
	int wake_fd;			/* eventfd: stop */
	pthread_t thread;
	pthread_mutex_t lock;
	char *page;			/* the latest published text */
	struct conn conns[CONN_MAX];
};

/* "HOST:PORT" or "[V6]:PORT" into its parts; an empty host is any address. */
static int split_listen(const char *listen_on, char *host, size_t host_len,
			char *port, size_t port_len)
{
	const char *host_start = listen_on, *host_end, *p;

	if (listen_on[0] == '[') {
		host_start = listen_on + 1;
		host_end = strchr(host_start, ']');
		if (!host_end || host_end[1] != ':')
			return -EINVAL;
		p = host_end + 2;
	} else {
		host_end = strrchr(listen_on, ':');
		if (!host_end || memchr(listen_on, ':', (size_t)(host_end - listen_on)))
			return -EINVAL;	/* no port, or IPv6 without brackets */
		p = host_end + 1;
	}
	if ((size_t)(host_end - host_start) >= host_len || strlen(p) >= port_len ||
	    !*p || strspn(p, "0123456789") != strlen(p) || atol(p) > 65535)
		return -EINVAL;
	memcpy(host, host_start, (size_t)(host_end - host_start));
	host[host_end - host_start] = '\0';
	strcpy(port, p);
	return 0;
}

static int open_listener(const char *listen_on, int *fd_out, char *err, size_t err_len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res, *ai;
	char host[256], port[8];
	int rc, fd = -1, one = 1;

	if (split_listen(listen_on, host, sizeof(host), port, sizeof(port)) < 0) {
		set_err(err, err_len, "metrics: listen address '%s' is not HOST:PORT "
			"or [IPV6]:PORT", listen_on);
		return -EINVAL;
	}
	rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
	if (rc) {
		set_err(err, err_len, "metrics: resolving %s: %s", listen_on, gai_strerror(rc));
		return -EINVAL;
	}
	rc = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0)
			break;
		rc = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		set_err(err, err_len, "metrics: listening on %s: %s", listen_on, strerror(-rc));
		return rc;
	}
	*fd_out = fd;
	return 0;
}

static void conn_close(struct conn *c)
{
	close(c->fd);
	free(c->out);
	c->fd = -1;
	c->out = NULL;
}

static char *answer(int code, const char *reason,
		    const char *type, const char *body, bool head_only, size_t *len)
{
	size_t body_len = strlen(body);
	char *out = NULL;
	int n;

	n = asprintf(&out, "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Connection: close\r\n\r\n%s", code, reason, type, body_len,
		     head_only ? "" : body);
	if (n < 0)
		return NULL;
	*len = (size_t)n;
	return out;
}

/* The request head is in (or is all there will be): prepare the answer. */
static void respond(struct metrics *m, struct conn *c)
{
	char method[16], target[256];
	bool head_only;

	c->req[c->req_len] = '\0';
	if (sscanf(c->req, "%15s %255s", method, target) != 2) {
		c->out = answer(400, "Bad Request", "text/plain", "bad request\n", false,
				&c->out_len);
		return;
	}
	target[strcspn(target, "?")] = '\0';
	head_only = strcmp(method, "HEAD") == 0;
	if ((strcmp(method, "GET") == 0 || head_only) &&
	    (strcmp(target, "/metrics") == 0 || strcmp(target, "/") == 0)) {
		pthread_mutex_lock(&m->lock);
		c->out = answer(200, "OK", CONTENT_TYPE, m->page ? m->page : "", head_only,
				&c->out_len);
		pthread_mutex_unlock(&m->lock);
	} else {
		c->out = answer(404, "Not Found", "text/plain", "not found\n", head_only,
				&c->out_len);
	}
}

static bool head_complete(const struct conn *c)
{
	return strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n");
}

/* Move one connection along; false when it is done with. */
static bool conn_step(struct metrics *m, struct conn *c)
{
	ssize_t n;

	while (!c->out) {
		n = recv(c->fd, c->req + c->req_len, sizeof(c->req) - 1 - c->req_len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n < 0)
			return false;
		c->req_len += (size_t)n;
		c->req[c->req_len] = '\0';
		/* An end of input or a full buffer answers what came. */
		if (n == 0 || head_complete(c) || c->req_len + 1 == sizeof(c->req)) {
			respond(m, c);
			if (!c->out)
				return false;
		}
	}
	while (c->out_off < c->out_len) {
		n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n <= 0)
			return false;
		c->out_off += (size_t)n;
	}
	return false;
}

static void accept_all(struct metrics *m)
{
	for (int i = 0; i < CONN_MAX; i++) {
		struct conn *c = &m->conns[i];

		if (c->fd >= 0)
			continue;
		c->fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (c->fd < 0)
			return;
		c->deadline_ms = monotonic_ms() + CONN_TIMEOUT_MS;
		c->req_len = c->out_len = c->out_off = 0;
		c->req[0] = '\0';
		if (!conn_step(m, c))
			conn_close(c);
	}
}

static void *metrics_main(void *arg)
{
	struct metrics *m = arg;

	for (;;) {
		struct pollfd p[CONN_MAX + 2];
		int slot[CONN_MAX + 2], n = 0, timeout = -1;
		bool full = true;
		uint64_t now = monotonic_ms();

		p[n++] = (struct pollfd){ m->wake_fd, POLLIN, 0 };
		for (int i = 0; i < CONN_MAX; i++) {
			struct conn *c = &m->conns[i];

			if (c->fd < 0) {
				full = false;
				continue;
			}
			if (now >= c->deadline_ms) {
				conn_close(c);	/* too slow */
				full = false;
				continue;
			}
			if (timeout < 0 || (int)(c->deadline_ms - now) < timeout)
				timeout = (int)(c->deadline_ms - now);
			slot[n] = i;
			p[n++] = (struct pollfd){ c->fd, c->out ? POLLOUT : POLLIN, 0 };
		}
		/* All slots busy: new clients wait in the backlog. */
		if (!full) {
			slot[n] = -1;
			p[n++] = (struct pollfd){ m->listen_fd, POLLIN, 0 };
		}
		if (poll(p, (nfds_t)n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents)
			break;
		for (int k = 1; k < n; k++) {
			if (!p[k].revents)
				continue;
			if (slot[k] < 0)
				accept_all(m);
			else if (!conn_step(m, &m->conns[slot[k]]))
				conn_close(&m->conns[slot[k]]);
		}
	}
	return NULL;
}

static void metrics_free(struct metrics *m)
{
	for (int i = 0; i < CONN_MAX; i++)
		if (m->conns[i].fd >= 0)
			conn_close(&m->conns[i]);
	if (m->listen_fd >= 0)
		close(m->listen_fd);
	if (m->wake_fd >= 0)
		close(m->wake_fd);
	pthread_mutex_destroy(&m->lock);
	free(m->page);
	free(m);
}

int metrics_start(struct metrics **out, const char *listen_on, char *err,
		  size_t err_len)
{
	struct metrics *m = calloc(1, sizeof(*m));
	sigset_t all, old;
	int rc;

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->listen_fd = m->wake_fd = -1;
	for (int i = 0; i < CONN_MAX; i++)
		m->conns[i].fd = -1;
	pthread_mutex_init(&m->lock, NULL);
	rc = open_listener(listen_on, &m->listen_fd, err, err_len);
	if (rc < 0)
		goto fail;
	m->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->wake_fd < 0) {
		rc = -errno;
		set_err(err, err_len, "metrics: eventfd: %s", strerror(-rc));
		goto fail;
	}
	/* Signals are for the agent's main thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&m->thread, NULL, metrics_main, m);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0) {
		set_err(err, err_len, "metrics: starting its thread: %s", strerror(-rc));
		goto fail;
	}
	*out = m;
	return 0;
fail:
	metrics_free(m);
	return rc;
}

void metrics_publish(struct metrics *m, const char *text)
{
	char *copy;

	if (!m)
		return;
	copy = strdup(text ? text : "");
	if (!copy)
		return;
	pthread_mutex_lock(&m->lock);
	free(m->page);
	m->page = copy;
	pthread_mutex_unlock(&m->lock);
}

void metrics_stop(struct metrics *m)
{
	uint64_t one = 1;

	if (!m)
		return;
	if (write(m->wake_fd, &one, sizeof(one)) < 0) {
		/* only fails when the counter is already set: it is woken */
	}
	pthread_join(m->thread, NULL);
	metrics_free(m);
}
