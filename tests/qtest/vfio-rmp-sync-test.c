/*
 * QTest for the configuration of the RMP-granularity sync of VFIO
 * containers: -object iommufd,rmp-sync=...,rmp=... and, for legacy
 * containers, -device vfio-pci,rmp-sync=...,rmp=...
 *
 * Runs without /dev/iommu and /dev/vfio: the backend opens them only
 * when a VFIO device attaches, and the device's settings are checked
 * before that, so what can be checked here is the configuration, its
 * errors and the monitor interfaces.  What the snp-rmp change notifier
 * does is unit-tested with the RMP model (tests/unit/test-rmp-sync-rmp.c);
 * the mapping path itself runs against a real kernel's iommufd and type1
 * in the whole-system tests.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qjson.h"
#include "qapi/error.h"

static void assert_refused(const char *args, const char *error)
{
    g_autofree char *cmd = g_strdup_printf("%s -M q35 -accel qtest "
                                           "-display none -S -monitor none "
                                           "%s", qtest_qemu_binary(NULL),
                                           args);
    g_auto(GStrv) argv = NULL;
    g_autofree char *err = NULL;
    int status;

    g_assert_true(g_shell_parse_argv(cmd, NULL, &argv, NULL));
    g_assert_true(g_spawn_sync(NULL, argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL,
                               NULL, NULL, NULL, &err, &status, NULL));
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    if (!strstr(err, error)) {
        g_test_message("stderr: %s", err);
    }
    g_assert_nonnull(strstr(err, error));
}

static void test_config_errors(void)
{
    assert_refused("-object iommufd,id=fd0,rmp-sync=shared",
                   "no object that gives page granularity");
    assert_refused("-object snp-rmp,id=rmp0 "
                   "-object iommufd,id=fd0,rmp-sync=all,rmp=nope",
                   "'nope' is not an object that gives page granularity");
    assert_refused("-object snp-rmp,id=rmp0 -object iommufd,id=fd0,rmp=rmp0",
                   "'rmp' needs rmp-sync");
    assert_refused("-object snp-rmp,id=rmp0 "
                   "-object iommufd,id=fd0,rmp-sync-hitless=on",
                   "'rmp-sync-hitless' needs rmp-sync");
    assert_refused("-object snp-rmp,id=rmp0 "
                   "-object iommufd,id=fd0,rmp-sync=most",
                   "rmp-sync");
    /* the snp-rmp object must come first */
    assert_refused("-object iommufd,id=fd0,rmp-sync=shared,rmp=rmp0 "
                   "-object snp-rmp,id=rmp0",
                   "'rmp0' is not an object that gives page");
}

/*
 * A legacy container is configured by its device.  sysfsdev=/ passes the
 * "host device exists" check, so what stops realize is either our check
 * or, once that passed, the missing IOMMU group of "/".
 */
static void test_legacy_config_errors(void)
{
    assert_refused("-device vfio-pci,sysfsdev=/,rmp-sync=shared",
                   "no object that gives page granularity");
    assert_refused("-object snp-rmp,id=rmp0 "
                   "-device vfio-pci,sysfsdev=/,rmp-sync=all,rmp=nope",
                   "'nope' is not an object that gives page granularity");
    assert_refused("-object snp-rmp,id=rmp0 "
                   "-device vfio-pci,sysfsdev=/,rmp=rmp0",
                   "'rmp' needs rmp-sync");
    assert_refused("-object snp-rmp,id=rmp0 "
                   "-device vfio-pci,sysfsdev=/,rmp-sync-hitless=on",
                   "'rmp-sync-hitless' needs rmp-sync");
    assert_refused("-object snp-rmp,id=rmp0 "
                   "-device vfio-pci,sysfsdev=/,rmp-sync=most",
                   "rmp-sync");
    assert_refused("-object snp-rmp,id=rmp0 -object iommufd,id=fd0 "
                   "-device vfio-pci,sysfsdev=/,iommufd=fd0,rmp-sync=shared",
                   "on the iommufd object");
    /* good settings get as far as the group, as rmp-sync=off does */
    assert_refused("-object snp-rmp,id=rmp0 "
                   "-device vfio-pci,sysfsdev=/,rmp-sync=shared,rmp=rmp0",
                   "iommu_group");
    assert_refused("-device vfio-pci,sysfsdev=/", "iommu_group");
}

static void test_legacy_properties(void)
{
    QTestState *qts = qtest_init("-M q35");
    QDict *r = qtest_qmp(qts, "{ 'execute': 'device-list-properties',"
                         " 'arguments': { 'typename': 'vfio-pci' } }");
    QListEntry *e;
    int found = 0;

    QLIST_FOREACH_ENTRY(qdict_get_qlist(r, "return"), e) {
        QDict *p = qobject_to(QDict, qlist_entry_obj(e));
        const char *name = qdict_get_str(p, "name");

        if (!strcmp(name, "rmp-sync")) {
            g_assert_cmpstr(qdict_get_str(p, "type"), ==, "RmpSyncPolicy");
            g_assert_cmpstr(qdict_get_str(p, "default-value"), ==, "off");
            found++;
        } else if (!strcmp(name, "rmp")) {
            g_assert_cmpstr(qdict_get_str(p, "type"), ==, "str");
            found++;
        } else if (!strcmp(name, "rmp-sync-hitless")) {
            g_assert_cmpstr(qdict_get_str(p, "type"), ==, "bool");
            g_assert_false(qdict_get_bool(p, "default-value"));
            found++;
        }
    }
    g_assert_cmpint(found, ==, 3);
    qobject_unref(r);
    qtest_quit(qts);
}

