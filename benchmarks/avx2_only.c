/* An LD_PRELOAD library that makes this x86-64 CPU look like one with AVX2 and FMA but no AVX-512, AVX-VNNI or
 * AMX, so that libraries which pick their kernels from the cpuid instruction (ONNX Runtime's MLAS, oneDNN,
 * numpy) run their AVX2 paths on real silicon. benchmarks/avx2_only.sh builds and loads it.
 *
 * How: Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, 0; /proc/cpuinfo flag cpuid_fault) turns every cpuid
 * in this process into a SIGSEGV. The handler runs the real cpuid with faulting briefly off, clears the
 * hidden feature bits, writes the registers back and steps over the 2-byte instruction. The setting is kept
 * by threads and forks and dropped by execve, where this library's constructor sets it again.
 * Code that later installs its own SIGSEGV handler (Python's faulthandler, e.g. under pytest) breaks this.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

/* Leaf 7, subleaf 0. EBX: AVX512 F, DQ, IFMA, PF, ER, CD, BW, VL. */
#define HIDE_7_0_EBX (BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31))
/* ECX: AVX512 VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ. */
#define HIDE_7_0_ECX (BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14))
/* EDX: AVX512 4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX512-FP16, AMX-TILE, AMX-INT8. */
#define HIDE_7_0_EDX (BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25))
/* Leaf 7, subleaf 1. EAX: AVX-VNNI, AVX512-BF16, AMX-FP16, AVX-IFMA. EDX: AVX-VNNI-INT8, AVX-NE-CONVERT,
 * AMX-COMPLEX, AVX-VNNI-INT16, AVX10. */
#define HIDE_7_1_EAX (BIT(4) | BIT(5) | BIT(21) | BIT(23))
#define HIDE_7_1_EDX (BIT(4) | BIT(5) | BIT(8) | BIT(10) | BIT(19))

static long set_cpuid(int enabled) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled); }

static void on_segv(int sig, siginfo_t *info, void *context) {
    greg_t *reg = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)reg[REG_RIP];
    /* A cpuid fault is signalled by the kernel itself; anything else is a real crash: let it happen. */
    if (info->si_code != SI_KERNEL || ip[0] != 0x0f || ip[1] != 0xa2) {
        signal(sig, SIG_DFL);
        return;
    }
    unsigned leaf = (unsigned)reg[REG_RAX], subleaf = (unsigned)reg[REG_RCX], a, b, c, d;
    set_cpuid(1);
    __cpuid_count(leaf, subleaf, a, b, c, d);
    set_cpuid(0);
    if (leaf == 7 && subleaf == 0) {
        b &= ~HIDE_7_0_EBX;
        c &= ~HIDE_7_0_ECX;
        d &= ~HIDE_7_0_EDX;
    } else if (leaf == 7 && subleaf == 1) {
        a &= ~HIDE_7_1_EAX;
        d &= ~HIDE_7_1_EDX;
    }
    reg[REG_RAX] = a;
    reg[REG_RBX] = b;
    reg[REG_RCX] = c;
    reg[REG_RDX] = d;
    reg[REG_RIP] += 2;
}

__attribute__((constructor)) static void hide_features(void) {
    struct sigaction action = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO};
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, NULL) != 0 || set_cpuid(0) != 0) {
        perror("avx2_only: CPUID faulting is not available here (no cpuid_fault in /proc/cpuinfo?)");
        _exit(3);
    }
}
