/*
 * pam_sgewrap: ties an sshd session to its Grid Engine job, inside sshd, with no program started.
 *
 *   job     the job sshd's own service (/etc/pam.d/sge-sshd, written by "sgewrap config ssh --tight"):
 *           admits only the owner of the job whose shepherd started this sshd, gives the session the
 *           job's group and environment, and kills what the session leaves behind when it ends (by
 *           the job's group id only inside this host's gid_range: sgewrap.rootside.gidrange).
 *   setup   the site's service, under "node_access adopt": reads the setup file that hook wrote for
 *           this very connection (never one of another process) and joins that job.
 *
 * Where each step runs (OpenSSH 9.2 and 10, measured):
 *   account        the monitor (sshd's per-connection root process, M), or for keyboard-interactive
 *                  logins a forked "[pam]" child of M;
 *   setcred        1st (ESTABLISH) in M, 2nd (REINITIALIZE) in the session's own process, a child of M,
 *                  before it takes the user's uid: the group and the environment are given there;
 *   open_session   M: the session is moved into a cgroup of its own, watched by a forked watcher.
 *   close_session  M, when sshd closes the session (never when it is SIGKILLed): what is left is told
 *                  (HUP, TERM) and given a grace before M exits and the watcher kills the rest.
 * Nothing is carried from one step to the next: each finds M and the job again from the process
 * tree (M's parent is the shepherd; the shepherd's working directory is the task's spool), which a
 * user cannot fake, so no file can be left behind and no PID can be reused under a session.
 *
 * Nothing here reads the PAM environment, the process environment or a user's file.  Every read
 * is of /proc or of root- or admin-owned files, opened O_NOFOLLOW|O_NONBLOCK and bounded.
 * Options: sgewrap.rootside.nodeaccess.TABLE, made into pam_sgewrap_options.h at build time.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_modules.h>
#include <security/pam_ext.h>

#include "pam_sgewrap_options.h"

#define SHEPHERD "sge_shepherd"
#define SPOOL_MAX 1012              /* what pam_sge-qrsh-setup reads, less "/environment" */
#define CONFIG_MAX (1 << 20)
#define ENV_MAX (1 << 20)
#define SMALL_MAX 4096
#define MAX_ADMINS 8
#define KILL_ROUNDS 50
#define SETTLE_MS 5000
#define GRACE_MS 2000               /* a closed job session's leftovers: TERM and HUP, then this long */

struct opts {
    int facility;
    int fail_open;
    const char *sge_root;
    const char *setup_dir;
    const char *admins[MAX_ADMINS];
    int n_admins;
};

struct trust {
    uid_t uid[MAX_ADMINS + 2];
    int n;
};

struct job {
    char spool[PATH_MAX];
    char key[128];
    char owner[65];
    gid_t gid;
};

struct pstat {
    char state;
    pid_t ppid;
    pid_t sid;
    unsigned long long start;
};

/* ---------------------------------------------------------------- pure parsers (unit-tested) */

/* /proc/PID/stat: the fields after the last ')' (comm may hold anything). 0, or -1 if malformed. */
int sgw_parse_stat(const char *data, size_t len, struct pstat *out)
{
    const char *p = NULL, *end = data + len;
    for (const char *q = data; q < end; q++)
        if (*q == ')')
            p = q;
    if (p == NULL)
        return -1;
    p++;
    /* fields from 3: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
       cutime cstime priority nice num_threads itrealvalue starttime */
    unsigned long long field[20];
    int n = 0;
    char state = 0;
    while (p < end && n < 20) {
        while (p < end && *p == ' ')
            p++;
        if (p >= end)
            break;
        if (n == 0 && state == 0) {
            state = *p++;
            if (p < end && *p != ' ' && *p != '\n')
                return -1;
            field[n++] = 0;
            continue;
        }
        int neg = 0;
        if (*p == '-') {
            neg = 1;
            p++;
        }
        if (p >= end || !isdigit((unsigned char)*p))
            return -1;
        unsigned long long v = 0;
        while (p < end && isdigit((unsigned char)*p)) {
            if (v > (ULLONG_MAX - 9) / 10)
                return -1;
            v = v * 10 + (unsigned long long)(*p++ - '0');
        }
        if (p < end && *p != ' ' && *p != '\n')
            return -1;
        field[n++] = neg ? 0 : v;
    }
    if (n < 20 || field[1] > INT_MAX || field[3] > INT_MAX)
        return -1;
    out->state = state;
    out->ppid = (pid_t)field[1];
    out->sid = (pid_t)field[3];
    out->start = field[19];
    return 0;
}

/* The value of the "KEY=" line of a spool config file, copied into out; 0, -1 if absent or too long,
   -2 if the key is there again with another value (execd writes user-given paths before job_owner: a
   newline in one would add a line that Grid Engine's reader, where the last wins, and ours disagree
   on).  The same value again is fine: execd writes pe_task_id twice for a parallel task (measured). */
int sgw_config_value(const char *data, size_t len, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    const char *p = data, *end = data + len;
    int found = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        if ((size_t)(eol - p) > klen && memcmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t vlen = (size_t)(eol - p) - klen - 1;
            if (found++) {
                if (vlen != strlen(out) || memcmp(out, p + klen + 1, vlen) != 0)
                    return -2;
            } else {
                if (vlen >= cap || memchr(p + klen + 1, '\0', vlen))
                    return -1;
                memcpy(out, p + klen + 1, vlen);
                out[vlen] = '\0';
            }
        }
        p = eol + 1;
    }
    return found ? 0 : -1;
}

/* A user name as Grid Engine writes job_owner: what jobspool.valid_user accepts. */
int sgw_valid_user(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("._-@", name[i]))
            return 0;
    return 1;
}

/* A group id as addgrpid holds it: decimal, 1..2^31-1, optional surrounding white space. */
int sgw_parse_gid(const char *data, size_t len, gid_t *out)
{
    size_t i = 0, digits = 0;
    unsigned long long v = 0;
    while (i < len && isspace((unsigned char)data[i]))
        i++;
    while (i < len && isdigit((unsigned char)data[i]) && digits < 11) {
        v = v * 10 + (unsigned long long)(data[i++] - '0');
        digits++;
    }
    while (i < len && isspace((unsigned char)data[i]))
        i++;
    if (i != len || digits == 0 || digits > 10 || v == 0 || v > 0x7fffffffULL)
        return -1;
    *out = (gid_t)v;
    return 0;
}

/* "PID START" filling [a, end) exactly: two decimals of at most 19 digits, one space between.  0 or -1. */
static int pid_start(const char *a, const char *end, unsigned long long v[2])
{
    for (int k = 0; k < 2; k++) {
        int digits = 0;
        v[k] = 0;
        while (a < end && isdigit((unsigned char)*a)) {
            if (++digits > 19)
                return -1;
            v[k] = v[k] * 10 + (unsigned long long)(*a++ - '0');
        }
        if (digits == 0 || (k == 0 && (a >= end || *a++ != ' ')))
            return -1;
    }
    return a == end ? 0 : -1;
}

/* A setup file: "SPOOL\nsgewrap PID START\n...": the spool copied into spool (cap bytes), pid and start.
   0, or -1 if it is not one sgewrap wrote. */
