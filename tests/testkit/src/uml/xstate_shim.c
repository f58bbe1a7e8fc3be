/*
 * LD_PRELOAD shim that lets User-Mode Linux 6.1 run on hosts whose XSAVE
 * area holds more than UML knows about (Intel AMX tiles: 11 KiB in all).
 *
 * Linux accepts PTRACE_SETREGSET(NT_X86_XSTATE) only with a buffer of the
 * host's full XSAVE size and fails anything shorter with EFAULT. UML 6.1
 * passes the size of the components it knows (2.6 KiB), so the first
 * context switch into a guest process panics the VM with "ptrace set fp
 * regs failed, errno = 14". The shim pads UML's buffer with zeroes up to
 * the host size. The components past UML's size (AMX) are never enabled
 * for guest processes (that takes an arch_prctl UML does not pass on), so
 * their init state, all zeroes and clear in xstate_bv, is what they hold.
 *
 * On hosts without such components the sizes match and every call passes
 * through unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef long (*ptrace_fn)(int, ...);

static _Thread_local unsigned char padded[64 * 1024] __attribute__((aligned(64)));
static _Thread_local size_t host_xstate_size;

long ptrace(enum __ptrace_request request, ...)
{
	static ptrace_fn real;
	va_list ap;
	pid_t pid;
	void *addr, *data;

	va_start(ap, request);
	pid = va_arg(ap, pid_t);
	addr = va_arg(ap, void *);
	data = va_arg(ap, void *);
	va_end(ap);
	if (!real)
		real = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");

	if (request == PTRACE_SETREGSET && (long)addr == NT_X86_XSTATE) {
		struct iovec *iov = data;

		if (!host_xstate_size) {
			struct iovec probe = { padded, sizeof(padded) };

			if (real(PTRACE_GETREGSET, pid, addr, &probe) == 0)
				host_xstate_size = probe.iov_len;
		}
		if (host_xstate_size > iov->iov_len) {
			struct iovec full = { padded, host_xstate_size };

			memset(padded, 0, host_xstate_size);
			memcpy(padded, iov->iov_base, iov->iov_len);
			return real(request, pid, addr, &full);
		}
	}
	return real(request, pid, addr, data);
}
