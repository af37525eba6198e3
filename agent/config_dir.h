/* SPDX-License-Identifier: MIT */
/*
 * A watched directory of probe configurations (a Kubernetes ConfigMap
 * mount, /etc/pydi/probes.d). Each *.json file holds one configuration, an
 * array of them, or {"Service", "Environment", "Configurations": [...]}.
 * ConfigMap updates swap a symlink (..data): any event means "read again".
 */
#ifndef PYDI_CONFIG_DIR_H
#define PYDI_CONFIG_DIR_H

#include <jansson.h>
#include <stdbool.h>

#define CONFIG_FILE_MAX_BYTES	(1 << 20)

struct config_dir;

int config_dir_open(struct config_dir **out, const char *path, char *err,
		    size_t err_len);
void config_dir_close(struct config_dir *cd);
int config_dir_fd(const struct config_dir *cd);	/* inotify */
/* Drain inotify events: true if anything changed. */
bool config_dir_consume(struct config_dir *cd);

/*
 * Read every file: an object mapping file name -> array of configuration
 * objects (a file-level Service/Environment copied into each that lacks
 * them). A file that cannot be read or parsed maps to {"error": "..."}.
 */
json_t *config_dir_read(struct config_dir *cd);

/* Have the files changed since the last read (a stat of each, no read)? The
 * backstop for a change inotify did not report. */
bool config_dir_stale(const struct config_dir *cd);

/* One file's text -> array of configurations, or NULL with err (pure). */
json_t *config_file_parse(const char *text, size_t len, char *err,
			  size_t err_len);

#endif /* PYDI_CONFIG_DIR_H */
