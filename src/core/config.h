/* Configuration: defaults, an INI file (inih), `--set`-style flags and
 * GATEHOUSE_* environment variables, applied in that order (later wins).
 * A loaded configuration is immutable and reference counted: workers hold a
 * reference, and a reload (SIGHUP) builds a new one and swaps it in whole.
 * Any thread may ref/unref; building one happens on the main thread. */
#pragma once

#include "core/common.h"
#include "core/buf.h"

enum gh_log_level { GH_LOG_DEBUG, GH_LOG_INFO, GH_LOG_WARN, GH_LOG_ERROR };

struct gh_config {
    atomic_int refs;
    char *path; /* the file it came from, or NULL */

    struct {
        char *listen;       /* host:port of the public listener */
        char *admin_listen; /* host:port of the admin listener */
        char *data_dir;
        unsigned workers; /* 0 = one per core */
        uint64_t shutdown_timeout_ms;
        bool reuseport;
        char *public_origin;    /* "https://host[:port]" browsers use; "" = the Host header */
        uint64_t hsts_max_age_ms; /* Strict-Transport-Security max-age; 0 = no header */
    } server;

    struct {
        size_t header_max;          /* url + header bytes of one request (431) */
        unsigned header_count_max;  /* header fields of one request (431) */
        uint64_t header_timeout_ms; /* first byte to complete headers (408) */
        uint64_t idle_timeout_ms;   /* keep-alive wait between requests */
        size_t body_max;            /* default body cap of a route (413) */
        size_t body_min_rate;       /* bytes/s a body must keep up (408) */
        uint64_t body_rate_grace_ms;
        uint64_t body_rate_window_ms; /* body_min_rate holds over each window (408) */
        size_t body_memory;           /* bodies being received, whole process (503) */
        uint64_t linger_time_ms;      /* refused mid-body: read and discard this long at most */
        size_t linger_max;            /* ... and this many bytes at most */
        unsigned requests_per_conn;
        unsigned max_conns;
        unsigned max_conns_per_addr;
        unsigned max_conns_per_shared_addr; /* signed-in users past max_conns_per_addr */
        unsigned max_pending_headers; /* connections without complete headers */
        size_t pipeline_max;          /* unparsed bytes held for a pipelining client */
    } limits;

    struct {
        char *access_log; /* file (relative to data_dir), "-" for stdout, "off" */
        char *error_log;  /* file, "-" for stderr */
        enum gh_log_level level;
        unsigned access_rate;   /* lines per second per worker before sampling */
        unsigned access_sample; /* past that rate, log one request in N */
    } log;

    struct {
        char *hmac_key;    /* 64 hex chars, or empty: generated in data_dir */
        char *enc_key;     /* 64 hex chars, or empty: generated in data_dir */
        char *admin_token; /* or empty: generated in data_dir/admin.token */
        char *file;        /* a shared secrets file (hmac_key=, enc_key=), or empty */
    } secrets;

    struct {
        char *backend; /* sqlite | postgres */
        char *url;     /* postgres: URL or conninfo (its password is never logged) */
        unsigned readers;
        uint64_t connect_timeout_ms;
        uint64_t statement_timeout_ms;
        uint64_t cache_ttl_ms; /* postgres: a cached credential is read again after this */
        bool listen;           /* postgres: hear the other nodes (LISTEN) */
    } store;

    /* limits shared by a cluster's nodes (shield/redis.h); url empty = off */
    struct {
        char *url;               /* redis://HOST[:PORT][/DB] */
        unsigned nodes;          /* the cluster's nodes: a rule's local share is 1/nodes */
        uint64_t timeout_ms;     /* one command, sent to answered */
        unsigned pending_max;    /* commands in flight per worker */
        char *register_mode;     /* local | open | closed: register-class rules, PoW claims */
        char *sms_mode;          /* local | open | closed: the numbers' SMS budgets */
        char *login_mode;        /* local | open | closed: accounts' failed sign-ins */
        char *anon_mode;         /* local | open | closed: the anon class's shared rules */
        uint64_t level_flush_ms; /* a node's attack-level signals to Redis this often */
        char *quota_mode;        /* local | open | closed: the chat API's quotas */
    } redis;

