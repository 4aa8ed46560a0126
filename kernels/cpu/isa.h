#pragma once
// Which instruction set the CPU kernels are compiled for. x86-64 builds target x86-64-v3
// (AVX2 + FMA) and add AVX-512 functions chosen at run time; other hosts (aarch64: ARM servers,
// GH200's Grace) compile only the portable kernels, written with vector extensions.
#if defined(__x86_64__) || defined(__i386__)
#define NEXTVIT_CPU_X86 1
#else
#define NEXTVIT_CPU_X86 0
#endif
