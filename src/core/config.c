/* This module implements configuration loading: a table of every key with
 * its type, bounds and default drives the INI reader, the flag and
 * environment overrides, the defaults and the dump, so each key is
 * described once. */
#include "core/config.h"

#include "core/origin.h"
#include "core/suggest.h"
#include "core/pgurl.h"
#include "core/redisurl.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

enum key_type { T_STR, T_HOSTPORT, T_UINT, T_SIZE, T_DURATION, T_BOOL, T_LEVEL, T_HEXKEY, T_TOKEN,
                T_DSN /* a PostgreSQL URL or conninfo: dumped without its password */ };

struct key_def {
    const char *section;
    const char *key;
    enum key_type type;
    size_t offset;
    uint64_t min, max; /* for numbers (sizes in bytes, durations in ms) */
    const char *def;
    const char *help;
};

#define OFF(f) offsetof(struct gh_config, f)
#define KB     1024ull
#define MB     (1024ull * 1024ull)
#define SEC    1000ull
#define HOUR   (3600ull * 1000ull)

static const struct key_def keys[] = {
    {"server", "listen", T_HOSTPORT, OFF(server.listen), 0, 0, "127.0.0.1:8080",
     "public listener, host:port ([::1]:8080 for IPv6)"},
    {"server", "admin_listen", T_HOSTPORT, OFF(server.admin_listen), 0, 0, "127.0.0.1:9091",
     "admin API and /metrics; keep it on loopback or a private network"},
    {"server", "data_dir", T_STR, OFF(server.data_dir), 1, 4096, "./var",
     "database, secrets, outbox and logs (created 0700)"},
    {"server", "workers", T_UINT, OFF(server.workers), 0, 256, "0",
     "event-loop threads; 0 = one per core"},
    {"server", "shutdown_timeout", T_DURATION, OFF(server.shutdown_timeout_ms), 0, HOUR, "10s",
     "how long SIGTERM waits for in-flight requests"},
    {"server", "reuseport", T_BOOL, OFF(server.reuseport), 0, 0, "true",
     "one SO_REUSEPORT socket per worker"},
    {"server", "public_origin", T_STR, OFF(server.public_origin), 0, 256, "",
     "scheme://host[:port] of the site in browsers; state-changing /api requests must come "
     "from it (empty = the request's Host)"},
    {"server", "hsts_max_age", T_DURATION, OFF(server.hsts_max_age_ms), 0, 2 * 365 * 24 * HOUR, "0",
     "Strict-Transport-Security max-age on public answers (0 = no header; set with TLS)"},

    {"limits", "header_max", T_SIZE, OFF(limits.header_max), 1 * KB, 1 * MB, "16k",
     "request line + headers (431 beyond)"},
    {"limits", "header_count_max", T_UINT, OFF(limits.header_count_max), 8, 1000, "100",
     "header fields per request (431 beyond)"},
    {"limits", "header_timeout", T_DURATION, OFF(limits.header_timeout_ms), 100, HOUR, "10s",
     "complete headers within this (408 and close)"},
    {"limits", "idle_timeout", T_DURATION, OFF(limits.idle_timeout_ms), 100, HOUR, "60s",
     "keep-alive connection idle between requests"},
    {"limits", "body_max", T_SIZE, OFF(limits.body_max), 0, 1024 * MB, "64k",
     "default request body cap of a route (413 beyond)"},
    {"limits", "body_min_rate", T_SIZE, OFF(limits.body_min_rate), 0, 1024 * MB, "1k",
     "bytes per second a request body must keep up after the grace time (408)"},
    {"limits", "body_rate_grace", T_DURATION, OFF(limits.body_rate_grace_ms), 0, HOUR, "5s",
     "time before the body rate is checked"},
    {"limits", "body_rate_window", T_DURATION, OFF(limits.body_rate_window_ms), 100, HOUR, "10s",
     "after the grace time, every window must bring body_min_rate x window more bytes (408): "
     "a fast start buys no stall"},
    {"limits", "body_memory", T_SIZE, OFF(limits.body_memory), 64 * KB, 64ull * 1024 * MB, "64m",
     "request bodies being received, all connections together; a body that does not fit "
     "gets 503 busy. Bodies without valid credentials may take half; bodies up to "
     "header_max are not charged"},
    {"limits", "linger_time", T_DURATION, OFF(limits.linger_time_ms), 0, 10 * 60 * 1000, "30s",
     "after a refusal mid-body, read and discard what the client still sends this long at "
     "most (5 s between reads), so it reads the answer, not a reset (0 = close at once)"},
    {"limits", "linger_max", T_SIZE, OFF(limits.linger_max), 0, 1024 * MB, "32m",
     "bytes read and discarded after such a refusal, at most (0 = close at once)"},
    {"limits", "requests_per_conn", T_UINT, OFF(limits.requests_per_conn), 1, 10000000, "1000",
     "requests served on one connection before it is closed"},
    {"limits", "max_conns", T_UINT, OFF(limits.max_conns), 1, 10000000, "100000",
     "open connections, all workers together"},
    {"limits", "max_conns_per_addr", T_UINT, OFF(limits.max_conns_per_addr), 1, 10000000, "256",
     "open connections from one client address whose requests carry no valid credentials"},
    {"limits", "max_conns_per_shared_addr", T_UINT, OFF(limits.max_conns_per_shared_addr), 1,
     10000000, "16384",
     "open connections from one client address (carrier-grade NAT: many users); past "
     "max_conns_per_addr only requests with a valid session or API key are served"},
    {"limits", "max_pending_headers", T_UINT, OFF(limits.max_pending_headers), 1, 10000000, "4096",
     "connections that have not sent complete headers; past it the oldest is closed"},
    {"limits", "pipeline_max", T_SIZE, OFF(limits.pipeline_max), 1 * KB, 64 * MB, "64k",
     "unparsed bytes kept for a pipelining client before reading pauses"},

    {"log", "access_log", T_STR, OFF(log.access_log), 1, 4096, "access.log",
     "file under data_dir (or absolute), - for stdout, off"},
    {"log", "error_log", T_STR, OFF(log.error_log), 1, 4096, "-",
     "file under data_dir (or absolute), - for stderr"},
    {"log", "level", T_LEVEL, OFF(log.level), 0, 0, "info", "debug, info, warn, error"},
    {"log", "access_rate", T_UINT, OFF(log.access_rate), 0, 1000000, "200",
     "access lines per second per worker before sampling starts"},
    {"log", "access_sample", T_UINT, OFF(log.access_sample), 1, 1000000, "100",
     "past access_rate, log one request in this many"},

    {"secrets", "hmac_key", T_HEXKEY, OFF(secrets.hmac_key), 0, 0, "",
     "64 hex chars; empty = generated at first start in data_dir/secrets"},
    {"secrets", "enc_key", T_HEXKEY, OFF(secrets.enc_key), 0, 0, "",
     "64 hex chars; empty = generated at first start in data_dir/secrets"},
    {"secrets", "admin_token", T_TOKEN, OFF(secrets.admin_token), 0, 0, "",
     "admin API bearer token; empty = generated in data_dir/admin.token"},
    {"secrets", "file", T_STR, OFF(secrets.file), 0, 4096, "",
     "a secrets file shared by a cluster's nodes (hmac_key=, enc_key=; mode 0600 or "
     "0400), read instead of data_dir/secrets and never generated; empty = data_dir/secrets"},

    {"store", "backend", T_STR, OFF(store.backend), 1, 16, "sqlite",
     "sqlite (data_dir/gatehouse.db) or postgres ([store] url)"},
    {"store", "url", T_DSN, OFF(store.url), 0, 4096, "",
     "postgres: postgresql://user@host:port/db or a libpq conninfo; the password is best "
     "left to PGPASSWORD or PGPASSFILE"},
    {"store", "readers", T_UINT, OFF(store.readers), 1, 8, "2",
     "reader threads, each with its own connection (the pool is readers + 1 writer)"},
    {"store", "connect_timeout", T_DURATION, OFF(store.connect_timeout_ms), SEC, 60 * SEC, "5s",
     "postgres: one connection attempt (rounded up to whole seconds)"},
    {"store", "statement_timeout", T_DURATION, OFF(store.statement_timeout_ms), 0, HOUR, "10s",
     "postgres: longest statement before the server cancels it (0 = the server's setting)"},
    {"store", "cache_ttl", T_DURATION, OFF(store.cache_ttl_ms), 0, HOUR, "5s",
     "postgres: a cached session or API key is checked in the store again after this long, "
     "so a change whose message was lost reaches every node within it (0 = never)"},
    {"store", "listen", T_BOOL, OFF(store.listen), 0, 0, "true",
     "postgres: hear the other nodes' changes at once (LISTEN/NOTIFY); false = only within "
     "cache_ttl, and shared settings at restart (e.g. behind a pooler in transaction mode)"},

    {"redis", "url", T_STR, OFF(redis.url), 0, 300, "",
     "redis://HOST[:PORT][/DB]: limits the cluster's nodes share; empty = every limit in "
     "this process. A password comes from GATEHOUSE_REDIS_PASSWORD, never the URL"},
    {"redis", "nodes", T_UINT, OFF(redis.nodes), 1, 10000, "1",
     "nodes in the cluster: while Redis is unreachable a rule in local mode allows each node "
     "1/nodes of its limit"},
    {"redis", "timeout", T_DURATION, OFF(redis.timeout_ms), 5, 10 * SEC, "100ms",
     "a command unanswered this long counts Redis as unreachable (reconnect with back-off)"},
    {"redis", "pending_max", T_UINT, OFF(redis.pending_max), 16, 1000000, "4096",
     "commands in flight per worker; past it Redis counts as unreachable for the request"},
    {"redis", "register_mode", T_STR, OFF(redis.register_mode), 4, 6, "closed",
     "registration's shared rules while Redis is unreachable: closed (503 busy), local "
     "(1/nodes of each limit on each node), open (no limit)"},
    {"redis", "sms_mode", T_STR, OFF(redis.sms_mode), 4, 6, "closed",
     "the numbers' SMS budgets while Redis is unreachable: closed (no SMS: 503 busy), "
     "local (1/nodes of each cap on each node), open (no cap)"},
    {"redis", "login_mode", T_STR, OFF(redis.login_mode), 4, 6, "local",
     "accounts' failed sign-ins while Redis is unreachable: local (the back-off of the "
     "failures this node saw), open (none), closed (sign-ins 503 busy)"},
    {"redis", "anon_mode", T_STR, OFF(redis.anon_mode), 4, 6, "local",
     "the anon class's shared rules (prefix, prefix48, global) while Redis is unreachable: "
     "local (1/nodes of each rule on each node), open (no limit), closed (503 busy)"},
    {"redis", "level_flush", T_DURATION, OFF(redis.level_flush_ms), 50, SEC, "250ms",
     "how often a node adds its attack-level signals to the cluster's sums in Redis (one "
     "round trip per node)"},
    {"redis", "quota_mode", T_STR, OFF(redis.quota_mode), 4, 6, "local",
     "the chat API's quotas (rpm, tpm, tpd, concurrency) while Redis is unreachable: local "
     "(1/nodes of each limit on each node), open (no quota), closed (chat 503 busy)"},

    /* @identity-keys */
    {"identity", "argon2_ops", T_UINT, OFF(identity.argon2_ops), 0, 100, "0",
     "argon2id passes; 0 = libsodium's interactive default (2)"},
    {"identity", "argon2_mem", T_SIZE, OFF(identity.argon2_mem), 0, 4096 * MB, "0",
     "argon2id memory; 0 = libsodium's interactive default (64m); at least 8k"},
    {"identity", "hash_threads", T_UINT, OFF(identity.hash_threads), 0, 256, "0",
     "password hashing threads; 0 = one per core"},
    {"identity", "hash_queue_max", T_UINT, OFF(identity.hash_queue_max), 1, 1000000, "1024",
     "password jobs waiting per priority (login, registration) before 503 busy"},
    {"identity", "hash_deadline", T_DURATION, OFF(identity.hash_deadline_ms), 10, HOUR, "5s",
     "a password job not started within this gets 503 busy"},
    {"identity", "code_ttl", T_DURATION, OFF(identity.code_ttl_ms), 100, 24 * HOUR, "5m",
     "SMS code lifetime"},
    {"identity", "code_tries", T_UINT, OFF(identity.code_tries), 1, 100, "5",
     "wrong entries that kill an SMS code"},
    {"identity", "session_idle", T_DURATION, OFF(identity.session_idle_ms), SEC, 365 * 24 * HOUR,
     "7d", "a session unused this long expires"},
    {"identity", "session_max", T_DURATION, OFF(identity.session_max_ms), SEC, 365 * 24 * HOUR,
     "30d", "absolute session lifetime"},
    {"identity", "cookie_secure", T_BOOL, OFF(identity.cookie_secure), 0, 0, "true",
     "Secure cookies with the __Host- prefix; false only for plain http on loopback (dev.conf)"},
    {"identity", "keys_per_user", T_UINT, OFF(identity.keys_per_user), 1, 10000, "20",
     "live API keys per user"},
    {"identity", "cache_max", T_UINT, OFF(identity.cache_max), 64, 100000000, "262144",
     "sessions and API keys held in memory (LRU; a miss is looked up in the store)"},
    {"identity", "sessions_per_user", T_UINT, OFF(identity.sessions_per_user), 1, 10000, "50",
     "live sessions per account; a sign-in past it ends the oldest"},
    {"identity", "logins_per_user_hour", T_UINT, OFF(identity.logins_per_user_hour), 1, 1000000,
     "30", "successful sign-ins per account per hour before 429"},
    {"identity", "backoff_base", T_DURATION, OFF(identity.backoff_base_ms), 0, HOUR, "1s",
     "wait after the first failed login of an account; doubles per failure"},
    {"identity", "backoff_max", T_DURATION, OFF(identity.backoff_max_ms), 0, 24 * HOUR, "15m",
     "longest wait between failed logins of an account"},
    {"identity", "sms_only_after", T_UINT, OFF(identity.sms_only_after), 1, 1000000, "100",
     "consecutive failed logins after which only SMS-code login works"},
    {"identity", "login_fail_per_addr", T_UINT, OFF(identity.login_fail_per_addr), 1, 100000000,
     "100", "failed logins per client address per hour before 429"},
    {"identity", "login_tiers", T_BOOL, OFF(identity.login_tiers), 0, 0, "true",
     "order password logins in the pool by their source (known address, new, suspect /24); "
     "off: one queue for every login (behind a proxy whose client address is not passed on)"},
    {"identity", "login_suspect_after", T_UINT, OFF(identity.login_suspect_after), 1, 1000000, "4",
     "password logins of a /24 (/48) not followed by a success (hour) after which its "
     "logins are suspect: lowest priority in the password pool, proof of work when elevated"},
    {"identity", "suspect_deadline", T_DURATION, OFF(identity.suspect_deadline_ms), 10, HOUR, "1s",
     "a suspect login not started within this gets 503 busy"},
    {"identity", "suspect_queue_max", T_UINT, OFF(identity.suspect_queue_max), 1, 1000000, "64",
     "suspect logins waiting in the password pool before 503 busy"},
    {"identity", "allow_voip", T_BOOL, OFF(identity.allow_voip), 0, 0, "false",
     "accept VoIP phone numbers"},
    {"identity", "policy", T_STR, OFF(identity.policy), 1, 16, "open",
     "registration policy at first start: open, restricted, busy, closed"},
    {"identity", "regions", T_STR, OFF(identity.regions), 0, 1024, "CN",
     "regions allowed in restricted mode at first start, e.g. CN,HK"},
    {"identity", "msg_restricted_en", T_STR, OFF(identity.msg_restricted_en), 1, 1024,
     "Registration is temporarily limited to {regions} phone numbers",
     "message of restricted mode ({regions} becomes e.g. +86)"},
    {"identity", "msg_restricted_zh", T_STR, OFF(identity.msg_restricted_zh), 1, 1024,
     "\xe6\xb3\xa8\xe5\x86\x8c\xe6\x9a\x82\xe6\x97\xb6\xe4\xbb\x85\xe9\x99\x90 "
     "{regions} \xe6\x89\x8b\xe6\x9c\xba\xe5\x8f\xb7",
     "message of restricted mode, Chinese"},
    {"identity", "msg_busy_en", T_STR, OFF(identity.msg_busy_en), 1, 1024,
     "Registration may be busy, please retry later", "message of busy mode"},
    {"identity", "msg_busy_zh", T_STR, OFF(identity.msg_busy_zh), 1, 1024,
     "\xe6\xb3\xa8\xe5\x86\x8c\xe5\x8f\xaf\xe8\x83\xbd\xe7\xb9\x81\xe5\xbf\x99"
     "\xef\xbc\x8c\xe8\xaf\xb7\xe7\xa8\x8d\xe5\x90\x8e\xe9\x87\x8d\xe8\xaf\x95",
     "message of busy mode, Chinese"},
    {"identity", "msg_closed_en", T_STR, OFF(identity.msg_closed_en), 1, 1024,
     "Registration is closed for now", "message of closed mode"},
    {"identity", "msg_closed_zh", T_STR, OFF(identity.msg_closed_zh), 1, 1024,
     "\xe6\x9a\x82\xe5\x81\x9c\xe6\xb3\xa8\xe5\x86\x8c", "message of closed mode, Chinese"},
    {"identity", "busy_retry", T_DURATION, OFF(identity.busy_retry_ms), SEC, 24 * HOUR, "30s",
     "Retry-After of busy answers"},
    {"identity", "store_queue_max", T_UINT, OFF(identity.store_queue_max), 16, 10000000, "10000",
     "database jobs waiting before 503 busy"},
    {"sms", "sender", T_STR, OFF(sms.sender), 3, 16, "log",
     "log (appends to data_dir/sms-outbox.jsonl, for development) or webhook"},
    {"sms", "webhook_url", T_STR, OFF(sms.webhook_url), 0, 2048, "",
     "URL the webhook sender POSTs HMAC-signed JSON to"},
    {"sms", "webhook_timeout", T_DURATION, OFF(sms.webhook_timeout_ms), 100, HOUR, "10s",
     "timeout of one webhook attempt"},
    {"sms", "webhook_retries", T_UINT, OFF(sms.webhook_retries), 0, 20, "3",
     "retries of a failed webhook delivery"},
    {"sms", "outbox_lease", T_DURATION, OFF(sms.outbox_lease_ms), 1000, 24 * HOUR, "60s",
     "shared store: how long an accepted SMS is its node's to deliver before another node's "
     "sweeper may send it (more than a webhook delivery's retries take)"},
    {"sms", "cooldown", T_DURATION, OFF(sms.cooldown_ms), 0, HOUR, "60s",
     "minimum time between two codes to one number"},
    {"sms", "per_number_day", T_UINT, OFF(sms.per_number_day), 1, 100000000, "10",
     "codes per number per day"},
    {"sms", "per_addr_hour", T_UINT, OFF(sms.per_addr_hour), 1, 100000000, "20",
     "codes requested per client address per hour"},
    {"sms", "per_net_hour", T_UINT, OFF(sms.per_net_hour), 1, 100000000, "100",
     "codes requested per /24 (IPv4) or /48 (IPv6) per hour"},
    {"sms", "per_prefix_hour", T_UINT, OFF(sms.per_prefix_hour), 1, 100000000, "30",
     "codes per number prefix (number without its last 4 digits) per hour"},
    {"sms", "per_cc_hour", T_UINT, OFF(sms.per_cc_hour), 1, 100000000, "5000",
     "codes per calling code per hour"},
    {"sms", "global_hour", T_UINT, OFF(sms.global_hour), 1, 1000000000, "3000",
     "codes per hour in total"},
    /* @shield-keys */
    {"shield", "enabled", T_BOOL, OFF(shield.enabled), 0, 0, "true",
     "classify and rate-limit public requests"},
    {"shield", "rules", T_STR, OFF(shield.rules), 0, 4096,
     "anon:addr:100/1s:burst=200, anon:prefix:200/1s:burst=200, "
     "anon:prefix48:200/1s:burst=200, anon:global:2000/1s:burst=4000, "
     "register:addr:300/1m, register:prefix:1000/1m, register:prefix48:1000/1m, "
     "login:addr:300/1m, login:prefix:600/1m:burst=300, login:prefix48:600/1m:burst=300",
     "limiter rules CLASS:KEY:COUNT/PERIOD[:burst=N][:dry_run], comma separated; KEY is addr, "
     "prefix, prefix48, account, apikey, phone, phone_prefix, calling_code or global"},
    {"shield", "limiter_memory", T_SIZE, OFF(shield.limiter_memory), 64 * KB, 64 * 1024 * MB, "64m",
     "memory of the limiter table (16 bytes per key); full, it evicts the least recent"},
    {"shield", "block_file", T_STR, OFF(shield.block_file), 0, 4096, "",
     "CIDR block list (FireHOL / Spamhaus DROP format), closed at accept; reloaded on SIGHUP"},
    {"shield", "allow_file", T_STR, OFF(shield.allow_file), 0, 4096, "",
     "CIDR allow list: never blocked nor rate-limited"},
    {"shield", "list_max", T_SIZE, OFF(shield.list_max), 16, 10000000, "1000000",
     "entries per IP list"},
    {"shield", "trusted_proxies", T_STR, OFF(shield.trusted_proxies), 0, 4096, "",
     "CIDRs of balancers whose X-Forwarded-For is believed, comma separated"},
    {"shield", "proxy_protocol_from", T_STR, OFF(shield.proxy_protocol_from), 0, 4096, "",
     "CIDRs of balancers whose connections start with a PROXY protocol header (v1 or v2); "
     "their reported address is the client's. Comma separated"},
    {"shield", "pow_bits", T_UINT, OFF(shield.pow_bits), 0, 32, "0",
     "proof-of-work difficulty at the normal level (0 = none)"},
    {"shield", "elevated_pow_bits", T_UINT, OFF(shield.elevated_pow_bits), 0, 32, "16",
     "proof-of-work difficulty at the elevated level"},
    {"shield", "attack_pow_bits", T_UINT, OFF(shield.attack_pow_bits), 0, 32, "20",
     "proof-of-work difficulty under attack"},
    {"shield", "pow_ttl", T_DURATION, OFF(shield.pow_ttl_ms), 10 * SEC, 24 * HOUR, "5m",
     "lifetime of a proof-of-work challenge"},
    {"shield", "pow_replay_entries", T_SIZE, OFF(shield.pow_replay_entries), 1024, 100000000,
     "1000000", "solutions remembered to refuse replays (16 bytes each)"},
    {"shield", "attack_regions", T_STR, OFF(shield.attack_regions), 0, 256, "CN",
     "regions still allowed to register under attack, comma separated"},
    {"shield", "attack_register_per_minute", T_UINT, OFF(shield.attack_register_per_minute), 0,
     10000000, "600", "registrations per minute under attack (0 = no cap)"},
    {"shield", "level_interval", T_DURATION, OFF(shield.level_interval_ms), 100, HOUR, "5s",
     "period of the attack-level signals"},
    {"shield", "level_calm_periods", T_UINT, OFF(shield.level_calm_periods), 1, 100000, "12",
     "calm periods before the attack level falls one step"},
    {"shield", "level_thresholds", T_STR, OFF(shield.level_thresholds), 0, 1024,
     "register_rate:20:100, sms_rate:20:100, verify_fail_ratio:0.6:0.9, "
     "login_fail_ratio:0.6:0.9, distinct_prefixes:200:2000, "
     "queue_delay_ms:500:2000, loop_lag_ms:200:1000, login_fail_rate:20:100",
     "SIGNAL:ELEVATED:UNDER_ATTACK thresholds (per second, ratios 0..1, ms); 0 = unused"},
    {"shield", "level_min_events", T_UINT, OFF(shield.level_min_events), 1, 10000000, "20",
     "events (after level_source_cap) a signal needs in a period to count"},
    {"shield", "level_min_prefixes", T_UINT, OFF(shield.level_min_prefixes), 1, 100000, "8",
     "distinct /24 (IPv6 /48) a signal's events need in a period to count: one network "
     "cannot raise the attack level"},
    {"shield", "level_source_cap", T_UINT, OFF(shield.level_source_cap), 1, 10000000, "5",
     "events one /24 (/48) adds to a signal in a period, at most"},
    {"shield", "incident_after", T_DURATION, OFF(shield.incident_after_ms), 0, 24 * HOUR, "3m",
     "how long a computed attack level must hold before the status page hears it (the "
     "automatic incident); an operator's pin is public at once"},
    {"shield", "shed", T_BOOL, OFF(shield.shed), 0, 0, "true",
     "under pressure refuse anon, then register, then login, then user (503 busy) and shorten "
     "keep-alive idle timeouts"},
    {"shield", "shed_queue_delay", T_DURATION, OFF(shield.shed_queue_delay_ms), 1, HOUR, "1s",
     "password-pool queue delay that counts as pressure 1 (anon shed at 1, register 1.5, "
     "login 2.5, user 4)"},
    {"shield", "shed_loop_lag", T_DURATION, OFF(shield.shed_loop_lag_ms), 1, HOUR, "250ms",
     "event-loop lag that counts as pressure 1"},
    {"shield", "ban_after", T_UINT, OFF(shield.ban_after), 0, 100000000, "0",
     "refusals by an address or prefix rule within ban_window that ban the source for "
     "ban_time; 0 = operator bans only (off by default: a ban also cuts users behind a "
     "shared address)"},
    {"shield", "ban_window", T_DURATION, OFF(shield.ban_window_ms), 100, HOUR, "10s",
     "the window in which ban_after refusals earn a ban"},
    {"shield", "ban_time", T_DURATION, OFF(shield.ban_time_ms), SEC, 30 * 24 * HOUR, "10m",
     "how long an automatic ban lasts (the kernel's own timeout with kernel_ban)"},
    {"shield", "ban_max", T_SIZE, OFF(shield.ban_max), 64, 10000000, "65536",
     "bans held at once (the penalty box and each kernel set); a full box bans no more"},
    {"shield", "kernel_ban", T_BOOL, OFF(shield.kernel_ban), 0, 0, "false",
     "also drop banned sources in an nftables set (made at start, removed at stop; needs "
     "CAP_NET_ADMIN, else bans close at accept)"},
    {"shield", "kernel_ban_table", T_STR, OFF(shield.kernel_ban_table), 1, 63, "gatehouse",
     "name of that table (family inet); one per instance on a host"},
    /* @gateway-keys */
    {"gateway", "echo", T_BOOL, OFF(gateway.echo), 0, 0, "true",
     "serve the built-in `echo` model (development and tests: no network)"},
    {"gateway", "echo_delay", T_DURATION, OFF(gateway.echo_delay_ms), 0, 60 * SEC, "20ms",
     "pause between two tokens of the echo model"},
    {"gateway", "max_tokens_cap", T_UINT, OFF(gateway.max_tokens_cap), 1, 10000000, "8192",
     "largest max_tokens a request may ask (422 above); sent upstream when absent"},
    {"gateway", "unknown_fields", T_STR, OFF(gateway.unknown_fields), 1, 16, "reject",
     "chat request fields outside the allow-list (docs/API.md): reject (400 naming the "
     "field) or drop (never sent upstream)"},
    {"gateway", "body_max", T_SIZE, OFF(gateway.body_max), 1 * KB, 256 * MB, "1m",
     "chat request body cap (413 above)"},
    {"gateway", "upstreams_file", T_STR, OFF(gateway.upstreams_file), 0, 4096, "",
     "INI file of model upstreams (see docs/internals/gateway.md); empty = none"},
    {"gateway", "keepalive", T_DURATION, OFF(gateway.keepalive_ms), 10, HOUR, "10s",
     "SSE `: keep-alive` comment interval while a stream waits for its first token"},
    {"gateway", "first_byte_timeout", T_DURATION, OFF(gateway.first_byte_timeout_ms), 100,
     24 * HOUR, "10m", "absolute deadline for an upstream slot and the first token"},
    {"gateway", "breaker_failures", T_UINT, OFF(gateway.breaker_failures), 1, 1000000, "5",
     "upstream failures within breaker_window that open its circuit"},
    {"gateway", "breaker_window", T_DURATION, OFF(gateway.breaker_window_ms), 100, HOUR, "30s",
     "window in which breaker_failures are counted"},
    {"gateway", "breaker_open", T_DURATION, OFF(gateway.breaker_open_ms), 100, HOUR, "30s",
     "how long an open circuit refuses before a half-open probe"},
    {"gateway", "cooldown", T_DURATION, OFF(gateway.cooldown_ms), 0, HOUR, "10s",
     "rest of an upstream after it answered 429 (its Retry-After wins, up to 5m)"},
    {"gateway", "key_rpm", T_UINT, OFF(gateway.key_rpm), 0, 100000000, "0",
     "default requests per minute of an API key; 0 = unlimited"},
    {"gateway", "key_tpm", T_UINT, OFF(gateway.key_tpm), 0, 4000000000u, "0",
     "default tokens per minute of an API key; 0 = unlimited"},
    {"gateway", "key_tpd", T_UINT, OFF(gateway.key_tpd), 0, 4000000000u, "0",
     "default tokens per day (UTC) of an API key (402 when spent); 0 = unlimited"},
    {"gateway", "key_concurrency", T_UINT, OFF(gateway.key_concurrency), 0, 1000000, "0",
     "default concurrent requests of an API key; 0 = unlimited"},
    {"gateway", "user_rpm", T_UINT, OFF(gateway.user_rpm), 0, 100000000, "0",
     "default requests per minute of a user (all keys and the web chat); 0 = unlimited"},
    {"gateway", "user_tpm", T_UINT, OFF(gateway.user_tpm), 0, 4000000000u, "0",
     "default tokens per minute of a user; 0 = unlimited"},
    {"gateway", "user_tpd", T_UINT, OFF(gateway.user_tpd), 0, 4000000000u, "0",
     "default tokens per day (UTC) of a user; 0 = unlimited"},
    {"gateway", "user_concurrency", T_UINT, OFF(gateway.user_concurrency), 0, 1000000, "16",
     "default concurrent requests of a user; 0 = unlimited"},
    {"gateway", "quota_entries", T_UINT, OFF(gateway.quota_entries), 64, 100000000, "262144",
     "capacity of the in-memory quota table (keys and users)"},
    {"gateway", "queue_max", T_UINT, OFF(gateway.queue_max), 1, 1000000, "4096",
     "calls waiting for a model slot, the whole node (beyond: 503 busy)"},
    {"gateway", "queue_per_user", T_UINT, OFF(gateway.queue_per_user), 1, 1000000, "64",
     "calls one user may have waiting for a model slot (beyond: 503 busy)"},
    {"gateway", "queue_timeout", T_DURATION, OFF(gateway.queue_timeout_ms), 100, 24 * HOUR, "2m",
     "the longest a call waits for a slot; a longer estimated wait is 503 busy at once"},
    {"gateway", "tier_established_age", T_DURATION, OFF(gateway.tier_established_age_ms), 0,
     3650 * 24 * HOUR, "30d", "accounts at least this old wait in the established tier"},
    {"gateway", "tier_weight_priority", T_UINT, OFF(gateway.tier_weight_priority), 1, 1000000, "16",
     "share of queued dispatches for users with a quota override"},
    {"gateway", "tier_weight_established", T_UINT, OFF(gateway.tier_weight_established), 1, 1000000,
     "8", "share of queued dispatches for established accounts"},
    {"gateway", "tier_weight_new", T_UINT, OFF(gateway.tier_weight_new), 1, 1000000, "1",
     "share of queued dispatches for accounts younger than tier_established_age"},
    /* @status-keys */
    {"status", "page_name", T_STR, OFF(status.page_name), 1, 100, "gatehouse",
     "name of the status page (title and JSON page object)"},
    {"status", "page_url", T_STR, OFF(status.page_url), 0, 500, "",
     "public URL of the status page; empty = http://<server.listen>/status"},
    {"status", "incident_on_elevated", T_BOOL, OFF(status.incident_on_elevated), 0, 0, "false",
     "open the automatic incident at attack level elevated (default: under_attack only)"},
    {"status", "auto_resolve_delay", T_DURATION, OFF(status.auto_resolve_delay_ms), 0, 24 * HOUR,
     "10m", "how long the attack level must stay calm before the automatic incident closes"},
    {"status", "attack_title_en", T_STR, OFF(status.attack_title_en), 1, 200,
     "Registration temporarily limited", "title of the automatic attack incident (English)"},
    {"status", "attack_title_zh", T_STR, OFF(status.attack_title_zh), 1, 200, "注册暂时受限",
     "title of the automatic attack incident (Chinese)"},
    {"status", "attack_body_en", T_STR, OFF(status.attack_body_en), 1, 2000,
     "Due to large-scale malicious attacks, registration is temporarily limited. Registration "
     "may be busy; please wait and retry. Existing users can log in as usual.",
     "first update of the automatic attack incident (English)"},
    {"status", "attack_body_zh", T_STR, OFF(status.attack_body_zh), 1, 2000,
     "由于近期遭受大规模恶意攻击，注册暂时受限。注册可能繁忙，请稍候重试。已注册用户可以正常登录。",
     "first update of the automatic attack incident (Chinese)"},
    {"status", "attack_resolved_en", T_STR, OFF(status.attack_resolved_en), 1, 2000,
     "The attack has subsided and registration is open again. Thank you for your patience.",
     "resolving update of the automatic attack incident (English)"},
    {"status", "attack_resolved_zh", T_STR, OFF(status.attack_resolved_zh), 1, 2000,
     "攻击已平息，注册已恢复开放。感谢您的耐心等待。",
     "resolving update of the automatic attack incident (Chinese)"},
};

