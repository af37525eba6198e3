// SPDX-License-Identifier: MIT
/*
 * pydi agent: the host daemon. Discovers CPython services, takes probe
 * configurations from the DI API, a watched directory and the control
 * socket, instruments every matching process, reports statuses and exports
 * snapshots. SIGTERM reverts every target; if the agent dies, the lease
 * reverts them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "agent_config.h"
#include "caps.h"
#include "clock.h"
#include "config_dir.h"
#include "control_sock.h"
#include "di_api.h"
#include "discovery.h"
#include "errbuf.h"
#include "exporter.h"
#include "main.h"
#include "metrics.h"
#include "probe_config.h"
#include "probe_manager.h"

#define TICK_MS			100	/* what is overdue is looked at this often */
#define MAX_SLEEP_MS		1000
#define DIR_DEBOUNCE_MS		100
#define DIR_BACKSTOP_MS		5000	/* look for changes even without events */
#define METRICS_EVERY_MS	1000
#define RINGBUF_BYTES		(4u << 20)	/* mapped twice by the consumer: RSS */
#define DI_MAX_RESPONSE		(4u << 20)	/* per answer; several may be open */

enum source_tag { TAG_ENGINE = 1, TAG_DISCOVERY, TAG_DIR, TAG_API, TAG_CONTROL, TAG_SIGNAL };

struct agent {
	struct agent_config cfg;
	struct redactor redactor;
	struct exporter *exporter;
	struct di_api *api;
	struct metrics *metrics;
	struct probe_manager *pm;
	struct discovery *discovery;
	struct config_dir *dir;
	json_t *dir_files;		/* file name -> last applied content */
	int control_fd;
	int signal_fd;
	int epoll_fd;
	bool exiting;
};

/* --- sources -------------------------------------------------------------- */

static void on_process(void *ctx, pid_t pid, enum discovery_event ev)
{
	struct agent *a = ctx;

	if (pid != getpid())
		pm_process_event(a->pm, pid, ev);
}

static void read_config_dir(struct agent *a)
{
	json_t *files = config_dir_read(a->dir), *content;
	const char *name;
	void *tmp;

	json_object_foreach(files, name, content) {
		json_t *error = json_object_get(content, "error");
		json_t *before = json_object_get(a->dir_files, name);

		if (before && json_equal(before, content))
			continue;
		if (error) {
			/* A broken edit keeps what the file said before. */
			fprintf(stderr, "pydi agent: %s/%s: %s (keeping its previous probes)\n",
				a->cfg.config_dir, name, json_string_value(error));
			json_object_set(a->dir_files, name, content);
			continue;
		}
		pm_set_configs(a->pm, "dir", name, NULL, NULL, content);
		json_object_set(a->dir_files, name, content);
	}
	json_object_foreach_safe(a->dir_files, tmp, name, content) {
		if (json_object_get(files, name))
			continue;
		pm_set_configs(a->pm, "dir", name, NULL, NULL, NULL);
		json_object_del(a->dir_files, name);
	}
	json_decref(files);
}

static void take_api_updates(struct agent *a)
{
	struct di_update *list = di_api_take_updates(a->api);

	for (struct di_update *u = list; u; u = u->next) {
		char scope[640];

		snprintf(scope, sizeof(scope), "%s|%s|%s", u->service, u->environment, u->type);
		pm_set_configs(a->pm, "api", scope, u->service, u->environment, u->configs);
	}
	di_update_free(list);
}

static json_t *handle_request(struct agent *a, json_t *req)
{
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	char err[512] = "", id[PROBE_ID_MAX];
	int ret;

	if (!cmd)
		return json_pack("{s:b,s:s}", "ok", 0, "error", "request without \"cmd\"");
	if (strcmp(cmd, "list") == 0)
		return pm_list(a->pm);
	if (strcmp(cmd, "add") == 0) {
		ret = pm_add_config(a->pm, json_object_get(req, "config"), id, sizeof(id), err,
				    sizeof(err));
		if (ret)
			return json_pack("{s:b,s:s}", "ok", 0, "error", err[0] ? err : strerror(-ret));
		return json_pack("{s:b,s:s}", "ok", 1, "id", id);
	}
	if (strcmp(cmd, "del") == 0) {
		const char *pid = json_string_value(json_object_get(req, "id"));

		if (!pid)
			return json_pack("{s:b,s:s}", "ok", 0, "error", "del needs an \"id\"");
		if (pm_del_config(a->pm, pid))
			return json_pack("{s:b,s:s+}", "ok", 0, "error", "no probe added with id ", pid);
		return json_pack("{s:b}", "ok", 1);
	}
	return json_pack("{s:b,s:s+}", "ok", 0, "error", "unknown command ", cmd);
}