int sgw_parse_setup(const char *data, size_t len, char *spool, size_t cap, long long *pid,
                    unsigned long long *start)
{
    const char *nl = memchr(data, '\n', len);
    if (nl == NULL || (size_t)(nl - data) >= cap || nl == data || memchr(data, '\0', (size_t)(nl - data)))
        return -1;
    memcpy(spool, data, (size_t)(nl - data));
    spool[nl - data] = '\0';
    const char *p = nl + 1, *end = data + len;
    const char *nl2 = memchr(p, '\n', (size_t)(end - p));
    if (nl2 == NULL)
        return -1;
    unsigned long long v[2];
    if ((size_t)(nl2 - p) < 8 || memcmp(p, "sgewrap ", 8) != 0 || pid_start(p + 8, nl2, v) < 0
        || v[0] == 0 || v[0] > INT_MAX)
        return -1;
    *pid = (long long)v[0];
    *start = v[1];
    return 0;
}

/* The "shepherd PID START" line of a setup file (node_access adopt writes it: the task's shepherd,
   whose end ends an adopted login).  0, or -1 if there is none or it is malformed. */
int sgw_setup_shepherd(const char *data, size_t len, long long *pid, unsigned long long *start)
{
    const char *p = data, *end = data + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            return -1;                  /* only whole lines count */
        if ((size_t)(nl - p) > 9 && memcmp(p, "shepherd ", 9) == 0) {
            unsigned long long v[2];
            if (pid_start(p + 9, nl, v) < 0 || v[0] <= 1 || v[0] > INT_MAX)
                return -1;
            *pid = (long long)v[0];
            *start = v[1];
            return 0;
        }
        p = nl + 1;
    }
    return -1;
}

/* A gid_range value ("m-n" and "m" items, comma-separated, 1..2^31-1, low <= high) holds gid: 1 if
   it does, 0 if not, -1 if [p, end) is no such value (sgewrap.rootside.gidrange.parse_ranges). */
static int range_holds(const char *p, const char *end, gid_t gid)
{
    int inside = 0;
    for (;;) {
        unsigned long long v[2] = {0, 0};
        for (int k = 0; k < 2; k++) {
            int digits = 0;
            while (p < end && isdigit((unsigned char)*p)) {
                if (++digits > 10)
                    return -1;
                v[k] = v[k] * 10 + (unsigned long long)(*p++ - '0');
            }
            if (digits == 0)
                return -1;
            if (k == 0 && p < end && *p == '-')
                p++;
            else {
                if (k == 0)
                    v[1] = v[0];
                break;
            }
        }
        if (v[0] == 0 || v[0] > v[1] || v[1] > 0x7fffffffULL)
            return -1;
        if ((unsigned long long)gid >= v[0] && (unsigned long long)gid <= v[1])
            inside = 1;
        if (p == end)
            return inside;
        if (*p++ != ',')
            return -1;
    }
}

/* The length of a host name up to its first dot. */
static size_t short_len(const char *name, size_t len)
{
    const char *dot = memchr(name, '.', len);
    return dot ? (size_t)(dot - name) : len;
}

/* The gid_range cache ("NAME VALUE" lines, '#' comments; sgewrap.rootside.gidrange.gid_in_range): 1 if
   gid is inside the value of host's first line (its name up to the first dot), else of the first
   "global" line; 0 if outside; -1 if neither line is there or the one that applies is malformed. */
int sgw_gid_in_range(const char *data, size_t len, const char *host, gid_t gid)
{
    const char *p = data, *end = data + len, *value = NULL, *value_end = NULL;
    size_t hlen = short_len(host, strlen(host));
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end, *w[3] = {NULL, NULL, NULL}, *we[3] = {NULL, NULL, NULL};
        int n = 0;
        for (const char *q = p; q < eol && n < 3;) {
            while (q < eol && isspace((unsigned char)*q))
                q++;
            if (q == eol)
                break;
            w[n] = q;
            while (q < eol && !isspace((unsigned char)*q))
                q++;
            we[n++] = q;
        }
        if (n == 2 && *p != '#') {
            size_t nlen = (size_t)(we[0] - w[0]);
            if (hlen && short_len(w[0], nlen) == hlen && memcmp(w[0], host, hlen) == 0)
                return range_holds(w[1], we[1], gid);
            if (value == NULL && nlen == 6 && memcmp(w[0], "global", 6) == 0) {
                value = w[1];
                value_end = we[1];
            }
        }
        p = eol + 1;
    }
    return value ? range_holds(value, value_end, gid) : -1;
}

/* Call put(line, arg) for each "NAME=value" line of a job's environment file but DISPLAY and KRB5CCNAME
   (Grid Engine's are the submit host's, from qrsh -V: sshd sets its own forwarded display and, for
   delegated Kerberos credentials, the cache it made for the session, which the job's would hide); lines
   without a name or with NUL are skipped.  The count put. */
static int submit_host_only(const char *line, size_t n)
{
    return (n >= 8 && !memcmp(line, "DISPLAY=", 8)) || (n >= 11 && !memcmp(line, "KRB5CCNAME=", 11));
}


int sgw_each_env(const char *data, size_t len, int (*put)(const char *, void *), void *arg)
{
    char line[SMALL_MAX * 4];
    int count = 0;
    const char *p = data, *end = data + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        size_t n = (size_t)(eol - p);
        const char *eq = memchr(p, '=', n);
        if (eq != NULL && eq != p && n < sizeof line && !memchr(p, '\0', n) && !submit_host_only(p, n)) {
            int name_ok = 1;
            for (const char *c = p; c < eq; c++)
                if (!(isalnum((unsigned char)*c) || *c == '_'))
                    name_ok = 0;
            if (name_ok) {
                memcpy(line, p, n);
                line[n] = '\0';
                if (put(line, arg) == 0)
                    count++;
            }
        }
        p = eol + 1;
    }
    return count;
}

/* ----------------------------------------------------------------------------- logging */

static int log_facility = SGEWRAP_DEFAULT_FACILITY_VALUE;

static void say(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(int prio, const char *fmt, ...)
{
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    for (char *c = buf; *c; c++)
        if ((unsigned char)*c < ' ' || *c == 0x7f)
            *c = '?';
    syslog(log_facility | prio, "pam_sgewrap[%d]: %s", (int)getpid(), buf);
}

/* ------------------------------------------------------------------------ what the kernel says */

/* Read a whole small file (no symlink, no FIFO wait): its length, -1 (errno) on error, -2 if larger than cap-1. */
static ssize_t read_file(const char *path, char *buf, size_t cap, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -1;
    struct stat local;
    if (st == NULL)
        st = &local;
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got == cap) {
            close(fd);
            return -2;
        }
    }
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

/* /proc/PID/NAME into buf (NUL-terminated, at most cap-1 bytes): its length, or -1. */
static ssize_t proc_read(pid_t pid, const char *name, char *buf, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return n;
}

static int proc_stat(pid_t pid, struct pstat *out)
{
    char buf[1024];
    ssize_t n = proc_read(pid, "stat", buf, sizeof buf);
    if (n < 0 || sgw_parse_stat(buf, (size_t)n, out) < 0)
        return -1;
    return out->state == 'Z' || out->state == 'X' ? -1 : 0;
}

static long long proc_ruid(pid_t pid)
{
    char buf[SMALL_MAX];
    if (proc_read(pid, "status", buf, sizeof buf) < 0)
        return -1;
    char *line = strstr(buf, "\nUid:");
    if (line == NULL)
        return -1;
    char *end;
    long long uid = strtoll(line + 5, &end, 10);
    return end == line + 5 ? -1 : uid;
}

