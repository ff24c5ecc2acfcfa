/* Measurement aid: a process started with LD_PRELOAD=/tmp/hide_avx512.so (and every process it
 * starts) sees a CPU without AVX-512, so that onnxruntime (MLAS), OpenBLAS and NumPy choose their AVX2
 * kernels, as on an AVX2-only PC. Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID; the CPU needs the
 * cpuid_fault flag) makes each CPUID instruction trap; the handler runs the real one and clears the
 * AVX-512 feature bits (leaf 7) and the ZMM state bits (leaf 0xD). Libraries that read XCR0 alone, and
 * glibc's own string functions (chosen before this library loads), still see AVX-512.
 * Build: gcc -O2 -shared -fPIC -o /tmp/hide_avx512.so scripts/hide_avx512.c
 * Used by scripts/measure_engines.py; never part of the product. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static int allow_cpuid(int allowed) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, allowed); }

static void on_fault(int signo, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *r = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)r[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) {  /* a real fault: default action */
        signal(SIGSEGV, SIG_DFL);
        return;
    }
    unsigned leaf = (unsigned)r[REG_RAX], sub = (unsigned)r[REG_RCX], a, b, c, d;
    allow_cpuid(1);
    __cpuid_count(leaf, sub, a, b, c, d);
    allow_cpuid(0);
    if (leaf == 7 && sub == 0) {
        b &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
        c &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        d &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 23) | (1u << 22) | (1u << 24) | (1u << 25));
    } else if (leaf == 7 && sub == 1) {
        a &= ~(1u << 5);  /* AVX512_BF16 */
    } else if (leaf == 0xd && sub == 0) {
        a &= ~0xe0u;      /* no opmask/ZMM state offered */
    }
    r[REG_RAX] = a; r[REG_RBX] = b; r[REG_RCX] = c; r[REG_RDX] = d;
    r[REG_RIP] += 2;
}

__attribute__((constructor)) static void hide_avx512(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &action, NULL);
    allow_cpuid(0);
}