static const char *level_names[] = {"debug", "info", "warn", "error"};

int gh_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !*s)
        return GH_EINVAL;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return GH_EINVAL;
        unsigned d = (unsigned)(*p - '0');
        if (d > max || v > (max - d) / 10) /* d > max: max - d would wrap */
            return GH_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Splits "123abc" into a number and a unit suffix. */
static int split_unit(const char *s, uint64_t *num, const char **unit)
{
    char digits[32];
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9') {
        if (n + 1 >= sizeof digits)
            return GH_EINVAL;
        digits[n] = s[n];
        n++;
    }
    if (n == 0)
        return GH_EINVAL;
    digits[n] = '\0';
    *unit = s + n;
    return gh_parse_uint(digits, UINT64_MAX / (1024ull * MB), num);
}

int gh_parse_size(const char *s, size_t *out)
{
    uint64_t n;
    const char *u;
    if (split_unit(s, &n, &u))
        return GH_EINVAL;
    uint64_t mul;
    if (!*u || !strcasecmp(u, "b"))
        mul = 1;
    else if (!strcasecmp(u, "k") || !strcasecmp(u, "kb") || !strcasecmp(u, "kib"))
        mul = KB;
    else if (!strcasecmp(u, "m") || !strcasecmp(u, "mb") || !strcasecmp(u, "mib"))
        mul = MB;
    else if (!strcasecmp(u, "g") || !strcasecmp(u, "gb") || !strcasecmp(u, "gib"))
        mul = 1024 * MB;
    else
        return GH_EINVAL;
    *out = (size_t)(n * mul);
    return 0;
}

