"""A seccomp filter for the sandbox's jails, as the classic BPF program ``bwrap --seccomp FD``
loads: the calls that reach another process's memory or descriptors fail with EPERM.

Blocked: ``ptrace``, ``process_vm_readv``/``process_vm_writev`` (another process's memory),
``pidfd_open``/``pidfd_getfd``/``pidfd_send_signal`` (another process's descriptors) and
``kcmp``. A call made through another ABI than the machine's own (i386 ``int 0x80`` on
x86_64, x32) kills the process, so the filter cannot be side-stepped by a second syscall
table. The jail needs none of these: the answer talks to the harness only over its pipes.
Written by hand (no libseccomp binding on PyPI works without the C library), checked by
``tests/plugins/test_sandbox.py``.
"""
from __future__ import annotations

import platform
import struct

_LD_W_ABS, _JEQ, _JSET, _RET = 0x20, 0x15, 0x45, 0x06
_ALLOW, _KILL_PROCESS, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_EPERM = 1
_X32_BIT = 0x40000000

# machine -> (AUDIT_ARCH_*, {syscall: number}) from the kernel's syscall tables
_ARCHES = {
    "x86_64": (0xC000003E, {"ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
                            "kcmp": 312, "pidfd_send_signal": 424, "pidfd_open": 434, "pidfd_getfd": 438}),
    "aarch64": (0xC00000B7, {"ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
                             "kcmp": 272, "pidfd_send_signal": 424, "pidfd_open": 434, "pidfd_getfd": 438}),
}
BLOCKED = tuple(_ARCHES["x86_64"][1])


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The filter for this machine (``None`` where no table is known: the jail then runs
    without one, its namespaces and dropped capabilities still in force)."""
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit, numbers = arch
    nrs = sorted(numbers.values())
    body = [_ins(_LD_W_ABS, 0, 0, 4),                 # seccomp_data.arch
            _ins(_JEQ, 1, 0, audit),
            _ins(_RET, 0, 0, _KILL_PROCESS),
            _ins(_LD_W_ABS, 0, 0, 0)]                 # seccomp_data.nr
    if audit == 0xC000003E:                           # x32 calls: nr | 0x40000000
        body.append(_ins(_JSET, len(nrs) + 1, 0, _X32_BIT))
    for i, nr in enumerate(nrs):                      # jump to the EPERM return
        body.append(_ins(_JEQ, len(nrs) - i, 0, nr))
    body += [_ins(_RET, 0, 0, _ALLOW), _ins(_RET, 0, 0, _ERRNO | _EPERM)]
    return b"".join(body)
