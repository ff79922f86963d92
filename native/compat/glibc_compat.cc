// glibc symbol-version floor for the shipped prebuild (linked only into the
// addon, with -Wl,--wrap=<symbol> for each symbol below; see CMakeLists.txt).
//
// Debian 12 links against glibc 2.36, so a plain build requires the versions it
// was linked with: pthread_* @GLIBC_2.34 (libpthread merged into libc), and the
// statically linked libstdc++/libgcc pull in __libc_single_threaded (2.32),
// _dl_find_object (2.35), getentropy (2.25) and arc4random (2.36). Each
// reference is redirected here and bound to the oldest version glibc still
// exports (the architecture's base version), or replaced by an equivalent
// built from old interfaces. `npm run check:glibc` / test/install/glibc.test.ts
// report what the .node still needs.
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#if defined(__x86_64__)
#define FL_GLIBC_BASE "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define FL_GLIBC_BASE "GLIBC_2.17"
#else
#error "glibc_compat.cc: unknown architecture (build with -DFLATENN_STATIC_RUNTIME=OFF)"
#endif

// Declare fl_old_<name> with the prototype of <name>, bound to <name>@BASE.
#define FL_OLD(ret, name, params)                                      \
  extern "C" ret fl_old_##name params;                                 \
  __asm__(".symver fl_old_" #name "," #name "@" FL_GLIBC_BASE);

FL_OLD(int, pthread_create, (pthread_t*, const pthread_attr_t*, void* (*)(void*), void*))
FL_OLD(int, pthread_join, (pthread_t, void**))
FL_OLD(int, pthread_detach, (pthread_t))
FL_OLD(int, pthread_once, (pthread_once_t*, void (*)(void)))
FL_OLD(int, pthread_key_create, (pthread_key_t*, void (*)(void*)))
FL_OLD(int, __pthread_key_create, (pthread_key_t*, void (*)(void*)))
FL_OLD(int, pthread_key_delete, (pthread_key_t))
FL_OLD(void*, pthread_getspecific, (pthread_key_t))
FL_OLD(int, pthread_setspecific, (pthread_key_t, const void*))
FL_OLD(int, pthread_mutex_trylock, (pthread_mutex_t*))

extern "C" {

__attribute__((visibility("hidden"))) int __wrap_pthread_create(pthread_t* t, const pthread_attr_t* a, void* (*f)(void*), void* arg) {
  return fl_old_pthread_create(t, a, f, arg);
}
__attribute__((visibility("hidden"))) int __wrap_pthread_join(pthread_t t, void** r) { return fl_old_pthread_join(t, r); }
__attribute__((visibility("hidden"))) int __wrap_pthread_detach(pthread_t t) { return fl_old_pthread_detach(t); }
__attribute__((visibility("hidden"))) int __wrap_pthread_once(pthread_once_t* o, void (*f)(void)) { return fl_old_pthread_once(o, f); }
__attribute__((visibility("hidden"))) int __wrap_pthread_key_create(pthread_key_t* k, void (*d)(void*)) { return fl_old_pthread_key_create(k, d); }
// libstdc++'s __gthread_active_p() tests this (weak) symbol for non-null: the
// wrapper is always defined, so libstdc++ always takes its thread-safe paths.
__attribute__((visibility("hidden"))) int __wrap___pthread_key_create(pthread_key_t* k, void (*d)(void*)) { return fl_old___pthread_key_create(k, d); }
__attribute__((visibility("hidden"))) int __wrap_pthread_key_delete(pthread_key_t k) { return fl_old_pthread_key_delete(k); }
__attribute__((visibility("hidden"))) void* __wrap_pthread_getspecific(pthread_key_t k) { return fl_old_pthread_getspecific(k); }
__attribute__((visibility("hidden"))) int __wrap_pthread_setspecific(pthread_key_t k, const void* v) { return fl_old_pthread_setspecific(k, v); }
__attribute__((visibility("hidden"))) int __wrap_pthread_mutex_trylock(pthread_mutex_t* m) { return fl_old_pthread_mutex_trylock(m); }

// glibc >= 2.32 sets this to 1 while the process has one thread; libstdc++
// then skips atomics. 0 ("maybe several threads") is always correct.
__attribute__((visibility("hidden"))) char __wrap___libc_single_threaded = 0;

// getrandom(2) through syscall(), which every glibc has.
static int fl_getrandom_all(void* buf, size_t len) {
  auto* p = static_cast<unsigned char*>(buf);
  while (len > 0) {
    const long n = syscall(SYS_getrandom, p, len, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);  // kernels before 3.17
      if (fd < 0) return -1;
      while (len > 0) {
        const ssize_t r = read(fd, p, len);
        if (r <= 0) { if (r < 0 && errno == EINTR) continue; close(fd); return -1; }
        p += r; len -= size_t(r);
      }
      close(fd);
      return 0;
    }
    p += n; len -= size_t(n);
  }
  return 0;
}

__attribute__((visibility("hidden"))) int __wrap_getentropy(void* buf, size_t len) {
  if (len > 256) { errno = EIO; return -1; }
  return fl_getrandom_all(buf, len);
}

__attribute__((visibility("hidden"))) uint32_t __wrap_arc4random(void) {
  uint32_t v = 0;
  if (fl_getrandom_all(&v, sizeof v) != 0) __builtin_trap();
  return v;
}

// libgcc's unwinder (GCC 12, glibc >= 2.35 headers) finds a frame's unwind
// tables with _dl_find_object and has no fallback when it is linked in. The
// same answer from dl_iterate_phdr (in every glibc): the object whose PT_LOAD
// segments contain pc, and its PT_GNU_EH_FRAME (.eh_frame_hdr) address.
struct FlFindCtx { uintptr_t pc; struct dl_find_object* out; bool found; };

static int fl_find_cb(struct dl_phdr_info* info, size_t, void* data) {
  auto* c = static_cast<FlFindCtx*>(data);
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  bool hit = false;
  const void* eh = nullptr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD) {
      const uintptr_t s = info->dlpi_addr + ph.p_vaddr, e = s + ph.p_memsz;
      if (s < lo) lo = s;
      if (e > hi) hi = e;
      if (c->pc >= s && c->pc < e) hit = true;
    } else if (ph.p_type == PT_GNU_EH_FRAME) {
      eh = reinterpret_cast<const void*>(info->dlpi_addr + ph.p_vaddr);
    }
  }
  if (!hit) return 0;
  std::memset(c->out, 0, sizeof *c->out);
  c->out->dlfo_map_start = reinterpret_cast<void*>(lo);
  c->out->dlfo_map_end = reinterpret_cast<void*>(hi);
  c->out->dlfo_link_map = nullptr;
  c->out->dlfo_eh_frame = const_cast<void*>(eh);
  c->found = true;
  return 1;
}

__attribute__((visibility("hidden"))) int __wrap__dl_find_object(void* pc, struct dl_find_object* result) {
  FlFindCtx c{reinterpret_cast<uintptr_t>(pc), result, false};
  dl_iterate_phdr(fl_find_cb, &c);
  return c.found ? 0 : -1;
}

}  // extern "C"