int gh_parse_duration_ms(const char *s, uint64_t *out)
{
    uint64_t n;
    const char *u;
    if (split_unit(s, &n, &u))
        return GH_EINVAL;
    uint64_t mul;
    if (!*u && n) /* 10 alone: seconds or milliseconds? the writer must say */
        return GH_EINVAL;
    if (!strcmp(u, "ms") || !*u)
        mul = 1;
    else if (!strcmp(u, "s"))
        mul = SEC;
    else if (!strcmp(u, "m"))
        mul = 60 * SEC;
    else if (!strcmp(u, "h"))
        mul = HOUR;
    else if (!strcmp(u, "d"))
        mul = 24 * HOUR;
    else
        return GH_EINVAL;
    *out = n * mul;
    return 0;
}

int gh_parse_bool(const char *s, bool *out)
{
    if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on") ||
        !strcmp(s, "1")) {
        *out = true;
        return 0;
    }
    if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off") ||
        !strcmp(s, "0")) {
        *out = false;
        return 0;
    }
    return GH_EINVAL;
}

int gh_parse_hostport(const char *s, struct sockaddr_storage *out)
{
    char host[64];
    const char *port;
    memset(out, 0, sizeof *out);
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof host)
            return GH_EINVAL;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        port = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host)
            return GH_EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    }
    uint64_t p;
    if (gh_parse_uint(port, 65535, &p))
        return GH_EINVAL;
    if (!strcmp(host, "localhost"))
        snprintf(host, sizeof host, "127.0.0.1");
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)p);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)p);
        return 0;
    }
    return GH_EINVAL;
}

