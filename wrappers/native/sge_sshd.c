/*
 * sge-sshd: the job sshd's launcher, the program a tight *_daemon entry names ("WRAPPERS/sge-sshd -i").
 *
 * Grid Engine's shepherd runs it as root, with the job's SGE_* variables in its environment, its
 * fds 0-2 on the client's connection.  It decides, when each session starts (not when "sgewrap
 * config --apply" ran: a host upgraded from Debian 12 to 13 in place keeps one configuration), how
 * the local sshd selects the job's PAM service, and execs it:
 *
 *   OpenSSH 9.2 (Debian 12)   the PAM service is the program's name: argv[0] is "sge-sshd";
 *   OpenSSH 9.8+ (Debian 13)  the PAM service is PamServiceName (default sshd), which 9.2 refuses:
 *                             where sshd-session exists, "-o PamServiceName=sge-sshd" is added.
 *
 * The per-host job sshd configuration (written by --apply; job-only options, then an Include of the
 * site's sshd_config) is given with -f when it exists and is root's and writable by no one else.
 * The environment is replaced by a fixed one before sshd starts.  Statically linked: no loader
 * variable can act on it.  It writes nothing to fds 1 and 2 (the client's socket): a refusal goes to
 * syslog and ends the connection (exit 1: the shepherd reports the daemon's failure).
 * Paths and names: sgewrap.methods, made into pam_sgewrap_options.h at build time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "pam_sgewrap_options.h"

#define MAX_ARGS 64

static int refuse(const char *what, const char *detail)
{
    openlog(SGEWRAP_JOB_SSHD_NAME, LOG_PID | LOG_NDELAY, LOG_AUTHPRIV);
    syslog(LOG_ERR, "job session refused: %s%s%s", what, detail ? ": " : "", detail ? detail : "");
    closelog();
    return 1;
}

/* A file root owns that no one else may write (the per-host configuration). */
static int root_owned(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == 0 && !(st.st_mode & 022);
}

int main(int argc, char **argv)
{
    static char *env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    char *args[MAX_ARGS + 8];
    int n = 0;
    if (argc < 1 || argc > MAX_ARGS)
        return refuse("too many arguments", NULL);
    if (access(SGEWRAP_SSHD, X_OK) != 0)
        return refuse(SGEWRAP_SSHD, strerror(errno));
    args[n++] = SGEWRAP_JOB_SSHD_NAME;        /* OpenSSH 9.2 names the PAM service after this */
    struct stat st;
    int split = stat(SGEWRAP_SSHD_SESSION, &st) == 0;
    if (!split && errno != ENOENT)
        return refuse(SGEWRAP_SSHD_SESSION, strerror(errno));
    if (split) {                              /* 9.8 and later: the option, or the site's service */
        args[n++] = "-o";
        args[n++] = SGEWRAP_PAM_SERVICE_OPTION "=" SGEWRAP_JOB_SSHD_NAME;
    }
    if (root_owned(SGEWRAP_JOB_SSHD_CONFIG)) {
        args[n++] = "-f";
        args[n++] = SGEWRAP_JOB_SSHD_CONFIG;
    } else if (access(SGEWRAP_JOB_SSHD_CONFIG, F_OK) == 0)
        return refuse(SGEWRAP_JOB_SSHD_CONFIG " is not root's, or others may write it", NULL);
    for (int i = 1; i < argc; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    execve(SGEWRAP_SSHD, args, env);
    return refuse(SGEWRAP_SSHD, strerror(errno));
}