static int proc_link(pid_t pid, const char *name, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    ssize_t n = readlink(path, out, cap - 1);
    if (n <= 0 || (size_t)n >= cap - 1)
        return -1;
    out[n] = '\0';
    size_t del = strlen(" (deleted)");
    if ((size_t)n >= del && strcmp(out + n - del, " (deleted)") == 0)
        return -1;
    return 0;
}

/* The spool directory of the shepherd pid (its cwd), if pid is one: real uid 0 and an executable
   named sge_shepherd that root owns and nobody else may write.  Never by its name or command line. */
static int shepherd_spool(pid_t pid, char *spool, size_t cap)
{
    char exe[PATH_MAX];
    struct stat st;
    if (pid <= 1 || proc_link(pid, "exe", exe, sizeof exe) < 0)
        return -1;
    const char *base = strrchr(exe, '/');
    if (base == NULL || strcmp(base + 1, SHEPHERD) != 0 || proc_ruid(pid) != 0)
        return -1;
    if (stat(exe, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022))
        return -1;
    return proc_link(pid, "cwd", spool, cap);
}

/* ------------------------------------------------------------------------------- the spool */

static void trust_init(struct trust *t, const struct opts *o)
{
    t->n = 0;
    t->uid[t->n++] = 0;
    char buf[SMALL_MAX];
    for (int i = 0; i < o->n_admins; i++) {
        struct passwd pw, *res = NULL;
        if (getpwnam_r(o->admins[i], &pw, buf, sizeof buf, &res) == 0 && res != NULL && t->n < MAX_ADMINS + 2)
            t->uid[t->n++] = res->pw_uid;
        else
            say(LOG_WARNING, "--admin-user %s: no such user", o->admins[i]);
    }
    if (o->n_admins > 0 || o->sge_root == NULL)
        return;
    /* SGE_ROOT/<cell>/common/bootstrap: admin_user, in a file root or that user owns, writable by no other */
    DIR *d = opendir(o->sge_root);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && t->n < MAX_ADMINS + 2) {
        char path[PATH_MAX], data[SMALL_MAX * 2], name[65];
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        if (snprintf(path, sizeof path, "%s/%s/common/bootstrap", o->sge_root, e->d_name) >= (int)sizeof path)
            continue;
        ssize_t n = read_file(path, data, sizeof data, &st);
        if (n < 0 || (st.st_mode & 022))
            continue;
        /* "admin_user NAME" */
        const char *p = data;
        while (p && *p) {
            if (strncmp(p, "admin_user", 10) == 0 && (p[10] == ' ' || p[10] == '\t')) {
                if (sscanf(p + 10, " %64s", name) == 1 && strcasecmp(name, "none") != 0) {
                    struct passwd pw, *res = NULL;
                    if (getpwnam_r(name, &pw, buf, sizeof buf, &res) == 0 && res != NULL
                        && (st.st_uid == 0 || st.st_uid == res->pw_uid))
                        t->uid[t->n++] = res->pw_uid;
                }
                break;
            }
            p = strchr(p, '\n');
            if (p)
                p++;
        }
    }
    closedir(d);
}

static int trusted(const struct trust *t, uid_t uid)
{
    for (int i = 0; i < t->n; i++)
        if (t->uid[i] == uid)
            return 1;
    return 0;
}

/* The spool directory and every directory above it: trusted owners, writable by no one else (a
   sticky directory above excepted, as jobspool.spool_dir says).  0, or -1 with why. */
static int check_spool(const char *spool, const struct trust *t, char *why, size_t cap)
{
    struct stat st;
    char path[PATH_MAX];
    if (spool[0] != '/' || strlen(spool) > SPOOL_MAX) {
        snprintf(why, cap, "spool directory %.200s is not an absolute path of at most %d bytes", spool, SPOOL_MAX);
        return -1;
    }
    for (const char *c = spool; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f) {
            snprintf(why, cap, "spool directory %.200s holds white space or control characters", spool);
            return -1;
        }
    snprintf(path, sizeof path, "%s", spool);
    int first = 1;
    for (;;) {
        if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
            snprintf(why, cap, "%.200s is not a directory", path);
            return -1;
        }
        if (!trusted(t, st.st_uid)) {
            snprintf(why, cap, "%s %.200s is owned by uid %d, not root or the Grid Engine admin user",
                     first ? "job spool directory" : "directory", path, (int)st.st_uid);
            return -1;
        }
        if ((st.st_mode & 022) && (first || !(st.st_mode & S_ISVTX))) {
            snprintf(why, cap, "%.200s is writable by group or others (mode %o)", path, st.st_mode & 07777);
            return -1;
        }
        first = 0;
        if (strcmp(path, "/") == 0)
            return 0;
        char *slash = strrchr(path, '/');
        if (slash == path)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
}

/* spool/name, a regular file of a trusted owner that no one else may write, read into buf. */
static ssize_t read_trusted(const char *spool, const char *name, const struct trust *t, char *buf, size_t cap,
                            char *why, size_t wcap)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", spool, name);
    ssize_t n = read_file(path, buf, cap, &st);
    if (n == -2) {
        snprintf(why, wcap, "%.200s is larger than %zu bytes", path, cap - 1);
        return -1;
    }
    if (n < 0) {
        snprintf(why, wcap, "%.200s: %s", path, strerror(errno));
        return -1;
    }
    if (!trusted(t, st.st_uid) || (st.st_mode & 022)) {
        snprintf(why, wcap, "%.200s is not root's or the admin user's, or is writable by others", path);
        return -1;
    }
    return n;
}

