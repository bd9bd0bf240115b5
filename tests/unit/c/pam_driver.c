/* Test driver for pam_sgewrap's parsers: built with AddressSanitizer and UBSan by
 * tests/unit/test_pam_module.py.  stdin: records "KIND LENGTH\n" followed by LENGTH bytes; stdout:
 * one line per record.  KIND: stat, config (the value of job_owner), gid, setup, env, user, gidrange
 * (a first line "HOST GID", then the gid_range cache). */
#include "pam_sgewrap.c"

static int print_env(const char *line, void *arg)
{
    (void)arg;
    printf("%s\x1f", line);
    return 0;
}

int main(void)
{
    char kind[16];
    size_t len;
    while (scanf("%15s %zu", kind, &len) == 2) {
        getchar();
        char *data = malloc(len ? len : 1);      /* exactly len bytes: ASan sees any overread */
        if (data == NULL || fread(data, 1, len, stdin) != len)
            return 2;
        if (strcmp(kind, "stat") == 0) {
            struct pstat ps;
            if (sgw_parse_stat(data, len, &ps) == 0)
                printf("ok %c %d %d %llu\n", ps.state, (int)ps.ppid, (int)ps.sid, ps.start);
            else
                printf("bad\n");
        } else if (strcmp(kind, "config") == 0) {
            char out[65];
            if (sgw_config_value(data, len, "job_owner", out, sizeof out) == 0)
                printf("ok %s\n", out);
            else
                printf("bad\n");
        } else if (strcmp(kind, "gid") == 0) {
            gid_t gid;
            if (sgw_parse_gid(data, len, &gid) == 0)
                printf("ok %u\n", (unsigned)gid);
            else
                printf("bad\n");
        } else if (strcmp(kind, "setup") == 0) {
            char spool[SPOOL_MAX + 1];
            long long pid;
            unsigned long long start;
            if (sgw_parse_setup(data, len, spool, sizeof spool, &pid, &start) == 0)
                printf("ok %lld %llu %s\n", pid, start, spool);
            else
                printf("bad\n");
        } else if (strcmp(kind, "shepherd") == 0) {
            long long pid;
            unsigned long long start;
            if (sgw_setup_shepherd(data, len, &pid, &start) == 0)
                printf("ok %lld %llu\n", pid, start);
            else
                printf("bad\n");
        } else if (strcmp(kind, "env") == 0) {
            int n = sgw_each_env(data, len, print_env, NULL);
            printf("\x1e%d\n", n);
        } else if (strcmp(kind, "user") == 0) {
            char *name = malloc(len + 1);
            memcpy(name, data, len);
            name[len] = '\0';
            printf(strlen(name) == len && sgw_valid_user(name) ? "ok\n" : "bad\n");
            free(name);
        } else if (strcmp(kind, "gidrange") == 0) {
            const char *nl = memchr(data, '\n', len);
            char head[128];
            unsigned gid;
            if (nl == NULL || (size_t)(nl - data) >= sizeof head)
                return 4;
            memcpy(head, data, (size_t)(nl - data));
            head[nl - data] = '\0';
            char *space = strchr(head, ' ');
            if (space == NULL || sscanf(space + 1, "%u", &gid) != 1)
                return 4;
            *space = '\0';
            int v = sgw_gid_in_range(nl + 1, len - (size_t)(nl - data) - 1, head, (gid_t)gid);
            printf("%s\n", v == 1 ? "in" : v == 0 ? "out" : "none");
        } else
            return 3;
        free(data);
        fflush(stdout);
    }
    return 0;
}
