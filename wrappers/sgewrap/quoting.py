"""Quote a command line for the shell the user is actually running.

Used by ``--dry-run`` and ``sgewrap explain`` only (never on the hot path), so
it may import shellingham.  POSIX shells (sh, bash, zsh, ksh, dash), fish and
csh/tcsh quote differently: fish treats ``\\`` inside single quotes as an
escape, csh expands ``!`` (history) even inside single quotes.
"""
import os

POSIX, FISH, CSH = "posix", "fish", "csh"
_FAMILY = {"fish": FISH, "csh": CSH, "tcsh": CSH}
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=,@+-")
_DOUBLE_UNSAFE = {POSIX: "\"$`\\!\n", FISH: "\"$\\\n", CSH: "\"$`!\n\\"}


def family(shell_name):
    """The quoting family of a shell name such as 'bash', 'tcsh' or '/usr/bin/fish'."""
    return _FAMILY.get(os.path.basename(shell_name or ""), POSIX)


def user_shell():
    """The name of the shell running us (shellingham), else $SHELL's, else 'sh'."""
    try:
        import shellingham
        return shellingham.detect_shell()[0]
    except Exception:  # ImportError, ShellDetectionFailure, unreadable /proc...
        return os.path.basename(os.environ.get("SHELL", "")) or "sh"


def quote(word, fam=POSIX):
    """One word, quoted so that ``fam`` shells read it back unchanged."""
    if word and _SAFE.issuperset(word) and word[0] != "=":   # zsh expands a leading = (=cmd)
        return word
    if "'" in word and not any(c in word for c in _DOUBLE_UNSAFE[fam]):
        return '"%s"' % word   # SGE's already single-quoted starter paths read best so
    if fam == FISH:
        return "'%s'" % word.replace("\\", "\\\\").replace("'", "\\'")
    quoted = "'%s'" % word.replace("'", "'\\''")
    if fam == CSH:
        quoted = quoted.replace("!", "'\\!'").replace("\n", "'\\\n'")
    return quoted


def join(argv, shell_name):
    """argv as one command line for ``shell_name``."""
    fam = family(shell_name)
    return " ".join(quote(w, fam) for w in argv)


def for_user_shell(argv):
    return join(argv, user_shell())
