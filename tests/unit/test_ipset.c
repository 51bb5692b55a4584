/* Unit tests of the IP sets (shield/ipset.h): parsing and formatting of
 * prefixes, the tree on IPv4, IPv6, overlaps, /0, /32, /128 and
 * IPv4-mapped IPv6, the list-file format with malformed lines, the live
 * list's add/remove/reload, a comparison against a linear scan, and
 * readers running while a writer swaps trees. */
#include "test_util.h"

#include "shield/ipset.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>

static struct gh_cidr C(const char *s)
{
    struct gh_cidr c;
    assert_int_equal(gh_cidr_parse(s, strlen(s), &c), 0);
    return c;
}

static struct gh_ipset *build(const char **list, size_t n)
{
    struct gh_cidr cs[32];
    assert_true(n <= 32);
    for (size_t i = 0; i < n; i++)
        cs[i] = C(list[i]);
    struct gh_ipset *s = gh_ipset_build(cs, n);
    assert_non_null(s);
    return s;
}

static bool contains(const struct gh_ipset *s, const char *a)
{
    struct gh_addr x = tu_addr(a);
    return gh_ipset_contains(s, &x);
}

static void cidr_parse_format(void **state)
{
    static const struct {
        const char *in, *out;
    } ok[] = {
        {"192.0.2.0/24", "192.0.2.0/24"},   {"192.0.2.77/24", "192.0.2.0/24"},
        {"192.0.2.7", "192.0.2.7/32"},      {"0.0.0.0/0", "0.0.0.0/0"},
        {"10.1.2.3/8", "10.0.0.0/8"},       {"2001:db8::/32", "2001:db8::/32"},
        {"2001:db8::1", "2001:db8::1/128"}, {"::/0", "::/0"},
        {"2001:db8:ffff::/33", "2001:db8:8000::/33"}, {"::ffff:192.0.2.0/120", "192.0.2.0/24"},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(ok); i++) {
        struct gh_cidr c = C(ok[i].in);
        char t[64];
        gh_cidr_format(&c, t, sizeof t);
        assert_string_equal(t, ok[i].out);
    }
    static const char *bad[] = {"",         "192.0.2.0/33", "192.0.2/24", "2001:db8::/129",
                                "1.2.3.4/", "1.2.3.4/x",    "host.example", "1.2.3.4/-1",
                                "1.2.3.256"};
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        struct gh_cidr c;
        assert_int_equal(gh_cidr_parse(bad[i], strlen(bad[i]), &c), GH_EINVAL);
    }
}

static void tree_v4(void **state)
{
    const char *list[] = {"192.0.2.0/24", "198.51.100.7", "10.0.0.0/8", "10.1.0.0/16"};
    struct gh_ipset *s = build(list, 4);
    assert_true(contains(s, "192.0.2.0"));
    assert_true(contains(s, "192.0.2.255"));
    assert_false(contains(s, "192.0.3.0"));
    assert_false(contains(s, "192.0.1.255"));
    assert_true(contains(s, "198.51.100.7"));
    assert_false(contains(s, "198.51.100.6"));
    assert_false(contains(s, "198.51.100.8"));
    assert_true(contains(s, "10.200.1.1"));
    assert_true(contains(s, "10.1.1.1")); /* overlap: both contain it */
    assert_false(contains(s, "11.0.0.0"));
    assert_false(contains(s, "2001:db8::1"));
    assert_int_equal(gh_ipset_count(s), 4);
    gh_ipset_unref(s);
}

