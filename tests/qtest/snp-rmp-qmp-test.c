/*
 * QTest for the snp-rmp object's QMP, HMP and migration input
 *
 * Hostile arguments (SPAs up to 2^64 - 1, counts running past the end of
 * RAM) and corrupt migration streams must be clear errors that change
 * nothing (docs/system/i386/amd-iommu-snp.rst, DESIGN.md section 3: "SPAs
 * beyond RAM: errors", "RMP operations ... fail with a clear QMP error,
 * leaving the RMP unchanged").
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qemu/bswap.h"
#include "libqtest.h"
#include "snp-rmp-qtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"

#define K4 (4 * KiB)
#define M2 (2 * MiB)

/*
 * RAM: [0, 256M) and [4G, 4G + 256M); the PCI hole and more lie between
 * the two ranges.
 */
#define MACHINE     "-M q35,max-ram-below-4g=256M -m 512M "
#define LOW_END     (256 * MiB)
#define HIGH_START  (4 * GiB)
#define RAM_END     (HIGH_START + 256 * MiB)
#define PCI_HOLE    0xe0000000ULL

#define TOP_2M      0xffffffffffe00000ULL
#define TOP_4K      0xfffffffffffff000ULL

static QTestState *start(void)
{
    return qtest_init(MACHINE "-object snp-rmp,id=rmp0 "
                      "-device amd-iommu,dma-remap=on,snp=on,rmp=rmp0");
}

/* Entries that the test sets first and that nothing may change */
static void set_known(QTestState *qts)
{
    qtest_qmp_assert_success(qts, "{ 'execute': 'snp-rmp-update', "
        "'arguments': { 'spa': %" PRIu64 ", 'page-size': '2m',"
        " 'assigned': true, 'asid': 3, 'gpa': %" PRIu64 " } }",
        (uint64_t)M2, (uint64_t)(2 * M2));
    qtest_qmp_assert_success(qts, "{ 'execute': 'snp-rmp-update', "
        "'arguments': { 'spa': %" PRIu64 ", 'page-size': '4k',"
        " 'assigned': true, 'asid': 9, 'gpa': 8192 } }",
        (uint64_t)(LOW_END - K4));
    qtest_qmp_assert_success(qts, "{ 'execute': 'snp-rmp-update', "
        "'arguments': { 'spa': %" PRIu64 ", 'page-size': '2m',"
        " 'assigned': false } }", (uint64_t)(RAM_END - M2));
}

static void assert_known(QTestState *qts)
{
    snp_rmp_assert_entry(qts, M2, "2m", true, 3, 2 * M2);
    snp_rmp_assert_entry(qts, M2 + 511 * K4, "2m", true, 3, 2 * M2 + 511 * K4);
    snp_rmp_assert_entry(qts, LOW_END - K4, "4k", true, 9, 8192);
    snp_rmp_assert_entry(qts, LOW_END - 2 * K4, "4k", false, 0, 0);
    snp_rmp_assert_entry(qts, RAM_END - M2, "2m", false, 0, 0);
    snp_rmp_assert_entry(qts, RAM_END - K4, "2m", false, 0, 511 * K4);
    snp_rmp_assert_entry(qts, HIGH_START, "4k", false, 0, 0);
    snp_rmp_assert_entry(qts, 0, "4k", false, 0, 0);
}

static void G_GNUC_PRINTF(3, 4) assert_error(QTestState *qts,
                                             const char *needle,
                                             const char *fmt, ...)
{
    va_list ap;
    QDict *r, *err;

    va_start(ap, fmt);
    r = qtest_vqmp(qts, fmt, ap);
    va_end(ap);
    err = qdict_get_qdict(r, "error");
    g_assert_nonnull(err);
    g_test_message("error: %s", qdict_get_str(err, "desc"));
    g_assert_nonnull(strstr(qdict_get_str(err, "desc"), needle));
    qobject_unref(r);
}

