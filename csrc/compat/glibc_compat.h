// glibc_compat.h — keeps the prebuilt addon loadable on old glibc (the floor in README.md).
//
// Force-included (-include) into every C++ file of the addon on x86-64 Linux. A program built
// against glibc 2.36 imports the newest version of each symbol it calls: memcpy@2.14,
// exp/pow@2.29, expf@2.27 (faster, same results for finite inputs), dlopen & co @2.34 (libdl
// merged into libc), stat@2.33 — each one raising the glibc a binary needs. The .symver lines
// bind those calls to the oldest version (GLIBC_2.2.5, the x86-64 baseline), which every glibc
// since still exports. Functions with no old version are replaced: aligned_alloc (2.16) by
// posix_memalign in tensor.cpp, stat by dvl_path_stat below, and __libc_single_threaded
// (2.32, read by libstdc++'s shared_ptr) by a local definition in glibc_compat.cpp.
// test/ops/glibc-floor.test.ts checks the result with objdump -T.
#pragma once
#if defined(__linux__) && defined(__x86_64__) && !defined(DVL_NO_GLIBC_COMPAT)
#include <features.h>
#if defined(__GLIBC__)
__asm__(".symver memcpy,memcpy@GLIBC_2.2.5");
__asm__(".symver exp,exp@GLIBC_2.2.5");
__asm__(".symver expf,expf@GLIBC_2.2.5");
__asm__(".symver pow,pow@GLIBC_2.2.5");
__asm__(".symver powf,powf@GLIBC_2.2.5");
__asm__(".symver log,log@GLIBC_2.2.5");
__asm__(".symver logf,logf@GLIBC_2.2.5");
__asm__(".symver log2,log2@GLIBC_2.2.5");
__asm__(".symver exp2,exp2@GLIBC_2.2.5");
__asm__(".symver dlopen,dlopen@GLIBC_2.2.5");
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
__asm__(".symver dlclose,dlclose@GLIBC_2.2.5");
__asm__(".symver dlerror,dlerror@GLIBC_2.2.5");
__asm__(".symver dladdr,dladdr@GLIBC_2.2.5");
#define DVL_GLIBC_COMPAT 1
#endif
#endif

#ifdef __cplusplus
#include <sys/stat.h>
#if defined(DVL_GLIBC_COMPAT)
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
// stat(2) without the stat@GLIBC_2.33 symbol: x86-64 glibc's struct stat is the kernel's.
static inline int dvl_path_stat(const char* path, struct stat* st) {
  return int(syscall(SYS_newfstatat, AT_FDCWD, path, st, 0));
}
#else
static inline int dvl_path_stat(const char* path, struct stat* st) { return ::stat(path, st); }
#endif
#endif