static void tree_v6(void **state)
{
    const char *list[] = {"2001:db8::/32", "2001:db8:1::/48", "2a00:1450::1", "fe80::/10"};
    struct gh_ipset *s = build(list, 4);
    assert_true(contains(s, "2001:db8::"));
    assert_true(contains(s, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(contains(s, "2001:db9::"));
    assert_true(contains(s, "2001:db8:1::5"));
    assert_true(contains(s, "2a00:1450::1"));
    assert_false(contains(s, "2a00:1450::2"));
    assert_false(contains(s, "2a00:1450::0"));
    assert_true(contains(s, "febf::1"));
    assert_false(contains(s, "fec0::1"));
    assert_false(contains(s, "192.0.2.1"));
    gh_ipset_unref(s);
}

static void tree_edges(void **state)
{
    /* /0 of IPv4: every IPv4 address, no IPv6 one */
    const char *l1[] = {"0.0.0.0/0"};
    struct gh_ipset *s = build(l1, 1);
    assert_true(contains(s, "0.0.0.0"));
    assert_true(contains(s, "255.255.255.255"));
    assert_true(contains(s, "::ffff:1.2.3.4"));
    assert_false(contains(s, "2001:db8::1"));
    gh_ipset_unref(s);
    /* ::/0: everything (IPv4 included, as mapped addresses) */
    const char *l2[] = {"::/0"};
    s = build(l2, 1);
    assert_true(contains(s, "2001:db8::1"));
    assert_true(contains(s, "::"));
    assert_true(contains(s, "1.2.3.4"));
    gh_ipset_unref(s);
    /* /32 and /128 exactly; the empty set */
    const char *l3[] = {"203.0.113.9/32", "2001:db8::9/128"};
    s = build(l3, 2);
    assert_true(contains(s, "203.0.113.9"));
    assert_false(contains(s, "203.0.113.8"));
    assert_true(contains(s, "2001:db8::9"));
    assert_false(contains(s, "2001:db8::8"));
    gh_ipset_unref(s);
    s = gh_ipset_build(NULL, 0);
    assert_false(contains(s, "1.2.3.4"));
    assert_false(gh_ipset_contains(NULL, &(struct gh_addr){.family = AF_INET}));
    gh_ipset_unref(s);
    /* v4-mapped v6 in the list matches plain v4, and the reverse */
    const char *l4[] = {"::ffff:192.0.2.0/120", "198.51.100.0/24"};
    s = build(l4, 2);
    assert_true(contains(s, "192.0.2.99"));
    assert_true(contains(s, "::ffff:198.51.100.1"));
    assert_false(contains(s, "::ffff:198.51.101.1"));
    assert_false(contains(s, "::198.51.100.1")); /* v4-compatible is not mapped */
    gh_ipset_unref(s);
    /* insertion order of nested prefixes does not matter; duplicates count once */
    const char *l5[] = {"10.1.2.0/24", "10.0.0.0/8", "10.1.0.0/16", "10.0.0.0/8", "10.1.2.3"};
    s = build(l5, 5);
    assert_int_equal(gh_ipset_count(s), 4);
    assert_true(contains(s, "10.9.9.9"));
    assert_false(contains(s, "11.1.2.3"));
    gh_ipset_unref(s);
}

/* Random prefixes against a linear scan of the same list. */
static void tree_matches_linear_scan(void **state)
{
    srand(7);
    struct gh_cidr cs[400];
    for (int i = 0; i < 400; i++) {
        memset(&cs[i], 0, sizeof cs[i]);
        if (i % 2) {
            cs[i].bytes[10] = cs[i].bytes[11] = 0xff;
            cs[i].bytes[12] = (uint8_t)(rand() % 4 + 10); /* dense: 10..13.x */
            for (int k = 13; k < 16; k++)
                cs[i].bytes[k] = (uint8_t)rand();
            cs[i].len = (uint8_t)(96 + 8 + rand() % 25);
        } else {
            cs[i].bytes[0] = 0x20;
            cs[i].bytes[1] = 0x01;
            for (int k = 2; k < 16; k++)
                cs[i].bytes[k] = (uint8_t)(rand() % 3);
            cs[i].len = (uint8_t)(16 + rand() % 113);
        }
        char t[64];
        gh_cidr_format(&cs[i], t, sizeof t);
        cs[i] = C(t); /* canonical (host bits cleared) */
    }
    struct gh_ipset *s = gh_ipset_build(cs, 400);
    assert_non_null(s);
    for (int q = 0; q < 20000; q++) {
        struct gh_cidr a;
        memset(&a, 0, sizeof a);
        if (q % 2) {
            a.bytes[10] = a.bytes[11] = 0xff;
            a.bytes[12] = (uint8_t)(rand() % 4 + 10);
            for (int k = 13; k < 16; k++)
                a.bytes[k] = (uint8_t)rand();
        } else {
            a.bytes[0] = 0x20;
            a.bytes[1] = 0x01;
            for (int k = 2; k < 16; k++)
                a.bytes[k] = (uint8_t)(rand() % 3);
        }
        a.len = 128;
        bool expect = false;
        for (int i = 0; i < 400 && !expect; i++) {
            struct gh_cidr m = a;
            char t[64];
            m.len = cs[i].len;
            gh_cidr_format(&m, t, sizeof t);
            struct gh_cidr mm = C(t);
            expect = gh_cidr_equal(&mm, &cs[i]);
        }
        assert_int_equal(gh_ipset_contains_cidr(s, &a), expect);
    }
    gh_ipset_unref(s);
}

static void list_file_format(void **state)
{
    char dir[256], path[512];
    tu_mkdtemp(dir, sizeof dir);
    tu_write_file(dir, "drop.txt",
                  "; Spamhaus DROP List 2025/01/28 - (c) 2025 The Spamhaus Project\n"
                  "; Last-Modified: Tue, 28 Jan 2025 00:00:00 GMT\n"
                  "1.10.16.0/20 ; SBL256894\n"
                  "# FireHOL style comment\n"
                  "\n"
                  "   \t\n"
                  "2.57.122.0/24\n"
                  "192.0.2.7\n"
                  "not-an-address\n"
                  "2001:db8::/32 # documentation\n"
                  "10.0.0.0/33\n"
                  "1.2.3.4 5.6.7.8\n"
                  "203.0.113.0/24\r\n",
                  path, sizeof path);
    struct gh_iplist *l = gh_iplist_new(1000);
    struct gh_buf report;
    gh_buf_init(&report, 4096);
    unsigned bad = 99;
    assert_int_equal(gh_iplist_load_file(l, path, &report, &bad), 0);
    assert_int_equal(bad, 3);
    tu_assert_contains(report.data, "drop.txt:9: malformed entry 'not-an-address'");
    tu_assert_contains(report.data, "drop.txt:11: malformed entry '10.0.0.0/33'");
    tu_assert_contains(report.data, "drop.txt:12: malformed entry '1.2.3.4 5.6.7.8'");
    struct gh_iplist_info info;
    gh_iplist_info(l, &info);
    assert_int_equal(info.file_entries, 5);
    assert_int_equal(info.bad_lines, 3);
    struct gh_addr a = tu_addr("1.10.31.255");
    assert_true(gh_iplist_contains(l, &a));
    a = tu_addr("1.10.32.0");
    assert_false(gh_iplist_contains(l, &a));
    a = tu_addr("2001:db8::77");
    assert_true(gh_iplist_contains(l, &a));
    a = tu_addr("203.0.113.200");
    assert_true(gh_iplist_contains(l, &a));
    /* a missing file leaves the list as it was */
    gh_buf_reset(&report);
    assert_int_equal(gh_iplist_load_file(l, "/nonexistent/drop.txt", &report, &bad), GH_EIO);
    tu_assert_contains(report.data, "cannot open");
    a = tu_addr("2.57.122.1");
    assert_true(gh_iplist_contains(l, &a));
    /* the cap */
    struct gh_iplist *small = gh_iplist_new(3);
    assert_int_equal(gh_iplist_load_file(small, path, NULL, &bad), GH_ETOOBIG);
    gh_iplist_free(small);
    gh_buf_dispose(&report);
    gh_iplist_free(l);
    tu_rmtree(dir);
}

static void list_runtime_entries(void **state)
{
    struct gh_iplist *l = gh_iplist_new(100);
    const char *file = "198.51.100.0/24\n";
    assert_int_equal(gh_iplist_load_text(l, file, strlen(file), "f", NULL, NULL), 0);
    struct gh_cidr c = C("192.0.2.0/24");
    struct gh_addr a = tu_addr("192.0.2.1"), b = tu_addr("198.51.100.1");
    assert_false(gh_iplist_contains(l, &a));
    assert_int_equal(gh_iplist_add(l, &c), 0);
    assert_int_equal(gh_iplist_add(l, &c), GH_EEXIST);
    assert_true(gh_iplist_contains(l, &a));
    /* reloading the file keeps run-time entries */
    assert_int_equal(gh_iplist_load_text(l, file, strlen(file), "f", NULL, NULL), 0);
    assert_true(gh_iplist_contains(l, &a));
    struct gh_buf j;
    gh_buf_init(&j, 1024);
    assert_int_equal(gh_iplist_runtime_json(l, &j), 0);
    assert_string_equal(j.data, "[\"192.0.2.0/24\"]");
    gh_buf_dispose(&j);
    assert_int_equal(gh_iplist_remove(l, &c), 0);
    assert_false(gh_iplist_contains(l, &a));
    assert_int_equal(gh_iplist_remove(l, &c), GH_ENOTFOUND);
    /* removing a file entry works until the next load */
    struct gh_cidr f = C("198.51.100.0/24");
    assert_true(gh_iplist_contains(l, &b));
    assert_int_equal(gh_iplist_remove(l, &f), 0);
    assert_false(gh_iplist_contains(l, &b));
    struct gh_ipset *snap = gh_iplist_snapshot(l);
    assert_int_equal(gh_iplist_load_text(l, file, strlen(file), "f", NULL, NULL), 0);
    assert_true(gh_iplist_contains(l, &b));
    assert_false(gh_ipset_contains(snap, &b)); /* an old snapshot stays valid and unchanged */
    gh_ipset_unref(snap);
    gh_iplist_free(l);
}

struct reader_arg {
    struct gh_iplist *l;
    atomic_bool *stop;
    atomic_ulong lookups;
    unsigned long hits;
};

static void *reader(void *p)
{
    struct reader_arg *r = p;
    struct gh_addr a = tu_addr("192.0.2.1"), always = tu_addr("203.0.113.5");
    while (!atomic_load(r->stop)) {
        r->hits += gh_iplist_contains(r->l, &a);
        if (!gh_iplist_contains(r->l, &always))
            abort(); /* present in every version of the list */
        atomic_fetch_add(&r->lookups, 1);
    }
    return NULL;
}

/* Readers run while a writer swaps trees (ASan catches a use after free). */
static void list_concurrent_readers(void **state)
{
    struct gh_iplist *l = gh_iplist_new(100);
    const char *file = "203.0.113.0/24\n";
    assert_int_equal(gh_iplist_load_text(l, file, strlen(file), "f", NULL, NULL), 0);
    atomic_bool stop = false;
    pthread_t th[3];
    struct reader_arg args[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (struct reader_arg){.l = l, .stop = &stop};
        pthread_create(&th[i], NULL, reader, &args[i]);
    }
    /* on a loaded machine the readers may not have run yet: wait for each
     * to look once, so the swaps below really race with readers */
    for (int i = 0; i < 3; i++)
        while (atomic_load(&args[i].lookups) == 0)
            sched_yield();
    struct gh_cidr c = C("192.0.2.0/24");
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(gh_iplist_add(l, &c), 0);
        assert_int_equal(gh_iplist_remove(l, &c), 0);
    }
    atomic_store(&stop, true);
    unsigned long total = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        total += atomic_load(&args[i].lookups);
    }
    assert_true(total > 0);
    gh_iplist_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cidr_parse_format),      cmocka_unit_test(tree_v4),
        cmocka_unit_test(tree_v6),                cmocka_unit_test(tree_edges),
        cmocka_unit_test(tree_matches_linear_scan), cmocka_unit_test(list_file_format),
        cmocka_unit_test(list_runtime_entries),   cmocka_unit_test(list_concurrent_readers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