static void assert_update_fails(QTestState *qts, uint64_t spa,
                                const char *size, const char *needle)
{
    assert_error(qts, needle, "{ 'execute': 'snp-rmp-update',"
                 " 'arguments': { 'spa': %" PRIu64 ", 'page-size': %s,"
                 " 'assigned': true, 'asid': 1, 'gpa': 0 } }", spa, size);
    assert_error(qts, needle, "{ 'execute': 'snp-rmp-update',"
                 " 'arguments': { 'spa': %" PRIu64 ", 'page-size': %s,"
                 " 'assigned': false } }", spa, size);
}

static void assert_psmash_fails(QTestState *qts, uint64_t spa,
                                const char *needle)
{
    assert_error(qts, needle, "{ 'execute': 'snp-rmp-psmash',"
                 " 'arguments': { 'spa': %" PRIu64 " } }", spa);
}

static void assert_query_fails(QTestState *qts, uint64_t spa,
                               uint32_t count, const char *needle)
{
    assert_error(qts, needle, "{ 'execute': 'query-snp-rmp',"
                 " 'arguments': { 'spa': %" PRIu64 ", 'count': %u } }",
                 spa, count);
}

static void assert_alive(QTestState *qts)
{
    QDict *r = qtest_qmp(qts, "{ 'execute': 'query-status' }");

    g_assert_nonnull(qdict_get_qdict(r, "return"));
    qobject_unref(r);
}

/* SPAs outside RAM, up to 2^64 - 1 (issue 8, defect 1) */
static void test_hostile_spa(void)
{
    QTestState *qts = start();
    static const uint64_t not_ram_2m[] = {
        TOP_2M, 0x8000000000000000ULL, 1ULL << 40, RAM_END, PCI_HOLE,
        LOW_END, HIGH_START - M2,
    };
    char *out;

    set_known(qts);

    for (unsigned i = 0; i < G_N_ELEMENTS(not_ram_2m); i++) {
        uint64_t spa = not_ram_2m[i];

        g_test_message("SPA 0x%" PRIx64, spa);
        assert_update_fails(qts, spa, "2m", "not system RAM");
        assert_update_fails(qts, spa, "4k", "not system RAM");
        assert_update_fails(qts, spa + M2 - K4, "4k", "not system RAM");
        assert_psmash_fails(qts, spa, "not system RAM");
        assert_alive(qts);
    }
    assert_update_fails(qts, TOP_4K, "2m", "not aligned");
    assert_update_fails(qts, TOP_4K, "4k", "not system RAM");
    assert_psmash_fails(qts, TOP_4K, "not aligned");

    /* queries: the first page must be RAM, the last below RAM's end */
    assert_query_fails(qts, TOP_4K, 1, "beyond RAM");
    assert_query_fails(qts, TOP_4K, 4096, "beyond RAM");
    assert_query_fails(qts, TOP_2M, UINT32_MAX, "beyond RAM");
    assert_query_fails(qts, RAM_END, 1, "beyond RAM");
    assert_query_fails(qts, RAM_END - K4, 4096, "beyond RAM");
    assert_query_fails(qts, RAM_END - 4095 * K4, 4096, "beyond RAM");
    assert_query_fails(qts, PCI_HOLE, 1, "not system RAM");
    assert_query_fails(qts, LOW_END, 4096, "not system RAM");
    assert_error(qts, "not 4K aligned", "{ 'execute': 'query-snp-rmp',"
                 " 'arguments': { 'spa': %" PRIu64 " } }", UINT64_MAX);
    assert_alive(qts);

    /* HMP reaches the same code */
    out = qtest_hmp(qts, "info snp-rmp 0x%" PRIx64 " 4096", (uint64_t)TOP_4K);
    g_assert_nonnull(strstr(out, "beyond RAM"));
    g_free(out);
    out = qtest_hmp(qts, "info snp-rmp 0x%" PRIx64 " 4096",
                    (uint64_t)(RAM_END - K4));
    g_assert_nonnull(strstr(out, "beyond RAM"));
    g_free(out);
    out = qtest_hmp(qts, "info snp-rmp 0x%" PRIx64, (uint64_t)TOP_2M);
    g_assert_nonnull(strstr(out, "beyond RAM"));
    g_free(out);
    assert_alive(qts);

    assert_known(qts);
    qtest_quit(qts);
}