static void set_err(struct gh_buf *err, const char *origin, int line, const struct key_def *k,
                    const char *section, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

static void set_err(struct gh_buf *err, const char *origin, int line, const struct key_def *k,
                    const char *section, const char *key, const char *fmt, ...)
{
    if (!err)
        return;
    gh_buf_reset(err);
    if (line > 0)
        gh_buf_printf(err, "%s:%d: ", origin, line);
    else
        gh_buf_printf(err, "%s: ", origin);
    gh_buf_printf(err, "[%s] %s: ", k ? k->section : section, k ? k->key : key);
    va_list ap;
    va_start(ap, fmt);
    gh_buf_vprintf(err, fmt, ap);
    va_end(ap);
}

static const struct key_def *find_key(const char *section, const char *key)
{
    for (size_t i = 0; i < GH_ARRAY_LEN(keys); i++)
        if (!strcmp(keys[i].section, section) && !strcmp(keys[i].key, key))
            return &keys[i];
    return NULL;
}

static bool section_known(const char *section)
{
    for (size_t i = 0; i < GH_ARRAY_LEN(keys); i++)
        if (!strcmp(keys[i].section, section))
            return true;
    return false;
}

/* Explains an unknown section or key, with the nearest known name when one
 * is close: a typo ("did you mean idle_timeout?") or a key of another
 * section ("listen is in [server]"). */
static void unknown_name_err(struct gh_buf *err, const char *origin, int line, const char *section,
                             const char *key)
{
    struct gh_suggest s;
    if (!section_known(section)) {
        gh_suggest_init(&s, section);
        for (size_t i = 0; i < GH_ARRAY_LEN(keys); i++)
            if (!i || strcmp(keys[i].section, keys[i - 1].section))
                gh_suggest_add(&s, keys[i].section);
        const char *near = gh_suggest_result(&s);
        if (near)
            set_err(err, origin, line, NULL, section, key, "unknown section (did you mean [%s]?)",
                    near);
        else
            set_err(err, origin, line, NULL, section, key, "unknown section");
        return;
    }
    gh_suggest_init(&s, key);
    const struct key_def *elsewhere = NULL;
    for (size_t i = 0; i < GH_ARRAY_LEN(keys); i++) {
        if (!strcmp(keys[i].section, section))
            gh_suggest_add(&s, keys[i].key);
        else if (!elsewhere && !strcmp(keys[i].key, key))
            elsewhere = &keys[i];
    }
    const char *near = gh_suggest_result(&s);
    if (near)
        set_err(err, origin, line, NULL, section, key, "unknown key (did you mean %s?)", near);
    else if (elsewhere)
        set_err(err, origin, line, NULL, section, key, "unknown key (%s is in [%s])", key,
                elsewhere->section);
    else
        set_err(err, origin, line, NULL, section, key, "unknown key");
}

bool gh_duration_lacks_unit(const char *s)
{
    size_t digits = strspn(s, "0123456789");
    return digits > 0 && !s[digits] && strspn(s, "0") != digits;
}

/* Assigns value to the field described by k. Returns 0 or GH_EINVAL with a
 * reason in err. */
static int apply(struct gh_config *c, const struct key_def *k, const char *value,
                 const char *origin, int line, struct gh_buf *err)
{
    char *field = (char *)c + k->offset;
    uint64_t n = 0;
    size_t sz = 0;
    bool b;
    switch (k->type) {
    case T_STR:
    case T_HOSTPORT:
    case T_HEXKEY:
    case T_TOKEN:
    case T_DSN: {
        size_t len = strlen(value);
        if (k->type == T_STR && (len < k->min || len > k->max)) {
            set_err(err, origin, line, k, NULL, NULL, "must be %llu to %llu characters",
                    (unsigned long long)k->min, (unsigned long long)k->max);
            return GH_EINVAL;
        }
        if (k->type == T_HOSTPORT) {
            struct sockaddr_storage ss;
            if (gh_parse_hostport(value, &ss)) {
                set_err(err, origin, line, k, NULL, NULL,
                        "invalid address '%.80s' (expected IP:PORT such as 127.0.0.1:8080 or "
                        "[::1]:8080)",
                        value);
                return GH_EINVAL;
            }
        }
        if (k->type == T_HEXKEY && len) {
            bool ok = len == 64;
            for (size_t i = 0; ok && i < len; i++)
                ok = isxdigit((unsigned char)value[i]);
            if (!ok) {
                set_err(err, origin, line, k, NULL, NULL,
                        "must be 64 hexadecimal characters (32 bytes), or empty to generate one");
                return GH_EINVAL;
            }
        }
        if (k->type == T_DSN && len) {
            char tmp[4200];
            if (len > k->max || gh_pgurl_redact(value, tmp, sizeof tmp)) {
                set_err(err, origin, line, k, NULL, NULL,
                        "is neither a postgresql:// URL nor a key=value conninfo (at most %llu "
                        "characters)",
                        (unsigned long long)k->max);
                return GH_EINVAL;
            }
        }
        if (k->type == T_TOKEN && len && (len < 32 || len > 256)) {
            set_err(err, origin, line, k, NULL, NULL,
                    "must be 32 to 256 characters, or empty to generate one");
            return GH_EINVAL;
        }
        if (k->type == T_TOKEN) {
            for (size_t i = 0; i < len; i++)
                if ((unsigned char)value[i] <= ' ' || (unsigned char)value[i] >= 0x7f) {
                    set_err(err, origin, line, k, NULL, NULL,
                            "must be printable ASCII without spaces");
                    return GH_EINVAL;
                }
        }
        char *dup = strdup(value);
        if (!dup) {
            set_err(err, origin, line, k, NULL, NULL, "out of memory");
            return GH_ENOMEM;
        }
        char **slot = (char **)field;
        free(*slot);
        *slot = dup;
        return 0;
    }
    case T_UINT:
        if (gh_parse_uint(value, UINT32_MAX, &n)) {
            set_err(err, origin, line, k, NULL, NULL, "'%.80s' is not a whole number", value);
            return GH_EINVAL;
        }
        break;
    case T_SIZE:
        if (gh_parse_size(value, &sz)) {
            set_err(err, origin, line, k, NULL, NULL,
                    "'%.80s' is not a size (expected e.g. 512, 16k, 1m)", value);
            return GH_EINVAL;
        }
        n = sz;
        break;
    case T_DURATION:
        if (gh_parse_duration_ms(value, &n)) {
            if (gh_duration_lacks_unit(value))
                set_err(err, origin, line, k, NULL, NULL,
                        "'%.80s' has no unit (write e.g. %.40ss or %.40sms)", value, value, value);
            else
                set_err(err, origin, line, k, NULL, NULL,
                        "'%.80s' is not a duration (expected e.g. 500ms, 10s, 5m, 2h)", value);
            return GH_EINVAL;
        }
        break;
    case T_BOOL:
        if (gh_parse_bool(value, &b)) {
            set_err(err, origin, line, k, NULL, NULL, "'%.80s' is not true or false", value);
            return GH_EINVAL;
        }
        *(bool *)field = b;
        return 0;
    case T_LEVEL:
        for (size_t i = 0; i < GH_ARRAY_LEN(level_names); i++)
            if (!strcasecmp(value, level_names[i])) {
                *(enum gh_log_level *)field = (enum gh_log_level)i;
                return 0;
            }
        set_err(err, origin, line, k, NULL, NULL,
                "'%.80s' is not a level (debug, info, warn, error)", value);
        return GH_EINVAL;
    }
    if (n < k->min || n > k->max) {
        set_err(err, origin, line, k, NULL, NULL, "%s is out of range (%llu to %llu%s)", value,
                (unsigned long long)k->min, (unsigned long long)k->max,
                k->type == T_DURATION ? " ms" : k->type == T_SIZE ? " bytes" : "");
        return GH_EINVAL;
    }
    /* every numeric field is either uint64_t, size_t or unsigned */
    if (k->type == T_DURATION)
        *(uint64_t *)field = n;
    else if (k->type == T_SIZE)
        *(size_t *)field = (size_t)n;
    else
        *(unsigned *)field = (unsigned)n;
    return 0;
}

int gh_config_set(struct gh_config *c, const char *section, const char *key, const char *value,
                  const char *origin, int line, struct gh_buf *err)
{
    const struct key_def *k = find_key(section, key);
    if (!k) {
        unknown_name_err(err, origin, line, section, key);
        return GH_EINVAL;
    }
    return apply(c, k, value, origin, line, err);
}

struct gh_config *gh_config_new(void)
{
    struct gh_config *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    atomic_init(&c->refs, 1);
    for (size_t i = 0; i < GH_ARRAY_LEN(keys); i++) {
        if (apply(c, &keys[i], keys[i].def, "default", 0, NULL)) {
            gh_config_unref(c);
            return NULL;
        }
    }
    return c;
}

struct gh_config *gh_config_ref(struct gh_config *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void gh_config_unref(struct gh_config *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < GH_ARRAY_LEN(keys); i++) {
        enum key_type t = keys[i].type;
        if (t == T_STR || t == T_HOSTPORT || t == T_HEXKEY || t == T_TOKEN || t == T_DSN) {
            char **slot = (char **)((char *)c + keys[i].offset);
            free(*slot);
        }
    }
    free(c->path);
    free(c);
}

struct ini_ctx {
    struct gh_config *c;
    const char *path;
    struct gh_buf *err;
    int rc;
    FILE *f;
    int line; /* lines read so far: inih calls the handler right after reading */
    int err_line; /* line of the handler's error, when rc is set */
    bool continued; /* the last line read was indented: a continuation */
    char last_section[64], last_key[64];
    char section[64];                   /* the section the reader is in, for messages */
    int first_line[GH_ARRAY_LEN(keys)]; /* where each key was set in this file */
};

/* A line that is neither blank, a comment, a [section] nor indented must
 * be key = value. inih also splits on ':', so "listen 127.0.0.1:8181"
 * would read as key "listen 127.0.0.1": catch a missing '=' here and say
 * so. Returns false (with the message in ctx->err) for such a line. */
static bool line_has_equals(struct ini_ctx *ctx, const char *line)
{
    if (ctx->line == 1 && !strncmp(line, "\xef\xbb\xbf", 3))
        line += 3; /* inih skips a UTF-8 byte order mark */
    if (!line[0] || strchr(" \t\r\n;#", line[0]))
        return true;
    if (line[0] == '[') {
        const char *end = strchr(line, ']');
        if (end && (size_t)(end - line - 1) < sizeof ctx->section)
            snprintf(ctx->section, sizeof ctx->section, "%.*s", (int)(end - line - 1), line + 1);
        return true;
    }
    size_t sep = strcspn(line, "=:");
    if (line[sep] == '=')
        return true;
    if (!ctx->err)
        return false;
    /* name the key when the first word is one, and show the line fixed */
    size_t wlen = strcspn(line, " \t:\r\n");
    const char *rest = line + wlen;
    rest += strspn(rest, " \t:");
    int vlen = (int)strcspn(rest, "\r\n");
    char word[64];
    snprintf(word, sizeof word, "%.*s", (int)GH_MIN(wlen, sizeof word - 1), line);
    const struct key_def *k = find_key(ctx->section, word);
    gh_buf_reset(ctx->err);
    if (k && vlen)
        gh_buf_printf(ctx->err, "%s:%d: [%s] %s: the '=' is missing (write %s = %.*s)", ctx->path,
                      ctx->line, k->section, k->key, k->key, GH_MIN(vlen, 200), rest);
    else
        gh_buf_printf(ctx->err,
                      "%s:%d: syntax error: the '=' is missing (expected [section] or key = "
                      "value)",
                      ctx->path, ctx->line);
    return false;
}

/* Debian's inih is built without line numbers in the handler, so the
 * reader counts lines itself. */
static char *ini_read_line(char *str, int num, void *stream)
{
    struct ini_ctx *ctx = stream;
    if (ctx->rc)
        return NULL; /* an error stops the parse */
    char *r = fgets(str, num, ctx->f);
    if (!r)
        return NULL;
    if (!strchr(r, '\n') && !feof(ctx->f)) {
        /* inih would cut the line and read the rest as a new line */
        ctx->line++;
        if (!ctx->err) {
            ctx->rc = GH_EINVAL;
            return NULL;
        }
        gh_buf_reset(ctx->err);
        gh_buf_printf(ctx->err,
                      "%s:%d: line longer than %d characters (continue a long value on "
                      "indented lines)",
                      ctx->path, ctx->line, num - 2);
        ctx->rc = GH_EINVAL;
        ctx->err_line = ctx->line;
        return NULL;
    }
    ctx->line++;
    /* an indented line continues the previous key's value (inih calls the
     * handler again with the same key; on_ini_entry appends) */
    ctx->continued = (r[0] == ' ' || r[0] == '\t') && r[strspn(r, " \t")] != '\n' &&
                     r[strspn(r, " \t")] != '\0' && r[strspn(r, " \t")] != ';' &&
                     r[strspn(r, " \t")] != '#';
    if (!line_has_equals(ctx, r)) {
        ctx->rc = GH_EINVAL;
        ctx->err_line = ctx->line;
        return NULL;
    }
    return r;
}

static int on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *ctx = user;
    int lineno = ctx->line;
    if (ctx->rc)
        return 0;
    ctx->err_line = lineno;
    if (ctx->continued && !strcmp(section, ctx->last_section) && !strcmp(name, ctx->last_key)) {
        const struct key_def *k = find_key(section, name);
        if (!k || k->type != T_STR) {
            set_err(ctx->err, ctx->path, lineno, k, section, name,
                    "only list and text values may continue on indented lines");
            ctx->rc = GH_EINVAL;
            return 0;
        }
        const char *old = *(char *const *)((const char *)ctx->c + k->offset);
        size_t len = strlen(old) + strlen(value) + 2;
        char *joined = malloc(len);
        if (!joined) {
            ctx->rc = GH_ENOMEM;
            return 0;
        }
        snprintf(joined, len, "%s %s", old, value);
        ctx->rc = gh_config_set(ctx->c, section, name, joined, ctx->path, lineno, ctx->err);
        free(joined);
        return ctx->rc == 0;
    }
    snprintf(ctx->last_section, sizeof ctx->last_section, "%s", section);
    snprintf(ctx->last_key, sizeof ctx->last_key, "%s", name);
    if (!*section) {
        set_err(ctx->err, ctx->path, lineno, NULL, "(none)", name,
                "key outside any section (start the file with e.g. [server])");
        ctx->rc = GH_EINVAL;
        return 0;
    }
    /* the same key twice would silently keep the last value */
    const struct key_def *k = find_key(section, name);
    if (k) {
        int *first = &ctx->first_line[k - keys];
        if (*first) {
            set_err(ctx->err, ctx->path, lineno, k, NULL, NULL,
                    "set twice, on line %d and on line %d (keep one)", *first, lineno);
            ctx->rc = GH_EINVAL;
            return 0;
        }
        *first = lineno;
    }
    ctx->rc = gh_config_set(ctx->c, section, name, value, ctx->path, lineno, ctx->err);
    return ctx->rc == 0;
}

