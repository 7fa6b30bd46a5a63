"""crashrate_phase — the Python client of crashrate's phase protocol.

    import crashrate_phase
    crashrate_phase.phase("past barrier 1")   # the run is now in this phase
    crashrate_phase.wrong("sum was 41")       # the run's result is wrong

Each call writes one line, ``phase NAME\\n`` or ``wrong DETAIL\\n``, with a single os.write() to
the descriptor named by CRASHRATE_PHASE_FD: nothing is buffered in the process, so the line
reaches the harness even if the interpreter dies right after. Lines are cut to 511 bytes (one
atomic pipe write); newlines inside are replaced by spaces. Without CRASHRATE_PHASE_FD (or with a
malformed one) the calls do nothing. Errors of the write are ignored. Thread-safe.
"""
import os

_MAX_LINE = 512


def _fd():
    value = os.environ.get("CRASHRATE_PHASE_FD", "")
    try:
        fd = int(value)
    except ValueError:
        return -1
    return fd if fd >= 0 else -1


_FD = _fd()


def enabled():
    """Whether a harness is listening (CRASHRATE_PHASE_FD is set)."""
    return _FD >= 0


def _write(kind, text):
    if _FD < 0:
        return
    body = (kind + " " + str(text)).replace("\n", " ").replace("\r", " ")
    data = body.encode("utf-8", "replace")[: _MAX_LINE - 1] + b"\n"
    try:
        os.write(_FD, data)
    except OSError:
        pass


def phase(name):
    """The run enters phase `name` (its phase of death if it dies before the next one)."""
    _write("phase", name)


def wrong(detail):
    """The run's result is wrong (outcome `wrong`)."""
    _write("wrong", detail)