/* Queries that stay in RAM still work, across the hole too */
static void test_query_in_ram(void)
{
    QTestState *qts = start();
    QDict *r;
    QList *list;

    set_known(qts);
    /* the last 4096 pages of RAM */
    r = qtest_qmp(qts, "{ 'execute': 'query-snp-rmp', 'arguments': {"
                  " 'spa': %" PRIu64 ", 'count': 4096 } }",
                  (uint64_t)(RAM_END - 4096 * K4));
    list = qdict_get_qlist(r, "return");
    g_assert_nonnull(list);
    g_assert_cmpuint(qlist_size(list), ==, 4096);
    qobject_unref(r);
    /* from the last pages of low RAM to the first of high RAM */
    r = qtest_qmp(qts, "{ 'execute': 'query-snp-rmp', 'arguments': {"
                  " 'spa': %" PRIu64 ", 'count': %u } }",
                  (uint64_t)(LOW_END - 2 * K4),
                  (unsigned)((HIGH_START - LOW_END) / K4 + 3));
    list = qdict_get_qlist(r, "return");
    g_assert_nonnull(list);
    /* capped at 4096 pages, the hole skipped */
    g_assert_cmpuint(qlist_size(list), ==, 2);
    qobject_unref(r);
    assert_known(qts);
    qtest_quit(qts);
}

/* Migration */

static void wait_migration(QTestState *qts, const char *want)
{
    QDict *r;
    const char *status;

    for (;;) {
        r = qtest_qmp(qts, "{ 'execute': 'query-migrate' }");
        status = qdict_get_try_str(qdict_get_qdict(r, "return"), "status");
        if (status && g_str_equal(status, want)) {
            qobject_unref(r);
            return;
        }
        g_assert_true(!status || (!g_str_equal(status, "failed") &&
                                  !g_str_equal(status, "completed")));
        qobject_unref(r);
        g_usleep(10 * 1000);
    }
}

/*
 * The one changed entry of the source: a 2M private entry.  A record is
 * the SPA with flags in its low bits, the GPA and the ASID.
 */
#define SRC_SPA     (3 * M2)
#define SRC_GPA     (5 * M2)
#define SRC_ASID    0x5a5a

static char *save_state(const char *dir)
{
    char *file = g_build_filename(dir, "state", NULL);
    QTestState *from = qtest_init(MACHINE "-object snp-rmp,id=rmp0");
    g_autofree char *uri = g_strdup_printf("file:%s", file);

    qtest_qmp_assert_success(from, "{ 'execute': 'snp-rmp-update', "
        "'arguments': { 'spa': %" PRIu64 ", 'page-size': '2m',"
        " 'assigned': true, 'asid': %u, 'gpa': %" PRIu64 " } }",
        (uint64_t)SRC_SPA, SRC_ASID, (uint64_t)SRC_GPA);
    qtest_qmp_assert_success(from, "{ 'execute': 'migrate', 'arguments': {"
                             " 'uri': %s } }", uri);
    wait_migration(from, "completed");
    qtest_quit(from);
    return file;
}

/* The offset of the record in the saved stream */
static size_t find_record(const uint8_t *buf, size_t len)
{
    uint8_t rec[20];
    size_t found = 0;
    unsigned n = 0;

    stq_le_p(rec, SRC_SPA | 3);             /* 2M, assigned */
    stq_le_p(rec + 8, SRC_GPA);
    stl_le_p(rec + 16, SRC_ASID);
    for (size_t i = 0; i + sizeof(rec) <= len; i++) {
        if (!memcmp(buf + i, rec, sizeof(rec))) {
            found = i;
            n++;
        }
    }
    g_assert_cmpuint(n, ==, 1);
    return found;
}

typedef enum Corruption {
    INTACT,
    SPA_TOP_2M,         /* the record's SPA: the last 2M below 2^64 */
    SPA_TOP_4K,         /* a 4K record at the last 4K below 2^64 */
    SPA_HOLE,           /* a 2M record in the PCI hole */
    SPA_BEYOND,         /* a 2M record just past the end of RAM */
    SPA_UNALIGNED,      /* a 2M record at a 4K-aligned SPA */
    UNKNOWN_FLAGS,      /* flag bits that mean nothing */
    LEN_HUGE,           /* the record length: 4G - 16 bytes */
    LEN_ODD,            /* the record length: not a whole record */
} Corruption;