int gh_config_load_file(struct gh_config *c, const char *path, struct gh_buf *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (err) {
            gh_buf_reset(err);
            gh_buf_printf(err, "%s: cannot open: %s", path, strerror(errno));
        }
        return GH_EIO;
    }
    struct ini_ctx ctx = {.c = c, .path = path, .err = err, .f = f};
    int rc = ini_parse_stream(ini_read_line, &ctx, on_ini_entry, &ctx);
    int read_errno = ferror(f) ? (errno ? errno : EIO) : 0; /* e.g. EISDIR: fopen accepts a directory */
    fclose(f);
    if (read_errno) {
        if (err) {
            gh_buf_reset(err);
            gh_buf_printf(err, "%s: cannot read: %s", path, strerror(read_errno));
        }
        return GH_EIO;
    }
    /* inih returns the first bad line: a syntax error above the key the
     * handler refused is the one to report */
    if (ctx.rc && !(rc > 0 && rc < ctx.err_line))
        return GH_EINVAL;
    if (rc != 0) {
        if (err) {
            gh_buf_reset(err);
            gh_buf_printf(err, "%s:%d: syntax error (expected [section] or key = value)", path,
                          rc);
        }
        return GH_EINVAL;
    }
    free(c->path);
    c->path = strdup(path);
    return 0;
}