static void serve_control(struct agent *a)
{
	char err[256] = "";
	json_t *req;
	int client;

	if (control_accept(a->control_fd, &req, &client, err, sizeof(err))) {
		if (err[0])
			fprintf(stderr, "pydi agent: %s\n", err);
		return;
	}
	control_reply(client, handle_request(a, req));
	json_decref(req);
}

static void publish_metrics(struct agent *a)
{
	struct exporter_counters ec;
	struct di_api_counters dc = { 0 };
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	if (!out)
		return;
	pm_metrics(a->pm, out);
	exporter_get_counters(a->exporter, &ec);
	if (a->api)
		di_api_get_counters(a->api, &dc);
	fprintf(out, "# HELP pydi_snapshots_exported_total Snapshots the collector accepted.\n"
		"# TYPE pydi_snapshots_exported_total counter\n"
		"pydi_snapshots_exported_total %llu\n"
		"# HELP pydi_snapshots_written_total Snapshots written as JSON lines.\n"
		"# TYPE pydi_snapshots_written_total counter\n"
		"pydi_snapshots_written_total %llu\n"
		"# HELP pydi_export_drops_total Snapshots dropped on the way out, by reason.\n"
		"# TYPE pydi_export_drops_total counter\n"
		"pydi_export_drops_total{reason=\"queue_full\"} %llu\n"
		"pydi_export_drops_total{reason=\"export_failed\"} %llu\n"
		"pydi_export_drops_total{reason=\"write_failed\"} %llu\n"
		"# HELP pydi_export_errors_total Failed OTLP requests.\n"
		"# TYPE pydi_export_errors_total counter\npydi_export_errors_total %llu\n"
		"# HELP pydi_di_api_errors_total DI API requests that failed.\n"
		"# TYPE pydi_di_api_errors_total counter\n"
		"pydi_di_api_errors_total{call=\"list\"} %llu\n"
		"pydi_di_api_errors_total{call=\"report\"} %llu\n",
		(unsigned long long)ec.exported, (unsigned long long)ec.written,
		(unsigned long long)ec.dropped_queue_full,
		(unsigned long long)ec.dropped_export_failed,
		(unsigned long long)ec.dropped_write_failed,
		(unsigned long long)ec.export_errors, (unsigned long long)dc.poll_errors,
		(unsigned long long)dc.report_errors);
	fclose(out);
	metrics_publish(a->metrics, text);
	free(text);
}

/* --- start, loop, stop ------------------------------------------------------ */