static void load_state(const char *file, Corruption c)
{
    g_autofree char *bad = g_strdup_printf("%s.%d", file, c);
    g_autofree char *uri = g_strdup_printf("file:%s", bad);
    g_autofree uint8_t *buf = NULL;
    g_autoptr(GError) err = NULL;
    QTestState *to;
    size_t len, rec;

    g_assert_true(g_file_get_contents(file, (char **)&buf, &len, &err));
    rec = find_record(buf, len);
    switch (c) {
    case INTACT:
        break;
    case SPA_TOP_2M:
        stq_le_p(buf + rec, TOP_2M | 3);
        break;
    case SPA_TOP_4K:
        stq_le_p(buf + rec, TOP_4K | 2);
        break;
    case SPA_HOLE:
        stq_le_p(buf + rec, PCI_HOLE | 3);
        break;
    case SPA_BEYOND:
        stq_le_p(buf + rec, RAM_END | 3);
        break;
    case SPA_UNALIGNED:
        stq_le_p(buf + rec, (SRC_SPA + K4) | 3);
        break;
    case UNKNOWN_FLAGS:
        stq_le_p(buf + rec, SRC_SPA | 3 | 0x100);
        break;
    case LEN_HUGE:
        g_assert_cmpuint(ldl_be_p(buf + rec - 4), ==, 24);
        stl_be_p(buf + rec - 4, 0xfffffff0);
        break;
    case LEN_ODD:
        g_assert_cmpuint(ldl_be_p(buf + rec - 4), ==, 24);
        stl_be_p(buf + rec - 4, 25);
        break;
    }
    g_assert_true(g_file_set_contents(bad, (char *)buf, len, &err));

    to = qtest_init(MACHINE "-object snp-rmp,id=rmp0 -incoming defer");
    /* an entry of the destination, which a failed load must keep */
    qtest_qmp_assert_success(to, "{ 'execute': 'snp-rmp-update', "
        "'arguments': { 'spa': %" PRIu64 ", 'page-size': '4k',"
        " 'assigned': true, 'asid': 7, 'gpa': 4096 } }",
        (uint64_t)(HIGH_START + K4));
    qtest_qmp_assert_success(to, "{ 'execute': 'migrate-incoming',"
                             " 'arguments': { 'uri': %s,"
                             " 'exit-on-error': false } }", uri);
    wait_migration(to, c == INTACT ? "completed" : "failed");
    assert_alive(to);
    if (c == INTACT) {
        snp_rmp_assert_entry(to, SRC_SPA + K4, "2m", true, SRC_ASID,
                             SRC_GPA + K4);
        snp_rmp_assert_entry(to, HIGH_START + K4, "4k", false, 0, 0);
    } else {
        snp_rmp_assert_entry(to, SRC_SPA, "4k", false, 0, 0);
        snp_rmp_assert_entry(to, HIGH_START + K4, "4k", true, 7, 4096);
        snp_rmp_assert_entry(to, RAM_END - K4, "4k", false, 0, 0);
    }
    qtest_quit(to);
    unlink(bad);
}

static void test_migration_corrupt(void)
{
    g_autofree char *dir = g_dir_make_tmp("snp-rmp-qmp-XXXXXX", NULL);
    g_autofree char *file = save_state(dir);

    for (Corruption c = INTACT; c <= LEN_ODD; c++) {
        g_test_message("corruption %d", c);
        load_state(file, c);
    }
    unlink(file);
    rmdir(dir);
}

static QList *query_bindings(QTestState *qts)
{
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'query-snp-iommu-bindings' }");
    QList *list;

    g_assert(qdict_haskey(rsp, "return"));
    list = qobject_ref(qdict_get_qlist(rsp, "return"));
    qobject_unref(rsp);
    return list;
}