int gh_config_set_assignment(struct gh_config *c, const char *assignment, const char *origin,
                             struct gh_buf *err)
{
    char section[64], key[64];
    const char *dot = strchr(assignment, '.');
    const char *eq = strchr(assignment, '=');
    if (!dot || !eq || dot > eq || (size_t)(dot - assignment) >= sizeof section ||
        (size_t)(eq - dot - 1) >= sizeof key || dot == assignment || eq == dot + 1) {
        if (err) {
            gh_buf_reset(err);
            gh_buf_printf(err, "%s: '%.80s' is not section.key=value", origin, assignment);
        }
        return GH_EINVAL;
    }
    memcpy(section, assignment, (size_t)(dot - assignment));
    section[dot - assignment] = '\0';
    memcpy(key, dot + 1, (size_t)(eq - dot - 1));
    key[eq - dot - 1] = '\0';
    return gh_config_set(c, section, key, eq + 1, origin, 0, err);
}

static const struct {
    const char *env, *section, *key;
} env_aliases[] = {
    {"GATEHOUSE_LISTEN", "server", "listen"},
    {"GATEHOUSE_ADMIN_LISTEN", "server", "admin_listen"},
    {"GATEHOUSE_DATA", "server", "data_dir"},
    {"GATEHOUSE_WORKERS", "server", "workers"},
    {"GATEHOUSE_ADMIN_TOKEN", "secrets", "admin_token"},
    {"GATEHOUSE_HMAC_KEY", "secrets", "hmac_key"},
    {"GATEHOUSE_ENC_KEY", "secrets", "enc_key"},
    {"GATEHOUSE_SECRETS_FILE", "secrets", "file"},
};