/* The job whose spool directory is spool: its owner, key (JOB.TASK or JOB.TASK/PETASK) and group. */
static int read_job(const char *spool, const struct trust *t, struct job *job, char *why, size_t cap)
{
    static char config[CONFIG_MAX + 1];
    char small[SMALL_MAX], job_id[32], pe_task[64];
    job->owner[0] = '\0';
    if (check_spool(spool, t, why, cap) < 0)
        return -1;
    snprintf(job->spool, sizeof job->spool, "%s", spool);
    ssize_t n = read_trusted(spool, "config", t, config, sizeof config, why, cap);
    if (n < 0)
        return -1;
    int rc_id = sgw_config_value(config, (size_t)n, "job_id", job_id, sizeof job_id);
    int rc_pe = sgw_config_value(config, (size_t)n, "pe_task_id", pe_task, sizeof pe_task);
    int rc_owner = sgw_config_value(config, (size_t)n, "job_owner", job->owner, sizeof job->owner);
    if (rc_id == -2 || rc_pe == -2 || rc_owner == -2) {
        job->owner[0] = '\0';
        snprintf(why, cap, "%.200s/config gives job_owner, job_id or pe_task_id two values", spool);
        return -1;
    }
    if (rc_owner < 0 || !sgw_valid_user(job->owner)) {
        job->owner[0] = '\0';
        snprintf(why, cap, "%.200s/config: job_owner is not a user name", spool);
        return -1;
    }
    if (rc_id < 0)
        job_id[0] = '\0';
    if (rc_pe < 0)
        pe_task[0] = '\0';
    const char *name = strrchr(spool, '/') + 1;
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", spool);
    *strrchr(parent, '/') = '\0';
    const char *pname = strrchr(parent, '/') ? strrchr(parent, '/') + 1 : parent;
    size_t idlen = strlen(job_id);
    int digits = idlen > 0 && strspn(job_id, "0123456789") == idlen;
    if (digits && strncmp(name, job_id, idlen) == 0 && (name[idlen] == '.' || name[idlen] == '\0'))
        snprintf(job->key, sizeof job->key, "%.127s", name);
    else if (digits && strncmp(pname, job_id, idlen) == 0 && (pname[idlen] == '.' || pname[idlen] == '\0')
             && strcmp(pe_task, name) == 0)
        snprintf(job->key, sizeof job->key, "%.60s/%.60s", pname, name);
    else {
        snprintf(why, cap, "%.200s: not the spool directory of job %.20s", spool, job_id);
        return -1;
    }
    n = read_trusted(spool, "addgrpid", t, small, 64, why, cap);
    if (n < 0)
        return -1;
    if (sgw_parse_gid(small, (size_t)n, &job->gid) < 0) {
        snprintf(why, cap, "%.200s/addgrpid does not hold a group id above 0", spool);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------- the connection and its job */

/* The monitor of this connection for the job service: this process if its parent is a shepherd
   (key and password logins run account here; setcred ESTABLISH and open_session always do), else
   our parent if its parent is a shepherd (the "[pam]" child of a keyboard-interactive login, and the
   session's own process at setcred REINITIALIZE).  The shepherd's spool into spool. */
static pid_t job_monitor(char *spool, size_t cap, char *why, size_t wcap)
{
    pid_t me = getpid(), parent = getppid();
    struct pstat ps;
    if (shepherd_spool(parent, spool, cap) == 0)
        return me;
    if (proc_stat(parent, &ps) == 0 && proc_ruid(parent) == 0 && shepherd_spool(ps.ppid, spool, cap) == 0)
        return parent;
    snprintf(why, wcap, "sshd %d was not started by a Grid Engine shepherd", (int)me);
    return -1;
}

/* The monitor and the job of this connection; t: who may own the spool, made here for the caller. */
static int job_of_connection(const struct opts *o, pid_t *monitor, struct job *job, struct trust *t, char *why,
                             size_t cap)
{
    char spool[PATH_MAX];
    pid_t m = job_monitor(spool, sizeof spool, why, cap);
    if (m < 0)
        return -1;
    trust_init(t, o);
    if (read_job(spool, t, job, why, cap) < 0)
        return -1;
    *monitor = m;
    return 0;
}

static const char *user_of(pam_handle_t *pamh)
{
    const void *item = NULL;
    if (pam_get_item(pamh, PAM_USER, &item) != PAM_SUCCESS || item == NULL)
        return "";
    return item;
}

/* ------------------------------------------------------------------------------ the tie itself */

struct putenv_arg {
    pam_handle_t *pamh;
};

static int put_one(const char *line, void *arg)
{
    return pam_putenv(((struct putenv_arg *)arg)->pamh, line) == PAM_SUCCESS ? 0 : -1;
}

/* In the session's own process: the job's group among ours, the job's environment in PAM's. */
static int give_job(pam_handle_t *pamh, const struct job *job, const struct trust *t, char *why, size_t cap)
{
    static char env[ENV_MAX + 1];
    gid_t groups[NGROUPS_MAX + 1];
    int n = getgroups(NGROUPS_MAX, groups);
    if (n < 0) {
        snprintf(why, cap, "getgroups: %s", strerror(errno));
        return -1;
    }
    int have = 0;
    for (int i = 0; i < n; i++)
        have |= groups[i] == job->gid;
    if (!have)
        groups[n++] = job->gid;
    if (setgroups((size_t)n, groups) < 0) {
        snprintf(why, cap, "setgroups: %s", strerror(errno));
        return -1;
    }
    ssize_t len = read_trusted(job->spool, "environment", t, env, sizeof env, why, cap);
    if (len < 0)
        return -1;
    struct putenv_arg arg = {pamh};
    sgw_each_env(env, (size_t)len, put_one, &arg);
    return 0;
}

/* ----------------------------------------------------------------------- reaping the session */

/* The cgroup2 mount point (from our mountinfo) into out; 0, or -1 if there is none. */
static int cgroup2_mount(char *out, size_t cap)
{
    /* line by line: users can add mounts (autofs, FUSE), so the table has no size bound of ours */
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        return -1;
    char *line = NULL;
    size_t size = 0;
    int rc = -1;
    while (rc < 0 && getline(&line, &size, f) > 0) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        char *sep = strstr(line, " - cgroup2 ");
        if (sep) {
            /* id parent major:minor root mountpoint ... */
            char *field = line;
            for (int i = 0; i < 4 && field; i++) {
                field = strchr(field, ' ');
                if (field)
                    field++;
            }
            if (field) {
                char *e = strchr(field, ' ');
                size_t k = e ? (size_t)(e - field) : strlen(field);
                if (k < cap && !memchr(field, '\\', k)) {
                    memcpy(out, field, k);
                    out[k] = '\0';
                    rc = 0;
                }
            }
        }
    }
    free(line);
    fclose(f);
    return rc;
}

static int write_str(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* The cgroup v2 line's path in the text of /proc/PID/cgroup ("0::PATH"; on a hybrid host the last
   line), or NULL. */
static char *v2_path(char *data)
{
    char *line = strncmp(data, "0::", 3) == 0 ? data : strstr(data, "\n0::");
    return line == NULL ? NULL : line + (line == data ? 3 : 4);
}

/* The cgroup of the session of monitor m: next to m's own, named for the job and m. */
static int session_cgroup(pid_t m, const struct job *job, char *out, size_t cap)
{
    char mount[PATH_MAX], data[SMALL_MAX], key[128];
    if (cgroup2_mount(mount, sizeof mount) < 0 || proc_read(m, "cgroup", data, sizeof data) < 0)
        return -1;
    char *line = v2_path(data);
    if (line == NULL)
        return -1;
    char *nl = strchr(line, '\n');
    if (nl)
        *nl = '\0';
    if (strcmp(line, "/") == 0)
        line[0] = '\0';
    snprintf(key, sizeof key, "%s", job->key);
    for (char *c = key; *c; c++)
        if (*c == '/')
            *c = '-';
    if (snprintf(out, cap, "%s%s/sgewrap-%s-%d", mount, line, key, (int)m) >= (int)cap)
        return -1;
    return 0;
}

static int has_group(pid_t pid, gid_t gid)
{
    char buf[SMALL_MAX];
    if (proc_read(pid, "status", buf, sizeof buf) < 0)
        return 0;
    char *state = strstr(buf, "\nState:");
    if (state) {
        state += 7;
        state += strspn(state, " \t");
        if (*state == 'Z' || *state == 'X')
            return 0;           /* a zombie runs nothing and cannot be killed again */
    }
    char *g = strstr(buf, "\nGroups:");
    if (g == NULL)
        return 0;
    g += 8;
    while (*g && *g != '\n') {
        char *end;
        unsigned long v = strtoul(g, &end, 10);
        if (end == g)
            break;
        if (v == gid)
            return 1;
        g = end;
        while (*g == ' ' || *g == '\t')
            g++;
    }
    return 0;
}

/* Freeze, then kill, every process carrying gid: stop what a scan finds, rescan until a scan finds
   nothing new (a chain that forks between scans is stopped mid-chain), then SIGKILL and SIGCONT
   them all; again until none is left.  Each process is held by a pidfd opened before its group is
   checked and signalled through it: a PID that is reused meanwhile is never signalled.  The number
   signalled. */
#define MAX_HELD 900
static int kill_gid(gid_t gid)
{
    static int held[MAX_HELD];
    static pid_t held_pid[MAX_HELD];
    int total = 0;
    pid_t me = getpid();
    for (int round = 0; round < KILL_ROUNDS; round++) {
        int n = 0, grew = 1;
        for (int pass = 0; grew && pass < KILL_ROUNDS && n < MAX_HELD; pass++) {
            grew = 0;
            DIR *d = opendir("/proc");
            if (d == NULL)
                break;
            struct dirent *e;
            while ((e = readdir(d)) != NULL && n < MAX_HELD) {
                if (!isdigit((unsigned char)e->d_name[0]))
                    continue;
                pid_t pid = (pid_t)atoi(e->d_name);
                int seen = pid == me;
                for (int i = 0; i < n && !seen; i++)
                    seen = held_pid[i] == pid;
                if (seen)
                    continue;
                int fd = (int)syscall(SYS_pidfd_open, pid, 0);
                if (fd < 0)
                    continue;
                if (!has_group(pid, gid)) {          /* checked with the process held: it is this one */
                    close(fd);
                    continue;
                }
                syscall(SYS_pidfd_send_signal, fd, SIGSTOP, NULL, 0);
                held[n] = fd;
                held_pid[n++] = pid;
                grew = 1;
            }
            closedir(d);
        }
        for (int i = 0; i < n; i++) {
            syscall(SYS_pidfd_send_signal, held[i], SIGKILL, NULL, 0);
            syscall(SYS_pidfd_send_signal, held[i], SIGCONT, NULL, 0);
            close(held[i]);
        }
        total += n;
        if (n == 0)
            break;
    }
    return total;
}

/* No gid_range cache: killed as before, said once per boot (a marker in a directory of root's that
   /run empties at boot; when that cannot be told, said again rather than never).  1. */
static int no_gid_range(pid_t m)
{
    char dir[PATH_MAX];
    struct stat st;
    int fd = -1, said = 0;
    snprintf(dir, sizeof dir, "%s", SGEWRAP_GID_RANGE_MARK);
    *strrchr(dir, '/') = '\0';
    if ((mkdir(dir, 0755) == 0 || errno == EEXIST) && lstat(dir, &st) == 0 && S_ISDIR(st.st_mode)
        && st.st_uid == 0 && !(st.st_mode & 022)) {
        fd = open(SGEWRAP_GID_RANGE_MARK, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        said = fd < 0 && errno == EEXIST;
    }
    if (!said)
        say(LOG_WARNING, "session of sshd %d: job group ids are not checked against gid_range before a session's "
            "leftovers are killed (no %s: sgewrap config ... --apply writes it); said once per boot", (int)m,
            SGEWRAP_GID_RANGE_FILE);
    if (fd >= 0)
        close(fd);
    return 1;
}

/* Whether the watcher may kill by the job's group id: only inside this host's gid_range, as the cache
   that "sgewrap config|node-access --apply" writes says (sgewrap.rootside.gidrange.reapable: without a
   cache as before; with one that root cannot rely on, not at all). */
static int gid_reapable(const struct job *job, pid_t m)
{
    static char data[SGEWRAP_GID_RANGE_MAX + 1];
    char dir[PATH_MAX];
    struct stat st;
    struct utsname u;
    ssize_t n = -1;
    snprintf(dir, sizeof dir, "%s", SGEWRAP_GID_RANGE_FILE);
    *strrchr(dir, '/') = '\0';
    if (lstat(dir, &st) < 0) {
        if (errno == ENOENT)
            return no_gid_range(m);
    } else if (S_ISDIR(st.st_mode) && st.st_uid == 0 && !(st.st_mode & 022)) {
        n = read_file(SGEWRAP_GID_RANGE_FILE, data, sizeof data, &st);
        if (n == -1 && errno == ENOENT)
            return no_gid_range(m);
    }
    if (n < 0 || st.st_uid != 0 || (st.st_mode & 022)) {
        say(LOG_ERR, "session of sshd %d: not killing what carries gid %d: %s (or its directory) is not root's, "
            "is writable by others or is larger than %d bytes (sgewrap config ... --apply rewrites it)", (int)m,
            (int)job->gid, SGEWRAP_GID_RANGE_FILE, SGEWRAP_GID_RANGE_MAX);
        return 0;
    }
    if (uname(&u) < 0)
        u.nodename[0] = '\0';
    int inside = sgw_gid_in_range(data, (size_t)n, u.nodename, job->gid);
    if (inside == 0)
        say(LOG_WARNING, "session of sshd %d: not killing what carries gid %d: outside the gid_range of %s (%s) (a "
            "stale cache? sgewrap check says; sgewrap config ... --apply rewrites it)", (int)m, (int)job->gid,
            u.nodename, SGEWRAP_GID_RANGE_FILE);
    else if (inside < 0)
        say(LOG_ERR, "session of sshd %d: not killing what carries gid %d: %s has no line for %s, or a malformed "
            "one (sgewrap config ... --apply rewrites it)", (int)m, (int)job->gid, SGEWRAP_GID_RANGE_FILE,
            u.nodename);
    return inside == 1;
}

/* The cgroup's members; with sweep, where that could not be done, the task's group, inside gid_range
   only (a job sshd's session is the whole task; an adopted login leaves the group to Grid Engine). */
static void kill_session(const char *cgroup, const struct job *job, int sweep, pid_t m)
{
    char path[PATH_MAX + 32];
    int killed = 0;
    if (cgroup[0]) {
        snprintf(path, sizeof path, "%s/cgroup.kill", cgroup);
        killed = write_str(path, "1") == 0;
    }
    if (sweep && !killed && gid_reapable(job, m)) {  /* no cgroup: the task's group, as Grid Engine knows it */
        int n = kill_gid(job->gid);
        if (n)
            say(LOG_NOTICE, "session of sshd %d closed: killed %d process(es) left in job %s (gid %d)",
                (int)m, n, job->key, (int)job->gid);
    }
    if (cgroup[0]) {
        /* rmdir succeeds once the kernel has reaped every member; bounded */
        for (int i = 0; i < SETTLE_MS / 10; i++) {
            if (rmdir(cgroup) == 0 || errno == ENOENT)
                break;
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

/* 1 if the cgroup has members (cgroup.events: "populated 1"), 0 if not, -1 if it cannot be read. */
static int populated(int events_fd)
{
    char buf[128];
    ssize_t n = pread(events_fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *p = strstr(buf, "populated ");
    return p ? p[10] == '1' : -1;
}

static long since_ms(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/* 1 if pid is a member of the cgroup rel (its path below the cgroup2 mount), else 0. */
static int in_cgroup(pid_t pid, const char *rel)
{
    char data[SMALL_MAX];
    ssize_t n = proc_read(pid, "cgroup", data, sizeof data);
    if (n < 0 || (size_t)n >= sizeof data - 1)
        return 0;                       /* unread, or maybe cut short: not known to be a member */
    char *line = v2_path(data);
    if (line == NULL)
        return 0;
    size_t k = strcspn(line, "\n");
    return line[k] == '\n' && strlen(rel) == k && strncmp(line, rel, k) == 0;
}

/* 1 while the cgroup (its cgroup.procs at path) has a member other than self (0 when it cannot be read). */
static int others_in(const char *procs_path, pid_t self)
{
    int fd = open(procs_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "re") : NULL;
    if (f == NULL) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    int pid, found = 0;
    for (int i = 0; i < 4 && !found && fscanf(f, "%d", &pid) == 1; i++)
        found = (pid_t)pid != self;
    fclose(f);
    return found;
}

/* A job sshd's session is being closed by sshd (its command ended, or its client went: Ctrl-C of qrsh
   -inherit, a dropped connection) with processes left in its cgroup: each gets SIGHUP (what the end of
   ssh -t's terminal gives), SIGTERM and SIGCONT, then up to GRACE_MS to end as its traps say, while
   self (M, the one member not told) stays alive: Grid Engine kills the task's group as soon as its sshd
   exits.  What is left then is killed when M exits (the watcher; a member that ignores the signals, or
   forks meanwhile, stays in the cgroup: users cannot move out of it).  Each member is held by a pidfd
   and signalled only if, held, it is still in this cgroup: a PID reused meanwhile is never signalled.
   Reading the members is bounded (4 * MAX_HELD, and the grace). */
static void hang_up(const char *cgroup, pid_t self)
{
    char mount[PATH_MAX], procs_path[PATH_MAX + 32];
    if (cgroup2_mount(mount, sizeof mount) < 0)
        return;
    size_t ml = strlen(mount);
    while (ml > 0 && mount[ml - 1] == '/')
        ml--;
    if (strncmp(cgroup, mount, ml) != 0 || cgroup[ml] != '/')
        return;
    const char *rel = cgroup + ml;
    snprintf(procs_path, sizeof procs_path, "%s/cgroup.procs", cgroup);
    if (!others_in(procs_path, self))
        return;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);    /* the grace counts from here: reading the members is in it */
    int procs = open(procs_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    FILE *f = procs >= 0 ? fdopen(procs, "re") : NULL;
    if (f != NULL) {
        /* the list grows while it is read (a fork storm): bounded in members read and in time */
        int pid, read_n = 0;
        while (read_n++ < 4 * MAX_HELD && since_ms(&t0) < GRACE_MS && fscanf(f, "%d", &pid) == 1) {
            if ((pid_t)pid == self)
                continue;
            int fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
            if (fd < 0)
                continue;
            /* held, then checked: while it lives its PID names it; once reaped the pidfd signals nothing */
            if (in_cgroup((pid_t)pid, rel)) {
                syscall(SYS_pidfd_send_signal, fd, SIGHUP, NULL, 0);
                syscall(SYS_pidfd_send_signal, fd, SIGTERM, NULL, 0);
                syscall(SYS_pidfd_send_signal, fd, SIGCONT, NULL, 0);
            }
            close(fd);
        }
        fclose(f);
    } else if (procs >= 0) {
        close(procs);
    }
    while (since_ms(&t0) < GRACE_MS && others_in(procs_path, self)) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void close_from(int low, int keep1, int keep2)
{
    for (int fd = low; fd < 1024; fd++)
        if (fd != keep1 && fd != keep2)
            close(fd);
    int hi = keep1 > keep2 ? keep1 : keep2;
    if (syscall(SYS_close_range, (unsigned)(hi > 1023 ? hi + 1 : 1024), ~0U, 0) < 0)
        for (int fd = 1024; fd < 65536; fd++)
            if (fd != keep1 && fd != keep2)
                close(fd);
}

/* Leave a watcher: a fork of this process (nothing is exec'd, nothing loaded), in a session of its
   own, without groups, fds 0-2 on /dev/null and no other fd but pidfds of m and of the shepherd.

   reap (a job sshd's session, the whole task): once m has exited (also when it is SIGKILLed: qdel),
   kill what is left of the session, then remove its cgroup.
   !reap (an adopted login, which shares a running job): nothing is killed when the login ends; what
   it left in its cgroup dies with the job, when the shepherd exits.  The watcher ends early once m
   has exited and the cgroup is empty.  Refused (-1) when no watcher could be left. */
static int watch(pid_t m, pid_t shepherd, unsigned long long shepherd_start, const char *cgroup,
                 const struct job *job, int reap)
{
    int pidfd = (int)syscall(SYS_pidfd_open, m, 0), shepfd = -1;
    struct pstat ps;
    if (pidfd < 0)
        return -1;
    if (shepherd > 0) {
        shepfd = (int)syscall(SYS_pidfd_open, shepherd, 0);
        /* opened, then checked: the pidfd holds the very process whose start time matched */
        if (shepfd < 0 || proc_stat(shepherd, &ps) < 0 || ps.start != shepherd_start) {
            close(pidfd);
            if (shepfd >= 0)
                close(shepfd);
            errno = ESRCH;
            return -1;
        }
    }
    pid_t child = fork();
    if (child < 0) {
        close(pidfd);
        if (shepfd >= 0)
            close(shepfd);
        return -1;
    }
    if (child > 0) {
        int status = 0;
        close(pidfd);
        if (shepfd >= 0)
            close(shepfd);
        while (waitpid(child, &status, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            errno = EAGAIN;
            return -1;                  /* no watcher: the session must not start */
        }
        return 0;
    }
    /* the middle child */
    setsid();
    pid_t watcher = fork();
    if (watcher < 0)
        _exit(1);
    if (watcher > 0)
        _exit(0);
    prctl(PR_SET_NAME, "sgewrap-watch", 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, s == SIGCHLD ? SIG_DFL : SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setgroups(0, NULL);
    if (chdir("/") < 0)
        _exit(0);
    int null = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; fd++)
        dup2(null, fd);
    close_from(3, pidfd, shepfd);
    /* p[0]: m, until an adopted login has ended; then its cgroup's events */
    struct pollfd p[2] = {{pidfd, POLLIN, 0}, {shepfd, POLLIN, 0}};
    int login_ended = 0;
    for (;;) {
        p[0].revents = p[1].revents = 0;
        if (poll(p, shepfd >= 0 ? 2 : 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (shepfd >= 0 && p[1].revents)
            break;                      /* the job (task) ended: everything of the session goes */
        if (!p[0].revents)
            continue;
        if (login_ended) {
            if (populated(p[0].fd) == 0) {
                rmdir(cgroup);
                _exit(0);
            }
            continue;
        }
        if (reap || shepfd < 0)
            break;                      /* the session was the whole task */
        close(p[0].fd);                 /* an adopted login ended: its leftovers live on with the job */
        login_ended = 1;
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/cgroup.events", cgroup);
        int events = cgroup[0] ? open(path, O_RDONLY | O_CLOEXEC) : -1;
        if (events < 0 || populated(events) == 0) {
            if (cgroup[0])
                rmdir(cgroup);
            _exit(0);
        }
        p[0].fd = events;
        p[0].events = POLLPRI;
    }
    kill_session(cgroup, job, reap, m);
    _exit(0);
}

/* ------------------------------------------------------------------------------------ options */

static int parse_opts(int argc, const char **argv, struct opts *o, const char **mode)
{
    memset(o, 0, sizeof *o);
    o->facility = SGEWRAP_DEFAULT_FACILITY_VALUE;
    o->setup_dir = SGEWRAP_DEFAULT_SETUP_DIR;
    *mode = NULL;
#define HAS(opt) (strncmp(a, opt, strlen(opt)) == 0)
#define VALUE(opt) (a + strlen(opt))
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, SGEWRAP_JOB) == 0 || strcmp(a, SGEWRAP_SETUP) == 0)
            *mode = a;
        else if (strcmp(a, SGEWRAP_OPT_FAIL_OPEN) == 0)
            o->fail_open = 1;
        else if (HAS(SGEWRAP_OPT_SGE_ROOT) && VALUE(SGEWRAP_OPT_SGE_ROOT)[0] == '/')
            o->sge_root = VALUE(SGEWRAP_OPT_SGE_ROOT);
        else if (HAS(SGEWRAP_OPT_SETUP_DIR) && VALUE(SGEWRAP_OPT_SETUP_DIR)[0] == '/')
            o->setup_dir = VALUE(SGEWRAP_OPT_SETUP_DIR);
        else if (HAS(SGEWRAP_OPT_ADMIN_USER) && o->n_admins < MAX_ADMINS && VALUE(SGEWRAP_OPT_ADMIN_USER)[0])
            o->admins[o->n_admins++] = VALUE(SGEWRAP_OPT_ADMIN_USER);
        else if (HAS(SGEWRAP_OPT_FACILITY)) {
            int found = 0;
            for (size_t k = 0; k < sizeof sgewrap_facilities / sizeof sgewrap_facilities[0]; k++)
                if (strcmp(VALUE(SGEWRAP_OPT_FACILITY), sgewrap_facilities[k].name) == 0) {
                    o->facility = sgewrap_facilities[k].value;
                    found = 1;
                }
            if (!found)
                return -1;
        } else
            return -1;
    }
    if (o->sge_root == NULL && o->n_admins == 0)
        o->sge_root = SGEWRAP_FALLBACK_SGE_ROOT;
    log_facility = o->facility;
    return *mode ? 0 : -1;
}

#define START(o, mode)                                                                             \
    struct opts o;                                                                                 \
    const char *mode;                                                                              \
    if (parse_opts(argc, argv, &o, &mode) < 0) {                                                   \
        say(LOG_ERR, "bad arguments in the PAM file (want job|setup and the options of node_access)"); \
        return PAM_SERVICE_ERR;                                                                    \
    }

/* ------------------------------------------------------------------------------ job mode */

static int job_account(pam_handle_t *pamh, const struct opts *o)
{
    char why[512];
    pid_t m;
    struct job job;
    const char *user = user_of(pamh);
    struct trust t;
    memset(&job, 0, sizeof job);
    if (job_of_connection(o, &m, &job, &t, why, sizeof why) < 0) {
        /* --fail-open admits untied only the job's owner: one whose job could be read that far */
        if (o->fail_open && job.owner[0] && strcmp(user, job.owner) == 0) {
            say(LOG_WARNING, "session of %.64s NOT tied to a job (--fail-open): %s", user, why);
            return PAM_SUCCESS;
        }
        say(LOG_ERR, "session of %.64s refused: %s", user, why);
        return PAM_PERM_DENIED;
    }
    if (strcmp(user, job.owner) != 0) {
        say(LOG_ERR, "session of %.64s refused: user '%.64s' is not %s, the owner of job %s", user, user, job.owner,
            job.key);
        return PAM_PERM_DENIED;
    }
    return PAM_SUCCESS;
}

static int job_setcred(pam_handle_t *pamh, const struct opts *o)
{
    char why[512];
    pid_t m;
    struct job job;
    const char *user = user_of(pamh);
    char spool[PATH_MAX];
    if (shepherd_spool(getppid(), spool, sizeof spool) == 0)
        return PAM_SUCCESS;         /* ESTABLISH, in the monitor: account decided; the session's process comes later */
    struct trust t;
    memset(&job, 0, sizeof job);
    int found = job_of_connection(o, &m, &job, &t, why, sizeof why) == 0;
    if (!found || strcmp(user, job.owner) != 0) {
        if (!found && o->fail_open && job.owner[0] && strcmp(user, job.owner) == 0)
            return PAM_SUCCESS;
        if (found)
            snprintf(why, sizeof why, "user '%.64s' is not %s, the owner of job %s", user, job.owner, job.key);
        /* the session's own process: sshd only logs a failed setcred of a key login, and a session
           outside its job must not start */
        say(LOG_ERR, "session of %.64s refused: %s", user, why);
        _exit(1);
    }
    if (give_job(pamh, &job, &t, why, sizeof why) < 0) {
        /* sshd only logs a failed setcred of a key login: a session outside its job must not start */
        say(LOG_ERR, "session of %.64s in job %s refused: %s", user, job.key, why);
        _exit(1);
    }
    return PAM_SUCCESS;
}

static int job_open(pam_handle_t *pamh, const struct opts *o)
{
    char why[512], cgroup[PATH_MAX] = "", path[PATH_MAX + 32], pid[32];
    pid_t m;
    struct job job;
    struct trust t;
    const char *user = user_of(pamh);
    memset(&job, 0, sizeof job);
    if (job_of_connection(o, &m, &job, &t, why, sizeof why) < 0 || strcmp(user, job.owner) != 0 || m != getpid()) {
        if (o->fail_open && job.owner[0] && strcmp(user, job.owner) == 0)
            return PAM_SUCCESS;
        say(LOG_ERR, "session of %.64s refused at its start: %s", user, why);
        return PAM_SESSION_ERR;
    }
    if (session_cgroup(m, &job, cgroup, sizeof cgroup) == 0) {
        if (mkdir(cgroup, 0755) < 0 && errno != EEXIST) {
            say(LOG_WARNING, "sshd %d: cannot make %s (%s): reaping by group id only", (int)m, cgroup,
                strerror(errno));
            cgroup[0] = '\0';
        }
    } else {
        say(LOG_NOTICE, "sshd %d: no cgroup v2 here: reaping by group id only", (int)m);
        cgroup[0] = '\0';
    }
    if (watch(m, 0, 0, cgroup, &job, 1) < 0) {
        if (cgroup[0])
            rmdir(cgroup);
        say(LOG_ERR, "session of %.64s refused: cannot watch sshd %d for its end: %s", user, (int)m, strerror(errno));
        return PAM_SESSION_ERR;
    }
    if (cgroup[0]) {
        snprintf(path, sizeof path, "%s/cgroup.procs", cgroup);
        snprintf(pid, sizeof pid, "%d", (int)m);
        if (write_str(path, pid) < 0) {
            int e = errno;
            /* an empty cgroup left there would take the watcher's cgroup.kill (which succeeds on it) for
               the reaping and skip the sweep by group id: it goes, so the sweep runs */
            rmdir(cgroup);
            say(LOG_WARNING, "sshd %d: cannot join %s (%s): reaping by group id only", (int)m, cgroup,
                strerror(e));
        }
    }
    say(LOG_INFO, "job %s: session of %.64s tied to the job (gid %d, sshd %d%s%s)", job.key, user, (int)job.gid,
        (int)m, cgroup[0] ? ", cgroup " : "", cgroup);
    return PAM_SUCCESS;
}

/* ------------------------------------------------------------------------------ setup mode */

/* The setup file of the monitor m into data (cap bytes) and its spool, honoured only if it was written
   for that very process: a regular file of root's, mode 0600, "sgewrap PID START" naming m's PID and
   start time, m running as root.  Its length; 0 if there is none; -1 if there is one not to honour
   (logged when loud). */
static ssize_t setup_file_of(const struct opts *o, pid_t m, char *data, size_t cap, char *spool, size_t spool_cap,
                             int loud)
{
    char path[PATH_MAX];
    struct stat st;
    struct pstat ps;
    long long pid;
    unsigned long long start;
    snprintf(path, sizeof path, "%s/sge-qrsh-setup.%d", o->setup_dir, (int)m);
    ssize_t n = read_file(path, data, cap, &st);
    if (n == -1 && errno == ENOENT)
        return 0;                   /* no job was chosen for this connection */
    if (n < 0 || st.st_uid != 0 || (st.st_mode & 077)) {
        if (loud)
            say(LOG_WARNING, "%s ignored: not a regular file of root's with mode 0600", path);
        return -1;
    }
    if (sgw_parse_setup(data, (size_t)n, spool, spool_cap, &pid, &start) < 0 || pid != m
        || proc_stat(m, &ps) < 0 || ps.start != start || proc_ruid(m) != 0) {
        if (loud)
            say(LOG_WARNING, "%s ignored: not written for sshd %d (stale, or not sgewrap's)", path, (int)m);
        return -1;
    }
    return n;
}

/* In the session's own process: the job of the setup file of our parent, the monitor. */
static int setup_setcred(pam_handle_t *pamh, const struct opts *o)
{
    char data[SMALL_MAX], spool[SPOOL_MAX + 1], why[512];
    if (setup_file_of(o, getppid(), data, sizeof data, spool, sizeof spool, 1) <= 0)
        return PAM_SUCCESS;         /* none, or not to be honoured: the login is not tied */
    struct trust t;
    struct job job;
    const char *user = user_of(pamh);
    trust_init(&t, o);
    if (read_job(spool, &t, &job, why, sizeof why) < 0 || strcmp(job.owner, user) != 0) {
        say(LOG_ERR, "session of %.64s refused: its job went away: %s", user, why);
        _exit(1);
    }
    if (give_job(pamh, &job, &t, why, sizeof why) < 0) {
        say(LOG_ERR, "session of %.64s in job %s refused: %s", user, job.key, why);
        _exit(1);
    }
    return PAM_SUCCESS;
}

/* An adopted login (in its monitor, at open_session): a cgroup of its own, watched so that what it
   leaves dies with the job (when the task's shepherd exits), never with the login. */
static int setup_open(pam_handle_t *pamh, const struct opts *o)
{
    char data[SMALL_MAX], spool[SPOOL_MAX + 1], why[512] = "", cgroup[PATH_MAX] = "", procs[PATH_MAX + 32],
        self[32], shep_spool[PATH_MAX];
    long long shep;
    unsigned long long shep_start;
    pid_t m = getpid();
    ssize_t n = setup_file_of(o, m, data, sizeof data, spool, sizeof spool, 0);
    if (n <= 0)
        return PAM_IGNORE;              /* not adopted (or not a file to honour): nothing to watch */
    const char *user = user_of(pamh);
    struct trust t;
    struct job job;
    trust_init(&t, o);
    if (sgw_setup_shepherd(data, (size_t)n, &shep, &shep_start) < 0
        || shepherd_spool((pid_t)shep, shep_spool, sizeof shep_spool) < 0 || strcmp(shep_spool, spool) != 0
        || read_job(spool, &t, &job, why, sizeof why) < 0 || strcmp(job.owner, user) != 0) {
        say(LOG_ERR, "adopted session of %.64s refused at its start: its job's shepherd is gone or is not the "
            "setup file's%s%s", user, why[0] ? ": " : "", why);
        return PAM_SESSION_ERR;
    }
    if (session_cgroup(m, &job, cgroup, sizeof cgroup) < 0 || (mkdir(cgroup, 0755) < 0 && errno != EEXIST)) {
        say(LOG_NOTICE, "sshd %d: no cgroup for the adopted login: it is reaped by Grid Engine's group kill only",
            (int)m);
        return PAM_SUCCESS;
    }
    if (watch(m, (pid_t)shep, shep_start, cgroup, &job, 0) < 0) {
        rmdir(cgroup);
        say(LOG_ERR, "adopted session of %.64s refused: cannot watch job %s for its end: %s", user, job.key,
            strerror(errno));
        return PAM_SESSION_ERR;
    }
    snprintf(procs, sizeof procs, "%s/cgroup.procs", cgroup);
    snprintf(self, sizeof self, "%d", (int)m);
    if (write_str(procs, self) < 0)
        say(LOG_WARNING, "sshd %d: cannot join %s (%s)", (int)m, cgroup, strerror(errno));
    return PAM_SUCCESS;
}

/* ------------------------------------------------------------------------------- PAM's calls */

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)pamh, (void)flags, (void)argc, (void)argv;
    return PAM_IGNORE;
}

PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    START(o, mode);
    if (!(flags & (PAM_ESTABLISH_CRED | PAM_REINITIALIZE_CRED)))
        return PAM_SUCCESS;
    return strcmp(mode, SGEWRAP_JOB) == 0 ? job_setcred(pamh, &o) : setup_setcred(pamh, &o);
}

PAM_EXTERN int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)flags;
    START(o, mode);
    return strcmp(mode, SGEWRAP_JOB) == 0 ? job_account(pamh, &o) : PAM_IGNORE;
}

PAM_EXTERN int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)flags;
    START(o, mode);
    return strcmp(mode, SGEWRAP_JOB) == 0 ? job_open(pamh, &o) : setup_open(pamh, &o);
}

/* job mode, close_session: in M, when sshd closes the session (not when sshd is SIGKILLed: qdel kills
   at once, through the watcher).  M's own cgroup, as the kernel says, is the session's when it is one of
   ours (session_cgroup's name); what is left there is told before M exits (hang_up). */
static int job_close(void)
{
    char mount[PATH_MAX], data[SMALL_MAX], cgroup[PATH_MAX];
    pid_t m = getpid();
    ssize_t n = proc_read(m, "cgroup", data, sizeof data);
    if (n < 0 || (size_t)n >= sizeof data - 1 || cgroup2_mount(mount, sizeof mount) < 0)
        return PAM_IGNORE;
    char *line = v2_path(data);
    if (line == NULL)
        return PAM_IGNORE;
    line[strcspn(line, "\n")] = '\0';
    const char *base = strrchr(line, '/');
    if (base == NULL || strncmp(base, "/sgewrap-", 9) != 0 || strstr(line, "/..") != NULL)
        return PAM_IGNORE;              /* not in a session cgroup of ours: nothing to tell */
    size_t ml = strlen(mount);
    while (ml > 0 && mount[ml - 1] == '/')
        ml--;
    if (snprintf(cgroup, sizeof cgroup, "%.*s%s", (int)ml, mount, line) >= (int)sizeof cgroup)
        return PAM_IGNORE;
    hang_up(cgroup, m);
    return PAM_IGNORE;
}

PAM_EXTERN int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)pamh, (void)flags;
    START(o, mode);
    (void)o;
    /* the watcher kills what is left: it also runs when sshd is SIGKILLed */
    return strcmp(mode, SGEWRAP_JOB) == 0 ? job_close() : PAM_IGNORE;
}