/*
 * Issue 9 defect 6: a bound device that is unplugged loses its binding.
 * Before, the binding's reference kept the device from ever being
 * deleted (no DEVICE_DELETED).  The unplug request completes at the
 * system reset, once the root port has powered the slot off.
 */
static void test_binding_unplug(void)
{
    QTestState *qts = qtest_init("-M q35 -object snp-rmp,id=rmp0 "
                                 "-device amd-iommu,dma-remap=on,snp=on "
                                 "-device pcie-root-port,id=p1,chassis=1 "
                                 "-device edu,id=edu1,bus=p1 "
                                 "-device edu,id=edu2");
    bool deleted = false;
    QList *list;
    QDict *b;

    qtest_qmp_assert_success(qts, "{ 'execute': 'snp-iommu-bind-device', "
                             "'arguments': { 'device': 'edu1', 'asid': 5 } }");
    qtest_qmp_assert_success(qts, "{ 'execute': 'snp-iommu-bind-device', "
                             "'arguments': { 'device': 'edu2', 'asid': 6 } }");
    list = query_bindings(qts);
    g_assert_cmpuint(qlist_size(list), ==, 2);
    qobject_unref(list);

    qtest_qmp_device_del_send(qts, "edu1");
    qtest_system_reset_nowait(qts);
    /* the root port powers the slot off: its timers run on virtual time */
    for (int i = 0; i < 100 && !deleted; i++) {
        QDict *ev;

        qtest_clock_step(qts, 100 * 1000 * 1000);
        qtest_qmp_assert_success(qts, "{ 'execute': 'query-status' }");
        while ((ev = qtest_qmp_event_ref(qts, "DEVICE_DELETED"))) {
            QDict *data = qdict_get_qdict(ev, "data");

            deleted |= data && qdict_haskey(data, "device") &&
                       !strcmp(qdict_get_str(data, "device"), "edu1");
            qobject_unref(ev);
        }
    }
    g_assert_true(deleted);

    list = query_bindings(qts);
    g_assert_cmpuint(qlist_size(list), ==, 1);
    b = qobject_to(QDict, qlist_peek(list));
    g_assert_cmpstr(qdict_get_str(b, "device"), ==, "edu2");
    g_assert_cmpuint(qdict_get_int(b, "asid"), ==, 6);
    qobject_unref(list);
    qtest_quit(qts);
}

/*
 * Issue 9 defect 6: bindings migrate.  The amd-iommu's state migrates
 * only with pci-id= (upstream's rule: without it the device is
 * unmigratable), and the bindings go with it.  A destination that lacks
 * the bound device, or whose amd-iommu is not in SNP mode, must fail the
 * load cleanly and keep its own bindings.
 */
#define BIND_IOMMU  "-device AMDVI-PCI,id=iommupci " \
                    "-device amd-iommu,dma-remap=on,pci-id=iommupci,snp="

static void assert_one_binding(QTestState *qts, const char *dev,
                               uint32_t asid)
{
    QList *list = query_bindings(qts);
    QDict *b;

    g_assert_cmpuint(qlist_size(list), ==, 1);
    b = qobject_to(QDict, qlist_peek(list));
    g_assert_cmpstr(qdict_get_str(b, "device"), ==, dev);
    g_assert_cmpuint(qdict_get_int(b, "asid"), ==, asid);
    qobject_unref(list);
}

static void load_bindings(const char *uri, const char *snp,
                          const char *devices, const char *want_dev,
                          uint32_t want_asid, bool ok)
{
    QTestState *to = qtest_initf(MACHINE "-object snp-rmp,id=rmp0 "
                                 BIND_IOMMU "%s %s -incoming defer",
                                 snp, devices);

    if (!strcmp(snp, "on")) {
        /* the destination's own, which the stream replaces */
        qtest_qmp_assert_success(to, "{ 'execute': 'snp-iommu-bind-device',"
                                 " 'arguments': { 'device': 'edu0',"
                                 " 'asid': 9 } }");
    }
    qtest_qmp_assert_success(to, "{ 'execute': 'migrate-incoming',"
                             " 'arguments': { 'uri': %s,"
                             " 'exit-on-error': false } }", uri);
    wait_migration(to, ok ? "completed" : "failed");
    assert_alive(to);
    if (!strcmp(snp, "on")) {
        if (!ok) {
            assert_one_binding(to, "edu0", 9);
        } else if (want_dev) {
            assert_one_binding(to, want_dev, want_asid);
        } else {
            QList *list = query_bindings(to);

            g_assert_cmpuint(qlist_size(list), ==, 0);
            qobject_unref(list);
        }
    }
    qtest_quit(to);
}

