"""The root side: what runs as root with an environment, files, PIDs and timing a user controls.

The shepherd starts a ``*_daemon`` (``rshdwrapper``) as root with the job's
environment and the client's connection on fds 0-2; ``pam_exec`` starts the
PAM hooks (``node_access session``, ``node_access adopt``) as root with the
PAM environment; the queue starts ``node_access prolog|epilog`` as root with
the job's environment and the job's output files on fds 1 and 2.  So every
module here keeps these rules:

- it runs as root, started from an absolute interpreter in isolated mode
  (``python3 -I``; :func:`frame.require_isolated` re-executes anything else);
- it imports the Python standard library and the shared contract
  (``sgewrap.errors``, ``sgewrap.conventions``, ``sgewrap.locate``,
  ``sgewrap.methods``) only: never plumbum, never the user side or the admin
  side (``tests/unit/test_layering.py`` reads every import to hold it so);
- it writes never a byte on fds 1 and 2, which belong to someone else (the
  client's socket, the job's output files, sshd's PAM conversation): it
  logs to syslog (:mod:`daemonlog`);
- it trusts nothing a user can set or hold: not the environment (but to
  choose among the user's own verified tasks), not a file a user can
  write, not a process name, not a PID without its start time.

The modules: :mod:`frame` (entry, options, filesystem safety), :mod:`daemonlog`,
:mod:`procs` (process facts from /proc), :mod:`jobspool` (what a job is),
:mod:`gidrange` (which group ids the reaper may kill by), :mod:`setupfile`
(pam_sge-qrsh-setup's files), :mod:`session` and :mod:`adopt` (the PAM hooks),
:mod:`nodeaccess` (``node_access``), :mod:`rshd` (``rshdwrapper``).
"""