int gh_config_apply_env(struct gh_config *c, char **envp, struct gh_buf *err)
{
    static const char prefix[] = "GATEHOUSE_";
    for (char **e = envp; e && *e; e++) {
        if (strncmp(*e, prefix, sizeof prefix - 1))
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        size_t nlen = (size_t)(eq - *e);
        char origin[128];
        snprintf(origin, sizeof origin, "environment %.*s", (int)GH_MIN(nlen, 100), *e);
        bool done = false;
        for (size_t i = 0; i < GH_ARRAY_LEN(env_aliases); i++) {
            if (strlen(env_aliases[i].env) == nlen && !strncmp(*e, env_aliases[i].env, nlen)) {
                int rc = gh_config_set(c, env_aliases[i].section, env_aliases[i].key, eq + 1,
                                       origin, 0, err);
                if (rc)
                    return rc;
                done = true;
            }
        }
        /* GATEHOUSE_<SECTION>__<KEY>, e.g. GATEHOUSE_LIMITS__HEADER_MAX */
        const char *name = *e + sizeof prefix - 1;
        const char *sep = strstr(name, "__");
        if (done || !sep || sep > eq)
            continue;
        char section[64], key[64];
        size_t sl = (size_t)(sep - name), kl = (size_t)(eq - sep - 2);
        if (sl == 0 || kl == 0 || sl >= sizeof section || kl >= sizeof key)
            continue;
        for (size_t i = 0; i < sl; i++)
            section[i] = (char)tolower((unsigned char)name[i]);
        section[sl] = '\0';
        for (size_t i = 0; i < kl; i++)
            key[i] = (char)tolower((unsigned char)sep[2 + i]);
        key[kl] = '\0';
        int rc = gh_config_set(c, section, key, eq + 1, origin, 0, err);
        if (rc)
            return rc;
    }
    return 0;
}

