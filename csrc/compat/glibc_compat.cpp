// glibc_compat.cpp — see glibc_compat.h. The part the force-included .symver lines cannot do:
// references made inside the static libstdc++ archive (compiled without our header). The
// linker redirects them here with -Wl,--wrap=NAME (CMakeLists.txt, DVL_GLIBC_WRAPS), and each
// wrapper calls the GLIBC_2.2.5 version, or for functions glibc gained late (getentropy 2.25,
// arc4random 2.36, fstat64 as a symbol 2.33) does the system call itself.
#include "glibc_compat.h"

#if defined(DVL_GLIBC_COMPAT)
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

extern "C" {

// libstdc++ (headers and archive) reads this glibc ≥ 2.32 flag to skip atomic reference
// counting in single-threaded programs. Defined here, hidden, and 0 ("threads may exist"):
// the addon always takes the atomic path; its thread pool makes the process multi-threaded
// anyway.
__attribute__((visibility("hidden"))) char __libc_single_threaded = 0;

#define DVL_OLD(ret, name, params) \
  ret dvl_old_##name params;       \
  __asm__(".symver dvl_old_" #name "," #name "@GLIBC_2.2.5");

DVL_OLD(void*, memcpy, (void*, const void*, size_t))
DVL_OLD(int, pthread_create, (pthread_t*, const pthread_attr_t*, void* (*)(void*), void*))
DVL_OLD(int, pthread_join, (pthread_t, void**))
DVL_OLD(int, pthread_detach, (pthread_t))
DVL_OLD(int, pthread_once, (pthread_once_t*, void (*)(void)))
DVL_OLD(int, pthread_key_create, (pthread_key_t*, void (*)(void*)))
DVL_OLD(int, pthread_key_delete, (pthread_key_t))
DVL_OLD(void*, pthread_getspecific, (pthread_key_t))
DVL_OLD(int, pthread_setspecific, (pthread_key_t, const void*))

__attribute__((visibility("hidden"))) void* __wrap_memcpy(void* d, const void* s, size_t n) { return dvl_old_memcpy(d, s, n); }
__attribute__((visibility("hidden"))) int __wrap_pthread_create(pthread_t* t, const pthread_attr_t* a, void* (*f)(void*), void* arg) {
  return dvl_old_pthread_create(t, a, f, arg);
}
__attribute__((visibility("hidden"))) int __wrap_pthread_join(pthread_t t, void** r) { return dvl_old_pthread_join(t, r); }
__attribute__((visibility("hidden"))) int __wrap_pthread_detach(pthread_t t) { return dvl_old_pthread_detach(t); }
__attribute__((visibility("hidden"))) int __wrap_pthread_once(pthread_once_t* o, void (*f)(void)) { return dvl_old_pthread_once(o, f); }
__attribute__((visibility("hidden"))) int __wrap_pthread_key_create(pthread_key_t* k, void (*d)(void*)) { return dvl_old_pthread_key_create(k, d); }
// libstdc++'s __gthread_active_p() tests this (weak) symbol's address; pthreads is always there.
__attribute__((visibility("hidden"))) int __wrap___pthread_key_create(pthread_key_t* k, void (*d)(void*)) { return dvl_old_pthread_key_create(k, d); }
__attribute__((visibility("hidden"))) int __wrap_pthread_key_delete(pthread_key_t k) { return dvl_old_pthread_key_delete(k); }
__attribute__((visibility("hidden"))) void* __wrap_pthread_getspecific(pthread_key_t k) { return dvl_old_pthread_getspecific(k); }
__attribute__((visibility("hidden"))) int __wrap_pthread_setspecific(pthread_key_t k, const void* v) { return dvl_old_pthread_setspecific(k, v); }

// x86-64: struct stat64 is struct stat is the kernel's.
__attribute__((visibility("hidden"))) int __wrap_fstat64(int fd, struct stat64* st) { return int(syscall(SYS_fstat, fd, st)); }

static int fill_random(void* buf, size_t n) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    long r = syscall(SYS_getrandom, p, n, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += r;
    n -= size_t(r);
  }
  return 0;
}

__attribute__((visibility("hidden"))) int __wrap_getentropy(void* buf, size_t n) {
  if (n > 256) { errno = EIO; return -1; }
  return fill_random(buf, n);
}

__attribute__((visibility("hidden"))) uint32_t __wrap_arc4random(void) {
  uint32_t v = 0;
  fill_random(&v, sizeof v);
  return v;
}

}  // extern "C"
#endif