    /* Subsystem sections: each subsystem adds its own struct below its
     * marker (and its keys below the same marker in config.c). */
    /* @identity-fields */
    struct {
        unsigned argon2_ops;       /* 0 = libsodium's OPSLIMIT_INTERACTIVE */
        size_t argon2_mem;         /* 0 = MEMLIMIT_INTERACTIVE */
        unsigned hash_threads;     /* password CPU pool; 0 = one per core */
        unsigned hash_queue_max;   /* jobs waiting per priority */
        uint64_t hash_deadline_ms; /* a job still queued past this: 503 busy */
        uint64_t code_ttl_ms;
        unsigned code_tries;
        uint64_t session_idle_ms;
        uint64_t session_max_ms;
        bool cookie_secure;
        unsigned keys_per_user;
        unsigned cache_max; /* sessions + keys held in memory */
        unsigned sessions_per_user;   /* live sessions per account; the oldest go */
        unsigned logins_per_user_hour; /* successful sign-ins per account per hour */
        uint64_t backoff_base_ms;
        uint64_t backoff_max_ms;
        unsigned sms_only_after;      /* consecutive failures */
        unsigned login_fail_per_addr; /* failed logins per address per hour */
        bool login_tiers;               /* order password logins by source in the pool */
        unsigned login_suspect_after;   /* unresolved logins per /24 (/48) before "suspect" */
        uint64_t suspect_deadline_ms;   /* deadline of a suspect login in the password pool */
        unsigned suspect_queue_max;     /* suspect logins waiting in the password pool */
        bool allow_voip;
        char *policy;  /* initial mode when the store has none */
        char *regions; /* initial allowed regions, "CN,HK" */
        char *msg_restricted_en, *msg_restricted_zh;
        char *msg_busy_en, *msg_busy_zh;
        char *msg_closed_en, *msg_closed_zh;
        uint64_t busy_retry_ms;
        unsigned store_queue_max;
    } identity;
    struct {
        char *sender; /* log | webhook */
        char *webhook_url;
        uint64_t webhook_timeout_ms;
        unsigned webhook_retries;
        uint64_t outbox_lease_ms; /* shared store: an accepted SMS is its node's this long */
        uint64_t cooldown_ms;
        unsigned per_number_day;
        unsigned per_addr_hour;
        unsigned per_net_hour;    /* /24 or /48 */
        unsigned per_prefix_hour; /* number without its last 4 digits */
        unsigned per_cc_hour;     /* calling code */
        unsigned global_hour;
    } sms;
    /* @shield-fields */
    struct {
        bool enabled;                /* classify and limit public requests */
        char *rules;                 /* limiter rules (shield/limiter.h syntax) */
        size_t limiter_memory;       /* bytes of the limiter table */
        char *block_file;            /* CIDR list closed at accept ("" = none) */
        char *allow_file;            /* CIDR list never blocked nor limited */
        size_t list_max;             /* entries per list */
        char *trusted_proxies;       /* CIDRs whose X-Forwarded-For we believe */
        char *proxy_protocol_from;   /* CIDRs of balancers that send a PROXY header */
        unsigned pow_bits;           /* difficulty at the normal level */
        unsigned elevated_pow_bits;  /* at elevated */
        unsigned attack_pow_bits;    /* at under_attack */
        uint64_t pow_ttl_ms;         /* lifetime of a challenge */
        size_t pow_replay_entries;   /* capacity of the replay cache */
        char *attack_regions;        /* regions allowed to register under attack */
        unsigned attack_register_per_minute; /* registration cap under attack */
        uint64_t level_interval_ms;  /* signal period of the attack level */
        unsigned level_calm_periods; /* calm periods before it falls a level */
        char *level_thresholds;      /* signal:elevated:under_attack, … */
        unsigned level_min_events;   /* capped events a signal needs per period */
        unsigned level_min_prefixes; /* distinct /24 (/48) a signal needs per period */
        unsigned level_source_cap;   /* events one /24 (/48) adds to a signal per period */
        uint64_t incident_after_ms;  /* a computed level holds this long before it is public */
        bool shed;                   /* refuse classes under pressure (503 busy) */
        uint64_t shed_queue_delay_ms; /* password-pool queue delay = pressure 1 */
        uint64_t shed_loop_lag_ms;    /* event-loop lag = pressure 1 */
        unsigned ban_after;           /* address/prefix-rule refusals that earn a ban; 0 = none */
        uint64_t ban_window_ms;       /* ... within this long */
        uint64_t ban_time_ms;         /* length of an automatic ban */
        size_t ban_max;               /* bans held (and the kernel sets' size) */
        bool kernel_ban;              /* bans also in an nftables set (needs CAP_NET_ADMIN) */
        char *kernel_ban_table;       /* its table: inet <name> */
    } shield;
    /* @gateway-fields */
    struct {
        bool echo;                   /* the built-in `echo` model */
        uint64_t echo_delay_ms;      /* between two echo tokens */
        unsigned max_tokens_cap;     /* max_tokens above this: 422 */
        char *unknown_fields;        /* request fields outside the allow-list: reject|drop */
        size_t body_max;             /* /v1/chat/completions body cap (413) */
        char *upstreams_file;        /* INI file of upstreams, "" = none */
        uint64_t keepalive_ms;       /* ": keep-alive" interval before the first byte */
        uint64_t first_byte_timeout_ms; /* absolute: slot wait + upstream first byte */
        unsigned breaker_failures;   /* failures within breaker_window open the circuit */
        uint64_t breaker_window_ms;
        uint64_t breaker_open_ms;    /* open this long, then one half-open probe */
        uint64_t cooldown_ms;        /* an upstream's rest after a 429 (or its Retry-After) */
        unsigned key_rpm, key_tpm, key_tpd, key_concurrency;     /* defaults per API key */
        unsigned user_rpm, user_tpm, user_tpd, user_concurrency; /* defaults per user */
        unsigned quota_entries;      /* capacity of the in-memory quota table */
        unsigned queue_max;          /* calls waiting for a model slot, the node in all */
        unsigned queue_per_user;     /* of which one user's */
        uint64_t queue_timeout_ms;   /* the longest wait for a slot (a client hint shortens) */
        uint64_t tier_established_age_ms; /* accounts this old are "established" */
        unsigned tier_weight_priority, tier_weight_established, tier_weight_new;
    } gateway;
    /* @status-fields */
    struct {
        char *page_name; /* shown in the page title and the JSON page object */
        char *page_url;  /* public URL of the status page; empty = http://<listen>/status */
        bool incident_on_elevated; /* auto incident from "elevated" on, not only "under_attack" */
        uint64_t auto_resolve_delay_ms; /* calm this long before the auto incident closes */
        char *attack_title_en, *attack_title_zh;
        char *attack_body_en, *attack_body_zh;
        char *attack_resolved_en, *attack_resolved_zh;
    } status;
};