int gh_config_validate(const struct gh_config *c, struct gh_buf *err)
{
    const char *origin = c->path ? c->path : "configuration";
    if (!strcmp(c->server.listen, c->server.admin_listen)) {
        set_err(err, origin, 0, find_key("server", "admin_listen"), NULL, NULL,
                "must differ from [server] listen (%s)", c->server.listen);
        return GH_EINVAL;
    }
    if (!gh_origin_setting_ok(c->server.public_origin)) {
        set_err(err, origin, 0, find_key("server", "public_origin"), NULL, NULL,
                "'%.80s' is not an origin (expected e.g. https://chat.example.com, no path)",
                c->server.public_origin);
        return GH_EINVAL;
    }
    if (strcmp(c->gateway.unknown_fields, "reject") && strcmp(c->gateway.unknown_fields, "drop")) {
        set_err(err, origin, 0, find_key("gateway", "unknown_fields"), NULL, NULL,
                "'%.16s' must be reject or drop", c->gateway.unknown_fields);
        return GH_EINVAL;
    }
    if (c->limits.body_memory < c->gateway.body_max) {
        set_err(err, origin, 0, find_key("limits", "body_memory"), NULL, NULL,
                "(%zu) must hold at least one chat body ([gateway] body_max, %zu)",
                c->limits.body_memory, c->gateway.body_max);
        return GH_EINVAL;
    }
    if (c->limits.max_conns_per_addr > c->limits.max_conns) {
        set_err(err, origin, 0, find_key("limits", "max_conns_per_addr"), NULL, NULL,
                "(%u) cannot exceed [limits] max_conns (%u)", c->limits.max_conns_per_addr,
                c->limits.max_conns);
        return GH_EINVAL;
    }
    if (strcmp(c->store.backend, "sqlite") && strcmp(c->store.backend, "postgres")) {
        set_err(err, origin, 0, find_key("store", "backend"), NULL, NULL,
                "'%.16s' must be sqlite or postgres", c->store.backend);
        return GH_EINVAL;
    }
    if (!strcmp(c->store.backend, "postgres") && !*c->store.url) {
        set_err(err, origin, 0, find_key("store", "url"), NULL, NULL,
                "must be set with [store] backend = postgres (e.g. "
                "postgresql://gatehouse@127.0.0.1:5432/gatehouse)");
        return GH_EINVAL;
    }
    const char *modes[][2] = {{"register_mode", c->redis.register_mode},
                              {"sms_mode", c->redis.sms_mode},
                              {"login_mode", c->redis.login_mode},
                              {"anon_mode", c->redis.anon_mode},
                              {"quota_mode", c->redis.quota_mode}};
    for (size_t i = 0; i < GH_ARRAY_LEN(modes); i++)
        if (strcmp(modes[i][1], "closed") && strcmp(modes[i][1], "local") &&
            strcmp(modes[i][1], "open")) {
            set_err(err, origin, 0, find_key("redis", modes[i][0]), NULL, NULL,
                    "'%.16s' must be closed, local or open", modes[i][1]);
            return GH_EINVAL;
        }
    if (*c->redis.url) {
        struct gh_redis_url u;
        struct gh_buf why;
        gh_buf_init(&why, 512);
        int urc = gh_redis_url_parse(c->redis.url, strlen(c->redis.url), &u, &why);
        if (urc)
            set_err(err, origin, 0, find_key("redis", "url"), NULL, NULL, "%s",
                    why.data ? why.data : "is not a redis:// URL");
        gh_buf_dispose(&why);
        if (urc)
            return GH_EINVAL;
    }
    if (c->limits.max_pending_headers > c->limits.max_conns) {
        set_err(err, origin, 0, find_key("limits", "max_pending_headers"), NULL, NULL,
                "(%u) cannot exceed [limits] max_conns (%u)", c->limits.max_pending_headers,
                c->limits.max_conns);
        return GH_EINVAL;
    }
    return 0;
}

/* Writes v in the largest unit that divides it exactly: 7d, 5m, 64m … */
static void dump_scaled(struct gh_buf *out, uint64_t v, const uint64_t *mul, const char **unit,
                        size_t n)
{
    for (size_t i = n; i-- > 0;) {
        if (v && v % mul[i] == 0) {
            gh_buf_printf(out, "%llu%s\n", (unsigned long long)(v / mul[i]), unit[i]);
            return;
        }
    }
    gh_buf_printf(out, "%llu%s\n", (unsigned long long)v, unit[0]);
}

int gh_config_dump(const struct gh_config *c, struct gh_buf *out)
{
    static const uint64_t dmul[] = {1, SEC, 60 * SEC, HOUR, 24 * HOUR};
    static const char *dunit[] = {"ms", "s", "m", "h", "d"};
    static const uint64_t smul[] = {1, KB, MB, 1024 * MB};
    static const char *sunit[] = {"", "k", "m", "g"};
    const char *section = "";
    for (size_t i = 0; i < GH_ARRAY_LEN(keys); i++) {
        const struct key_def *k = &keys[i];
        if (strcmp(section, k->section)) {
            gh_buf_printf(out, "%s[%s]\n", i ? "\n" : "", k->section);
            section = k->section;
        }
        const char *field = (const char *)c + k->offset;
        gh_buf_printf(out, "; %s\n%s = ", k->help, k->key);
        switch (k->type) {
        case T_HOSTPORT:
            gh_buf_printf(out, "%s\n", *(char *const *)field);
            break;
        case T_STR: {
            /* long lists go on indented continuation lines, split after a
             * comma, so every line stays under inih's line length */
            const char *v = *(char *const *)field;
            size_t col = strlen(k->key) + 3;
            while (strlen(v) + col > 150) {
                const char *cut = NULL;
                for (const char *q = v; *q && (size_t)(q - v) + col < 150; q++)
                    if (*q == ',')
                        cut = q;
                if (!cut)
                    break;
                gh_buf_printf(out, "%.*s\n    ", (int)(cut - v + 1), v);
                v = cut + 1;
                while (*v == ' ')
                    v++;
                col = 4;
            }
            gh_buf_printf(out, "%s\n", v);
            break;
        }
        case T_HEXKEY:
        case T_TOKEN:
            gh_buf_printf(out, "%s\n", **(char *const *)field ? "(set)" : "");
            break;
        case T_DSN: {
            char shown[4200];
            gh_pgurl_redact(*(char *const *)field, shown, sizeof shown);
            gh_buf_printf(out, "%s\n", shown);
            break;
        }
        case T_UINT:
            gh_buf_printf(out, "%u\n", *(const unsigned *)field);
            break;
        case T_SIZE:
            dump_scaled(out, *(const size_t *)field, smul, sunit, GH_ARRAY_LEN(smul));
            break;
        case T_DURATION:
            dump_scaled(out, *(const uint64_t *)field, dmul, dunit, GH_ARRAY_LEN(dmul));
            break;
        case T_BOOL:
            gh_buf_printf(out, "%s\n", *(const bool *)field ? "true" : "false");
            break;
        case T_LEVEL:
            gh_buf_printf(out, "%s\n", level_names[*(const enum gh_log_level *)field]);
            break;
        }
    }
    return 0;
}