#define BOTH_EDUS "-device edu,id=edu0,addr=0x10 -device edu,id=edu1,addr=0x11"

static void save_bindings(const char *uri, bool bind)
{
    QTestState *from = qtest_init(MACHINE "-object snp-rmp,id=rmp0 "
                                  BIND_IOMMU "on " BOTH_EDUS);

    if (bind) {
        qtest_qmp_assert_success(from, "{ 'execute': "
                                 "'snp-iommu-bind-device', 'arguments': {"
                                 " 'device': 'edu1', 'asid': 7 } }");
        assert_one_binding(from, "edu1", 7);
    }
    qtest_qmp_assert_success(from, "{ 'execute': 'migrate', 'arguments': {"
                             " 'uri': %s } }", uri);
    wait_migration(from, "completed");
    qtest_quit(from);
}

static void test_binding_migration(void)
{
    g_autofree char *dir = g_dir_make_tmp("snp-rmp-qmp-XXXXXX", NULL);
    g_autofree char *file = g_build_filename(dir, "state", NULL);
    g_autofree char *bad = g_build_filename(dir, "bad", NULL);
    g_autofree char *uri = g_strdup_printf("file:%s", file);
    g_autofree char *bad_uri = g_strdup_printf("file:%s", bad);
    static const char path[] = "/machine/peripheral/edu1";
    g_autofree uint8_t *buf = NULL;
    uint8_t *rec;
    gsize len;

    save_bindings(uri, true);
    load_bindings(uri, "on", BOTH_EDUS, "edu1", 7, true);
    /*
     * edu1 missing; or the two swapped: the devices' state follows the
     * slots, and edu1's QOM path now names the other slot's device, which
     * must not get the binding
     */
    load_bindings(uri, "on", "-device edu,id=edu0,addr=0x10", NULL, 0,
                  false);
    load_bindings(uri, "on", "-device edu,id=edu1,addr=0x10 "
                  "-device edu,id=edu0,addr=0x11", NULL, 0, false);
    load_bindings(uri, "off", BOTH_EDUS, NULL, 0, false);

    /* hostile records: ASID 0, a relative path */
    g_assert_true(g_file_get_contents(file, (char **)&buf, &len, NULL));
    rec = memmem(buf, len, path, strlen(path));
    g_assert_nonnull(rec);
    g_assert_cmpuint(ldl_le_p(rec - 8), ==, 7);
    stl_le_p(rec - 8, 0);
    g_assert_true(g_file_set_contents(bad, (char *)buf, len, NULL));
    load_bindings(bad_uri, "on", BOTH_EDUS, NULL, 0, false);
    stl_le_p(rec - 8, 7);
    rec[0] = 'm';
    g_assert_true(g_file_set_contents(bad, (char *)buf, len, NULL));
    load_bindings(bad_uri, "on", BOTH_EDUS, NULL, 0, false);

    /* no bindings on the source: none on the destination either */
    save_bindings(uri, false);
    load_bindings(uri, "on", BOTH_EDUS, NULL, 0, true);
    unlink(file);
    unlink(bad);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/snp-rmp-qmp/hostile-spa", test_hostile_spa);
    qtest_add_func("/snp-rmp-qmp/query-in-ram", test_query_in_ram);
    qtest_add_func("/snp-rmp-qmp/migration-corrupt", test_migration_corrupt);
    qtest_add_func("/snp-rmp-qmp/binding-unplug", test_binding_unplug);
    qtest_add_func("/snp-rmp-qmp/binding-migration", test_binding_migration);
    return g_test_run();
}
