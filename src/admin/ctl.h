/* `gatehouse ctl`: the operator's client for the admin API. It finds the
 * admin address and token the way `serve` does (config file, flags,
 * GATEHOUSE_ADMIN_LISTEN, GATEHOUSE_ADMIN_TOKEN, <data>/admin.token), sends
 * one request per command and prints a human-readable table, or the JSON
 * with --json. Runs in its own process; blocking calls are fine here.
 * Commands live in a table in ctl.c; each subsystem adds its rows. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* What a command implementation gets: where the server is, and its own
 * arguments (after the command words). */
struct gh_ctl {
    char base[160]; /* http://127.0.0.1:9091 */
    char token[300];
    bool json;
    int argc;
    char **argv;
};

/* Sends method path (with body, which may be NULL; not stolen) to the admin
 * API. On success prints the JSON answer with --json or when print is NULL,
 * else calls print(answer). On an error status prints the server's message.
 * Returns the exit code: 0, 1 (refused), 3 (unreachable). */
int gh_ctl_call(struct gh_ctl *c, const char *method, const char *path, json_t *body,
                void (*print)(json_t *answer));

/* Like gh_ctl_call for GET path, but prints nothing: *answer gets the
 * parsed JSON of a 2xx answer (the caller json_decref()s it), else NULL.
 * Returns 0 or the exit code gh_ctl_call would. */
int gh_ctl_fetch(struct gh_ctl *c, const char *path, json_t **answer);

/* Parses the value of --for (a duration with its unit, at least 1s) into
 * whole seconds. A bare number is refused: "10" could be seconds or
 * minutes. Returns 0, or 2 after printing the reason on stderr. */
int gh_ctl_parse_for(const char *value, uint64_t *seconds);

/* Prints "gatehouse ctl: unknown option 'X'" with the nearest of options
 * (NULL-terminated) when one is close, then usage; returns 2. */
int gh_ctl_unknown_option(const char *opt, const char *const *options, const char *usage);

/* Command implementations, one per row of the table in ctl.c. Each returns
 * an exit code (2 for a usage error, with a message on stderr). */
/* @ctl-decls */
/* accounts (ctl_users.c) and the live summary (ctl_top.c) */
int gh_ctl_users_find(struct gh_ctl *c);
int gh_ctl_users_show(struct gh_ctl *c);
int gh_ctl_users_disable(struct gh_ctl *c);
int gh_ctl_users_enable(struct gh_ctl *c);
int gh_ctl_keys_list(struct gh_ctl *c);
int gh_ctl_keys_revoke(struct gh_ctl *c);
int gh_ctl_top(struct gh_ctl *c);
/* shield (ctl_shield.c) */
int gh_ctl_level_show(struct gh_ctl *c);
int gh_ctl_level_pin(struct gh_ctl *c);
int gh_ctl_level_unpin(struct gh_ctl *c);
int gh_ctl_block(struct gh_ctl *c);
int gh_ctl_unblock(struct gh_ctl *c);
int gh_ctl_bans(struct gh_ctl *c);
int gh_ctl_lists(struct gh_ctl *c);
/* gateway (ctl_gateway.c) */
int gh_ctl_quota_set(struct gh_ctl *c);
int gh_ctl_quota_unset(struct gh_ctl *c);
int gh_ctl_quota_show(struct gh_ctl *c);
int gh_ctl_upstreams(struct gh_ctl *c);
int gh_ctl_policy_show(struct gh_ctl *c); /* ctl_policy.c */
int gh_ctl_policy_set(struct gh_ctl *c);
/* status page (ctl_status.c) */
int gh_ctl_incident_create(struct gh_ctl *c);
int gh_ctl_incident_update(struct gh_ctl *c);
int gh_ctl_incident_list(struct gh_ctl *c);
int gh_ctl_component_list(struct gh_ctl *c);
int gh_ctl_component_set(struct gh_ctl *c);
int gh_ctl_component_clear(struct gh_ctl *c);

/* Runs `gatehouse ctl ARGS…`. Returns the exit code: 0 ok, 1 the server
 * refused or failed, 2 usage error, 3 cannot reach the server. */
int gh_ctl_main(int argc, char **argv, char **envp);