/* A configuration holding the defaults, refs = 1. NULL when out of memory. */
struct gh_config *gh_config_new(void);
struct gh_config *gh_config_ref(struct gh_config *c);
void gh_config_unref(struct gh_config *c);

/* Reads an INI file over c. On failure returns GH_EINVAL (or GH_EIO when the
 * file cannot be read) and writes "FILE:LINE: [section] key: reason" to err.
 * Unknown sections and keys are errors too: a typo must not pass silently. */
int gh_config_load_file(struct gh_config *c, const char *path, struct gh_buf *err);
/* Sets one key. origin and line name where the value came from, for the
 * message on failure ("flag --set", 0). */
int gh_config_set(struct gh_config *c, const char *section, const char *key, const char *value,
                  const char *origin, int line, struct gh_buf *err);
/* Applies "section.key=value". */
int gh_config_set_assignment(struct gh_config *c, const char *assignment, const char *origin,
                             struct gh_buf *err);
/* Applies GATEHOUSE_LISTEN, _ADMIN_LISTEN, _DATA, _WORKERS, _ADMIN_TOKEN and
 * the generic GATEHOUSE_<SECTION>__<KEY> from envp (NULL-terminated). */
int gh_config_apply_env(struct gh_config *c, char **envp, struct gh_buf *err);
/* Checks rules that span keys. Same error convention. */
int gh_config_validate(const struct gh_config *c, struct gh_buf *err);

/* Parsers shared with other modules; 0 or GH_EINVAL. */
int gh_parse_size(const char *s, size_t *out);         /* 16k, 1m, 1g, 512 */
/* 500ms, 10s, 5m, 2h, 1d; a unit is required (only 0 may go without one):
 * a bare 10 could mean seconds or milliseconds. */
int gh_parse_duration_ms(const char *s, uint64_t *out);
/* True when s is a whole number other than 0 without a unit ("10"): the
 * reason gh_parse_duration_ms refused it, worth its own message. */
bool gh_duration_lacks_unit(const char *s);
int gh_parse_uint(const char *s, uint64_t max, uint64_t *out);
int gh_parse_bool(const char *s, bool *out);
/* host:port with an IPv4 address or [IPv6]; fills a sockaddr_storage. */
struct sockaddr_storage;
int gh_parse_hostport(const char *s, struct sockaddr_storage *out);

/* Writes the effective configuration as INI (secrets masked). */
int gh_config_dump(const struct gh_config *c, struct gh_buf *out);
