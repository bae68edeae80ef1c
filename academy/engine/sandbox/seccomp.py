"""The seccomp deny-list (layer 5) bubblewrap loads for every kernel, as classic BPF."""

from __future__ import annotations

import errno
import platform
import struct
from typing import Any

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_CLONE_NEWUSER = 0x10000000
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
# x86-64 syscall numbers (asm/unistd_64.h) answered with EPERM.
_DENIED_SYSCALLS_X86_64 = {
    "ptrace": 101, "syslog": 103, "uselib": 134, "vhangup": 153, "pivot_root": 155, "chroot": 161,
    "acct": 163, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169,
    "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173, "init_module": 175,
    "delete_module": 176, "quotactl": 179, "lookup_dcookie": 212, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298, "fanotify_init": 300,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "kexec_file_load": 320, "bpf": 321,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442,
}  # fmt: skip
_NR_CLONE = 56
_NR_CLONE3 = 435


def seccomp_filter() -> bytes | None:
    """The classic-BPF deny-list bwrap loads with ``--seccomp FD``, or None off x86-64.

    Denied calls fail with EPERM (``clone3`` with ENOSYS so that glibc falls back to
    ``clone``, whose flags a filter can inspect); foreign syscall ABIs (i386, x32) fail too.
    """
    if platform.machine() != "x86_64":
        return None
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    deny = _SECCOMP_RET_ERRNO | errno.EPERM
    prog: list[tuple[int, Any, Any, int]] = [
        (ld, 0, 0, 4),  # arch
        (jeq, 1, 0, _AUDIT_ARCH_X86_64),
        (ret, 0, 0, deny),
        (ld, 0, 0, 0),  # syscall number
        (jge, "deny", 0, _X32_SYSCALL_BIT),
        (jeq, "clone", 0, _NR_CLONE),
        (jeq, "enosys", 0, _NR_CLONE3),
    ]
    prog += [(jeq, "deny", 0, nr) for nr in sorted(_DENIED_SYSCALLS_X86_64.values())]
    prog.append((ret, 0, 0, _SECCOMP_RET_ALLOW))
    labels = {"clone": len(prog)}  # BPF jumps only forward: the clone check precedes the tails
    prog += [(ld, 0, 0, 16), (jset, "deny", 0, _CLONE_NEWUSER), (ret, 0, 0, _SECCOMP_RET_ALLOW)]
    labels["deny"] = len(prog)
    prog.append((ret, 0, 0, deny))
    labels["enosys"] = len(prog)
    prog.append((ret, 0, 0, _SECCOMP_RET_ERRNO | errno.ENOSYS))
    out = bytearray()
    for pc, (code, jt, jf, k) in enumerate(prog):
        jt = labels[jt] - pc - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - pc - 1 if isinstance(jf, str) else jf
        out += struct.pack("<HBBI", code, jt, jf, k)
    return bytes(out)