static QDict *qom_get(QTestState *qts, const char *path, const char *prop)
{
    return qtest_qmp(qts, "{ 'execute': 'qom-get', 'arguments': {"
                     " 'path': %s, 'property': %s } }", path, prop);
}

static void qom_get_assert_str(QTestState *qts, const char *path,
                               const char *prop, const char *expect)
{
    QDict *r = qom_get(qts, path, prop);

    g_assert_cmpstr(qdict_get_str(r, "return"), ==, expect);
    qobject_unref(r);
}

static bool qom_get_bool(QTestState *qts, const char *path, const char *prop)
{
    QDict *r = qom_get(qts, path, prop);
    bool v = qdict_get_bool(r, "return");

    qobject_unref(r);
    return v;
}

/* @value: JSON */
static void assert_qom_set_refused(QTestState *qts, const char *path,
                                   const char *prop, const char *value)
{
    QDict *r = qtest_qmp(qts, "{ 'execute': 'qom-set', 'arguments': {"
                         " 'path': %s, 'property': %s, 'value': %p } }",
                         path, prop, qobject_from_json(value, &error_abort));

    g_assert_true(qdict_haskey(r, "error"));
    g_assert_nonnull(strstr(qdict_get_str(qdict_get_qdict(r, "error"),
                                          "desc"),
                            "cannot change once the object exists"));
    qobject_unref(r);
}

static void test_config(void)
{
    QTestState *qts = qtest_init("-M q35 -object snp-rmp,id=rmp0 "
                                 "-object iommufd,id=fd0,rmp-sync=shared,"
                                 "rmp=rmp0,rmp-sync-hitless=on "
                                 "-object iommufd,id=fd1");
    QDict *r;

    qom_get_assert_str(qts, "/objects/fd0", "rmp-sync", "shared");
    qom_get_assert_str(qts, "/objects/fd0", "rmp", "rmp0");
    g_assert_true(qom_get_bool(qts, "/objects/fd0", "rmp-sync-hitless"));
    /* off by default: VFIO maps as it always did */
    qom_get_assert_str(qts, "/objects/fd1", "rmp-sync", "off");
    g_assert_false(qom_get_bool(qts, "/objects/fd1", "rmp-sync-hitless"));

    /*
     * Fixed once the object exists: the containers map, and undo their
     * mappings, by what it said (qom-set would strand them)
     */
    assert_qom_set_refused(qts, "fd0", "rmp-sync", "\"off\"");
    assert_qom_set_refused(qts, "fd1", "rmp-sync", "\"shared\"");
    assert_qom_set_refused(qts, "fd0", "rmp-sync-hitless", "false");
    assert_qom_set_refused(qts, "fd0", "rmp", "\"rmp1\"");
    qom_get_assert_str(qts, "/objects/fd0", "rmp-sync", "shared");
    qom_get_assert_str(qts, "/objects/fd1", "rmp-sync", "off");
    g_assert_true(qom_get_bool(qts, "/objects/fd0", "rmp-sync-hitless"));

    /* no VFIO container yet: no IO address space to report */
    r = qtest_qmp(qts, "{ 'execute': 'query-rmp-sync' }");
    g_assert_cmpuint(qlist_size(qdict_get_qlist(r, "return")), ==, 0);
    qobject_unref(r);
    r = qtest_qmp(qts, "{ 'execute': 'human-monitor-command',"
                  " 'arguments': { 'command-line': 'info rmp-sync' } }");
    g_assert_nonnull(strstr(qdict_get_str(r, "return"),
                            "no VFIO container follows an RMP"));
    qobject_unref(r);

    /* object-add validates the same way */
    r = qtest_qmp(qts, "{ 'execute': 'object-add', 'arguments': {"
                  " 'qom-type': 'iommufd', 'id': 'fd2', 'rmp-sync': 'all',"
                  " 'rmp': 'nope' } }");
    g_assert_nonnull(qdict_get_qdict(r, "error"));
    qobject_unref(r);
    qtest_qmp_assert_success(qts, "{ 'execute': 'object-add', 'arguments': {"
                             " 'qom-type': 'iommufd', 'id': 'fd3',"
                             " 'rmp-sync': 'all' } }");
    assert_qom_set_refused(qts, "fd3", "rmp-sync", "\"off\"");
    qom_get_assert_str(qts, "/objects/fd3", "rmp-sync", "all");
    qtest_quit(qts);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/vfio-rmp-sync/config-errors", test_config_errors);
    qtest_add_func("/vfio-rmp-sync/config", test_config);
    qtest_add_func("/vfio-rmp-sync/legacy-config-errors",
                   test_legacy_config_errors);
    qtest_add_func("/vfio-rmp-sync/legacy-properties",
                   test_legacy_properties);
    return g_test_run();
}
