/* Unit tests of the metrics registry (obs/metrics.h): one block per family
 * however its entries were registered, counter functions typed counter,
 * scaled gauges printed in the base unit, whole numbers printed exactly. */
#include "test_util.h"

#include "obs/metrics.h"

static uint64_t big_total(void *data)
{
    (void)data;
    return 18446744073709551615ull; /* UINT64_MAX: %g would print 1.84467e+19 */
}

static double whole_gauge(void *data)
{
    (void)data;
    return 123456789012.0;
}

static double half(void *data)
{
    (void)data;
    return 0.5;
}

static void families_are_blocks(void **state)
{
    (void)state;
    _Atomic uint64_t *a = gh_metrics_counter("gatehouse_t_a_total", "k=\"1\"", "a help");
    gh_metrics_gauge("gatehouse_t_b", "", "b help");
    _Atomic uint64_t *a2 = gh_metrics_counter("gatehouse_t_a_total", "k=\"2\"", "a help");
    _Atomic uint64_t *p = gh_metrics_gauge_scaled("gatehouse_t_pressure_ratio", "", "p", 1000);
    assert_non_null(a);
    assert_non_null(a2);
    assert_non_null(p);
    assert_ptr_equal(gh_metrics_counter("gatehouse_t_a_total", "k=\"1\"", "a help"), a);
    atomic_store(a, 3);
    atomic_store(a2, 9007199254740993ull); /* 2^53 + 1: not a double */
    atomic_store(p, 1250);
    assert_int_equal(gh_metrics_counter_func("gatehouse_t_big_total", "", "big", big_total, NULL),
                     0);
    assert_int_equal(gh_metrics_gauge_func("gatehouse_t_whole", "", "w", whole_gauge, NULL), 0);
    assert_int_equal(gh_metrics_gauge_func("gatehouse_t_half_ratio", "", "h", half, NULL), 0);

    struct gh_buf out;
    gh_buf_init(&out, 1 << 16);
    gh_metrics_render_registry(&out);
    assert_non_null(out.data);
    assert_non_null(strstr(out.data, "# HELP gatehouse_t_a_total a help\n"
                                     "# TYPE gatehouse_t_a_total counter\n"
                                     "gatehouse_t_a_total{k=\"1\"} 3\n"
                                     "gatehouse_t_a_total{k=\"2\"} 9007199254740993\n"
                                     "# HELP gatehouse_t_b b help\n"
                                     "# TYPE gatehouse_t_b gauge\n"
                                     "gatehouse_t_b 0\n"));
    assert_non_null(strstr(out.data, "# TYPE gatehouse_t_pressure_ratio gauge\n"
                                     "gatehouse_t_pressure_ratio 1.25\n"));
    assert_non_null(strstr(out.data, "# TYPE gatehouse_t_big_total counter\n"
                                     "gatehouse_t_big_total 18446744073709551615\n"));
    assert_non_null(strstr(out.data, "gatehouse_t_whole 123456789012\n"));
    assert_non_null(strstr(out.data, "gatehouse_t_half_ratio 0.5\n"));
    /* one HELP per family */
    const char *first = strstr(out.data, "# HELP gatehouse_t_a_total");
    assert_null(strstr(first + 1, "# HELP gatehouse_t_a_total"));
    gh_buf_dispose(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(families_are_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