static int watch_fd(struct agent *a, int fd, enum source_tag tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = tag };

	if (fd < 0)
		return 0;
	return epoll_ctl(a->epoll_fd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

static int start(struct agent *a, char *err, size_t err_len)
{
	struct exporter_opts eo = {
		.otlp_endpoint = a->cfg.otlp_endpoint, .gzip = a->cfg.otlp_gzip,
		.jsonl_path = a->cfg.jsonl_path, .queue_max = a->cfg.queue_max,
		.batch_max = a->cfg.batch_max, .flush_ms = 1000, .timeout_ms = 10000,
		.max_snapshot_bytes = a->cfg.max_snapshot_bytes,
	};
	struct pm_opts po = {
		.redactor = &a->redactor, .lease_ms = a->cfg.lease_ms,
		.sweep_s = a->cfg.status_sweep_s, .ringbuf_bytes = RINGBUF_BYTES,
	};
	char derr[256];
	sigset_t mask;
	int ret;

	for (char **n = a->cfg.redact_names; n && *n; n++)
		redactor_add_name(&a->redactor, *n);
	for (char **t = a->cfg.redact_types; t && *t; t++)
		redactor_add_type(&a->redactor, *t);
	ret = exporter_start(&a->exporter, &eo, err, err_len);
	if (ret)
		return ret;
	if (a->cfg.api_url) {
		struct di_api_opts ao = {
			.base_url = a->cfg.api_url,
			.breakpoint_poll_s = a->cfg.breakpoint_poll_s,
			.probe_poll_s = a->cfg.probe_poll_s,
			.timeout_ms = a->cfg.api_timeout_ms,
			.max_response_bytes = DI_MAX_RESPONSE,
		};

		ret = di_api_start(&a->api, &ao, err, err_len);
		if (ret)
			return ret;
	}
	if (a->cfg.metrics_listen) {
		ret = metrics_start(&a->metrics, a->cfg.metrics_listen, err, err_len);
		if (ret)
			return ret;
	}
	po.exporter = a->exporter;
	po.api = a->api;
	ret = pm_open(&a->pm, &po, err, err_len);
	if (ret)
		return ret;
	a->control_fd = control_listen(a->cfg.control_socket, err, err_len);
	if (a->control_fd < 0)
		return a->control_fd;
	if (a->cfg.config_dir) {
		ret = config_dir_open(&a->dir, a->cfg.config_dir, err, err_len);
		if (ret)
			return ret;
		a->dir_files = json_object();
	}
	if (discovery_open(&a->discovery, on_process, a, derr, sizeof(derr)))
		fprintf(stderr, "pydi agent: warning: %s; discovery falls back to scanning /proc "
			"every %u s\n", derr, a->cfg.rescan_s);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	a->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	a->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (a->signal_fd < 0 || a->epoll_fd < 0) {
		set_err(err, err_len, "signalfd/epoll: %s", strerror(errno));
		return -errno;
	}
	ret = watch_fd(a, pm_engine_fd(a->pm), TAG_ENGINE) ?:
	      watch_fd(a, discovery_fd(a->discovery), TAG_DISCOVERY) ?:
	      watch_fd(a, a->dir ? config_dir_fd(a->dir) : -1, TAG_DIR) ?:
	      watch_fd(a, a->api ? di_api_fd(a->api) : -1, TAG_API) ?:
	      watch_fd(a, a->control_fd, TAG_CONTROL) ?:
	      watch_fd(a, a->signal_fd, TAG_SIGNAL);
	if (ret)
		set_err(err, err_len, "epoll: %s", strerror(-ret));
	return ret;
}

static void drain_eventfd(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) > 0)
		;
}

/* Until the earliest timer, at most MAX_SLEEP_MS: an idle agent wakes once
 * a second (each wakeup costs it more than the little work it finds). */
static int sleep_ms(uint64_t now, uint64_t due)
{
	if (due <= now)
		return TICK_MS;
	return due - now < MAX_SLEEP_MS ? (int)(due - now) : MAX_SLEEP_MS;
}

static void run(struct agent *a)
{
	uint64_t now = monotonic_ms();
	uint64_t dir_due = a->dir ? now : 0, next_rescan = now, next_metrics = now;
	uint64_t dir_backstop = now + DIR_BACKSTOP_MS;

	fprintf(stderr, "pydi agent: running (DI API %s, OTLP %s, JSON lines %s, config dir %s, "
		"control socket %s)\n", a->cfg.api_url ?: "off", a->cfg.otlp_endpoint ?: "off",
		a->cfg.jsonl_path ?: "off", a->cfg.config_dir ?: "off", a->cfg.control_socket);
	while (!a->exiting) {
		struct epoll_event evs[16];
		uint64_t due = pm_next_due_ns(a->pm) / 1000000;
		int n;

		due_at(&due, next_rescan);
		if (a->dir)
			due_at(&due, dir_backstop);
		if (dir_due)
			due_at(&due, dir_due);
		if (a->metrics)
			due_at(&due, next_metrics);
		n = epoll_wait(a->epoll_fd, evs, 16, sleep_ms(monotonic_ms(), due));

		for (int i = 0; i < n; i++) {
			switch (evs[i].data.u32) {
			case TAG_ENGINE:
				pm_engine_consume(a->pm);
				break;
			case TAG_DISCOVERY:
				if (discovery_consume(a->discovery))
					next_rescan = 0;	/* events were lost */
				break;
			case TAG_DIR:
				if (config_dir_consume(a->dir) && !dir_due)
					dir_due = monotonic_ms() + DIR_DEBOUNCE_MS;
				break;
			case TAG_API:
				drain_eventfd(di_api_fd(a->api));
				take_api_updates(a);
				break;
			case TAG_CONTROL:
				serve_control(a);
				break;
			case TAG_SIGNAL: {
				struct signalfd_siginfo si;

				while (read(a->signal_fd, &si, sizeof(si)) == sizeof(si))
					a->exiting = true;
				break;
			}
			}
		}
		now = monotonic_ms();
		if (now >= next_rescan) {
			discovery_scan(on_process, a);
			next_rescan = now + a->cfg.rescan_s * 1000ull;
		}
		if (a->dir && now >= dir_backstop) {
			if (!dir_due && config_dir_stale(a->dir))
				dir_due = now;
			dir_backstop = now + DIR_BACKSTOP_MS;
		}
		if (dir_due && now >= dir_due) {
			read_config_dir(a);
			dir_due = 0;
		}
		pm_tick(a->pm);
		if (a->metrics && now >= next_metrics) {
			publish_metrics(a);
			next_metrics = now + METRICS_EVERY_MS;
		}
	}
	fprintf(stderr, "pydi agent: stopping: reverting every target\n");
}

