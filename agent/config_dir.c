// SPDX-License-Identifier: MIT
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_dir.h"
#include "errbuf.h"
#include "fnv1a.h"

struct config_dir {
	char *path;
	int inotify_fd;
	uint64_t sig;			/* of the files as last read */
};

int config_dir_open(struct config_dir **out, const char *path, char *err,
		    size_t err_len)
{
	struct config_dir *cd = calloc(1, sizeof(*cd));
	int ret;

	if (!cd)
		return -ENOMEM;
	cd->path = strdup(path);
	cd->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (!cd->path || cd->inotify_fd < 0) {
		ret = -errno;
		set_err(err, err_len, "inotify: %s", strerror(errno));
		goto fail;
	}
	if (inotify_add_watch(cd->inotify_fd, path, IN_CLOSE_WRITE | IN_MOVED_TO |
			      IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB |
			      IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
		ret = -errno;
		set_err(err, err_len, "watching config directory %s: %s", path, strerror(errno));
		goto fail;
	}
	*out = cd;
	return 0;
fail:
	config_dir_close(cd);
	return ret;
}

void config_dir_close(struct config_dir *cd)
{
	if (!cd)
		return;
	if (cd->inotify_fd >= 0)
		close(cd->inotify_fd);
	free(cd->path);
	free(cd);
}

int config_dir_fd(const struct config_dir *cd)
{
	return cd->inotify_fd;
}

bool config_dir_consume(struct config_dir *cd)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool changed = false;

	while (read(cd->inotify_fd, buf, sizeof(buf)) > 0)
		changed = true;
	return changed;
}

static void inherit(json_t *config, json_t *file, const char *key)
{
	json_t *v = json_object_get(file, key);

	if (json_is_string(v) && !json_object_get(config, key))
		json_object_set(config, key, v);
}

json_t *config_file_parse(const char *text, size_t len, char *err, size_t err_len)
{
	json_error_t jerr;
	json_t *root = json_loadb(text, len, 0, &jerr), *list, *out, *c;
	size_t i;

	if (!root) {
		set_err(err, err_len, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
		return NULL;
	}
	if (json_is_array(root)) {
		list = root;
	} else if (json_is_object(root) && json_object_get(root, "Configurations")) {
		list = json_object_get(root, "Configurations");
	} else if (json_is_object(root)) {
		out = json_pack("[O]", root);
		json_decref(root);
		return out;
	} else {
		list = NULL;
	}
	if (!json_is_array(list)) {
		set_err(err, err_len, "expected a configuration, an array of them, or "
			"{\"Configurations\": [...]}");
		json_decref(root);
		return NULL;
	}
	out = json_array();
	json_array_foreach(list, i, c) {
		json_t *copy = json_is_object(c) ? json_deep_copy(c) : json_incref(c);

		if (json_is_object(copy) && list != root) {
			inherit(copy, root, "Service");
			inherit(copy, root, "Environment");
		}
		json_array_append_new(out, copy);
	}
	json_decref(root);
	return out;
}

/* At most CONFIG_FILE_MAX_BYTES of a regular file (symlinks followed: a
 * ConfigMap's files are symlinks into its ..data directory). */
static int read_small_file(int dir_fd, const char *name, char **text, size_t *len)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	ssize_t n;
	size_t got = 0;
	char *buf;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if (st.st_size > CONFIG_FILE_MAX_BYTES) {
		close(fd);
		return -EFBIG;
	}
	buf = malloc(CONFIG_FILE_MAX_BYTES + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (got < CONFIG_FILE_MAX_BYTES &&
	       (n = read(fd, buf + got, CONFIG_FILE_MAX_BYTES - got)) > 0)
		got += (size_t)n;
	close(fd);
	buf[got] = '\0';
	*text = buf;
	*len = got;
	return 0;
}

/* Hidden entries include a ConfigMap's ..data machinery. */
static bool is_config_name(const char *name)
{
	size_t n = strlen(name);

	return name[0] != '.' && n >= 6 && strcmp(name + n - 5, ".json") == 0;
}

/* What the files are (names, and what their symlinks lead to), not what
 * they say: a rewrite changes the inode, the size or the mtime. */
static uint64_t dir_signature(const char *path)
{
	uint64_t h = FNV1A_INIT;
	DIR *dir = opendir(path);
	struct dirent *de;
	struct stat st;

	if (!dir)
		return h;
	while ((de = readdir(dir))) {
		if (!is_config_name(de->d_name))
			continue;
		memset(&st, 0, sizeof(st));
		fstatat(dirfd(dir), de->d_name, &st, 0);
		h = fnv1a(h, de->d_name, strlen(de->d_name) + 1);
		h = fnv1a(h, &st.st_dev, sizeof(st.st_dev));
		h = fnv1a(h, &st.st_ino, sizeof(st.st_ino));
		h = fnv1a(h, &st.st_size, sizeof(st.st_size));
		h = fnv1a(h, &st.st_mtim, sizeof(st.st_mtim));
	}
	closedir(dir);
	return h;
}

bool config_dir_stale(const struct config_dir *cd)
{
	return dir_signature(cd->path) != cd->sig;
}

json_t *config_dir_read(struct config_dir *cd)
{
	json_t *files = json_object();
	DIR *dir;
	struct dirent *de;

	/* Taken first: a change made while reading shows as stale later. */
	cd->sig = dir_signature(cd->path);
	dir = opendir(cd->path);
	if (!dir)
		return files;
	while ((de = readdir(dir))) {
		char err[256], *text = NULL;
		json_t *configs;
		size_t len = 0;
		int ret;

		if (!is_config_name(de->d_name))
			continue;
		ret = read_small_file(dirfd(dir), de->d_name, &text, &len);
		if (ret) {
			json_object_set_new(files, de->d_name, json_pack("{s:s}", "error",
					    ret == -EFBIG ? "file larger than 1 MiB" : strerror(-ret)));
			continue;
		}
		configs = config_file_parse(text, len, err, sizeof(err));
		free(text);
		json_object_set_new(files, de->d_name, configs ? configs :
				    json_pack("{s:s}", "error", err));
	}
	closedir(dir);
	return files;
}
