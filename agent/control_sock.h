/* SPDX-License-Identifier: MIT */
/*
 * The agent's control socket: a unix stream socket, 0600, root only (the
 * peer's credentials are checked too). One JSON request per connection,
 * one JSON reply: {"cmd":"add","config":{…}} | {"cmd":"list"} |
 * {"cmd":"del","id":"…"}.
 */
#ifndef PYDI_CONTROL_SOCK_H
#define PYDI_CONTROL_SOCK_H

#include <jansson.h>
#include <stddef.h>

#define CONTROL_SOCKET_DEFAULT	"/run/pydi/agent.sock"
#define CONTROL_REQUEST_MAX	(1 << 20)

/* Bind and listen; refuses (-EADDRINUSE) while another agent answers on
 * path. Returns the listening fd or -errno. */
int control_listen(const char *path, char *err, size_t err_len);

/* Accept one client and read its request. 0 with *request and *client_fd;
 * -EACCES (refused peer, already answered) or another -errno. */
int control_accept(int listen_fd, json_t **request, int *client_fd, char *err,
		   size_t err_len);
/* Write the reply and close the client. Takes reply. */
void control_reply(int client_fd, json_t *reply);

/* Client: one request, one reply. */
int control_call(const char *path, json_t *request, json_t **reply, char *err,
		 size_t err_len);

#endif /* PYDI_CONTROL_SOCK_H */
