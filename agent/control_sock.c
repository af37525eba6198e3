// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "control_sock.h"
#include "errbuf.h"

/* The agent serves one client at a time: a silent one is cut off soon. A
 * client waits longer, while the agent attaches what it asked for. */
#define SERVER_IO_TIMEOUT_MS	1000
#define CLIENT_IO_TIMEOUT_MS	30000

static int fill_addr(const char *path, struct sockaddr_un *addr, char *err, size_t err_len)
{
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(addr->sun_path)) {
		set_err(err, err_len, "control socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(addr->sun_path, path);
	return 0;
}

/* mkdir -p of the socket's directory, 0755 (the socket itself is 0600). */
static void make_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];

	snprintf(dir, sizeof(dir), "%s", path);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(dir, 0755);
		*p = '/';
	}
}

int control_listen(const char *path, char *err, size_t err_len)
{
	struct sockaddr_un addr;
	int fd, ret;

	ret = fill_addr(path, &addr, err, err_len);
	if (ret)
		return ret;
	make_parent(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
		close(fd);
		set_err(err, err_len, "another agent answers on %s", path);
		return -EADDRINUSE;
	}
	close(fd);
	unlink(path);	/* a stale socket of a dead agent */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* Created 0600 from the start: no window where others can connect. */
	{
		mode_t old = umask(0177);

		ret = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
		umask(old);
	}
	if (ret || chmod(path, 0600) || listen(fd, 16)) {
		ret = -errno;
		set_err(err, err_len, "control socket %s: %s", path, strerror(errno));
		close(fd);
		return ret;
	}
	return fd;
}

static int wait_fd(int fd, short events, uint64_t deadline_ms)
{
	uint64_t now = monotonic_ms();
	struct pollfd pfd = { .fd = fd, .events = events };
	int n;

	if (now >= deadline_ms)
		return -ETIMEDOUT;
	n = poll(&pfd, 1, (int)(deadline_ms - now));
	return n > 0 ? 0 : n == 0 ? -ETIMEDOUT : -errno;
}

/* Read until EOF or a newline ends one JSON document. */
static int read_message(int fd, unsigned int timeout_ms, char **out, char *err,
			size_t err_len)
{
	uint64_t deadline = monotonic_ms() + timeout_ms;
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n;

		if (len + 1 >= cap) {
			char *grown;

			if (cap >= CONTROL_REQUEST_MAX) {
				set_err(err, err_len, "message larger than %d bytes",
					CONTROL_REQUEST_MAX);
				ret = -EMSGSIZE;
				break;
			}
			grown = realloc(buf, cap * 2);
			if (!grown) {
				ret = -ENOMEM;
				break;
			}
			buf = grown;
			cap *= 2;
		}
		ret = wait_fd(fd, POLLIN, deadline);
		if (ret) {
			set_err(err, err_len, "reading the control socket: %s", strerror(-ret));
			break;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			if (n < 0)
				ret = -errno;
			break;
		}
		len += (size_t)n;
		if (memchr(buf + len - (size_t)n, '\n', (size_t)n))
			break;
	}
	if (ret) {
		free(buf);
		return ret;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
}

static int write_all(int fd, const char *text, size_t len)
{
	uint64_t deadline = monotonic_ms() + SERVER_IO_TIMEOUT_MS;

	while (len) {
		ssize_t n = send(fd, text, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EAGAIN) {
			if (wait_fd(fd, POLLOUT, deadline))
				return -ETIMEDOUT;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -errno;
		text += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_json(int fd, json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT);
	int ret;

	if (!text)
		return -ENOMEM;
	ret = write_all(fd, text, strlen(text));
	if (!ret)
		ret = write_all(fd, "\n", 1);
	free(text);
	return ret;
}

void control_reply(int client_fd, json_t *reply)
{
	send_json(client_fd, reply);
	json_decref(reply);
	close(client_fd);
}

int control_accept(int listen_fd, json_t **request, int *client_fd, char *err,
		   size_t err_len)
{
	struct ucred cred;
	socklen_t cred_len = sizeof(cred);
	json_error_t jerr;
	char *text = NULL;
	int fd, ret;

	fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return -errno;
	/* The mode keeps others out; the peer check holds even if it changes. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) || cred.uid != 0) {
		set_err(err, err_len, "control socket: refused uid %d (root only)",
			cred_len == sizeof(cred) ? (int)cred.uid : -1);
		control_reply(fd, json_pack("{s:b,s:s}", "ok", 0, "error",
					    "permission denied: the agent takes commands from root only"));
		return -EACCES;
	}
	ret = read_message(fd, SERVER_IO_TIMEOUT_MS, &text, err, err_len);
	if (ret) {
		close(fd);
		return ret;
	}
	*request = json_loads(text, 0, &jerr);
	free(text);
	if (!json_is_object(*request)) {
		json_decref(*request);
		*request = NULL;
		set_err(err, err_len, "control socket: invalid request: %s", jerr.text);
		control_reply(fd, json_pack("{s:b,s:s}", "ok", 0, "error", "invalid JSON request"));
		return -EINVAL;
	}
	*client_fd = fd;
	return 0;
}

int control_call(const char *path, json_t *request, json_t **reply, char *err,
		 size_t err_len)
{
	struct sockaddr_un addr;
	json_error_t jerr;
	char *text = NULL;
	int fd, ret;

	ret = fill_addr(path, &addr, err, err_len);
	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		ret = -errno;
		set_err(err, err_len, "cannot reach the agent at %s: %s%s", path, strerror(errno),
			errno == ENOENT || errno == ECONNREFUSED ? " (is `pydi agent` running?)" :
			errno == EACCES ? " (root only)" : "");
		close(fd);
		return ret;
	}
	ret = send_json(fd, request);
	if (!ret)
		ret = read_message(fd, CLIENT_IO_TIMEOUT_MS, &text, err, err_len);
	close(fd);
	if (ret) {
		if (!err || !err[0])
			set_err(err, err_len, "talking to the agent: %s", strerror(-ret));
		return ret;
	}
	*reply = json_loads(text, 0, &jerr);
	free(text);
	if (!*reply) {
		set_err(err, err_len, "the agent sent invalid JSON: %s", jerr.text);
		return -EPROTO;
	}
	return 0;
}