static void stop(struct agent *a)
{
	/* Targets first: nothing may stay hooked, whatever else fails. */
	pm_close(a->pm);
	if (a->control_fd >= 0) {
		close(a->control_fd);
		unlink(a->cfg.control_socket);
	}
	discovery_close(a->discovery);
	config_dir_close(a->dir);
	json_decref(a->dir_files);
	if (a->api)
		di_api_stop(a->api);
	if (a->exporter)
		exporter_stop(a->exporter, 2000);
	if (a->metrics)
		metrics_stop(a->metrics);
	if (a->signal_fd >= 0)
		close(a->signal_fd);
	if (a->epoll_fd >= 0)
		close(a->epoll_fd);
	redactor_free(&a->redactor);
	agent_config_free(&a->cfg);
}

static int list_caps(void)
{
	json_t *caps = json_array();

	for (size_t i = 0; i < agent_caps_count; i++) {
		if (!json_output)
			printf("%-22s %s\n", agent_caps[i].name, agent_caps[i].why);
		json_array_append_new(caps, json_pack("{s:s,s:s}", "name", agent_caps[i].name,
						      "why", agent_caps[i].why));
	}
	if (json_output) {
		json_t *j = json_pack("{s:o}", "capabilities", caps);

		json_print(j);
		json_decref(j);
	} else {
		json_decref(caps);
	}
	return EXIT_DONE;
}

static int agent_help(void)
{
	fprintf(stderr,
		"Usage: %s agent [--config FILE]\n"
		"       %s [-j] agent --list-caps\n"
		"\n"
		"       Runs in the foreground until SIGTERM/SIGINT, then reverts every target.\n"
		"       Settings: FILE (schemas/agent-config.schema.json), overridden by\n"
		"       OTEL_AWS_DYNAMIC_INSTRUMENTATION_API_URL, OTEL_AWS_OTLP_LOGS_ENDPOINT,\n"
		"       OTEL_AWS_DYNAMIC_INSTRUMENTATION_BREAKPOINT_POLL_INTERVAL and\n"
		"       OTEL_AWS_DYNAMIC_INSTRUMENTATION_PROBE_POLL_INTERVAL. Without an API\n"
		"       URL it runs on the config directory and the control socket only.\n"
		"\n"
		"Examples:\n"
		"       %s agent --config /etc/pydi/agent.json\n"
		"       %s probe add --service checkout app.orders:price_order\n",
		bin_name, bin_name, bin_name, bin_name);
	return EXIT_DONE;
}

int do_agent(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config",	required_argument, NULL, 'c' },
		{ "list-caps",	no_argument,	   NULL, 'L' },
		{ "help",	no_argument,	   NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent a = { .control_fd = -1, .signal_fd = -1, .epoll_fd = -1 };
	const char *config_path = NULL;
	char err[512] = "";
	int opt, ret;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc + 1, argv - 1, "c:h", options, NULL)) >= 0) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'L':
			return list_caps();
		case 'h':
			return agent_help();
		default:
			p_err("usage: %s agent [--config FILE] | agent --list-caps", bin_name);
			return EXIT_USAGE;
		}
	}
	if (optind - 1 != argc) {
		p_err("usage: %s agent [--config FILE] | agent --list-caps", bin_name);
		return EXIT_USAGE;
	}
	if (caps_check(err, sizeof(err))) {
		p_err("cannot start: %s", err);
		return EXIT_CANNOT_ATTACH;
	}
	ret = agent_config_load(config_path, &a.cfg, err, sizeof(err));
	if (ret) {
		p_err("%s", err);
		agent_config_free(&a.cfg);
		return EXIT_USAGE;
	}
	ret = start(&a, err, sizeof(err));
	if (ret) {
		p_err("cannot start: %s", err);
		stop(&a);
		return EXIT_CANNOT_ATTACH;
	}
	run(&a);
	stop(&a);
	return EXIT_DONE;
}
