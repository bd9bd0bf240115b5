"""The administrator's side: ``sgewrap`` (install, config, check, selftest, explain, node-access,
front) and what only it and the build use: the sge_conf model (:mod:`sgeconf`), the PAM files
(:mod:`pam`), the installer (:mod:`installer`), the man-page generator (:mod:`manpages`), the
qlogin/qrsh front (:mod:`front`) and the stand-in shepherd of ``sgewrap selftest``
(:mod:`shepherd`).

Thin on purpose: the command itself is :mod:`cli` (plumbum), so importing a module of this
package for its data (``make install`` runs :mod:`installer` with a system Python that need not
have plumbum) loads nothing but the standard library.
"""
