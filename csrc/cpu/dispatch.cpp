// dispatch.cpp — pick the CPU kernel table once, from CPUID and the OS's saved-state mask.
//
// Built with baseline flags and without LTO: nothing here may be compiled to an instruction
// the CPU might lack (LTO could inline a kernel into this file). A CPU reporting AVX-512 is
// only trusted if XGETBV says the OS saves the zmm/opmask state.
#include <cstdlib>
#include <cstring>

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif

namespace dvl {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx2Vnni: return "avx2_vnni";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Bf16: return "avx512_bf16";
  }
  return "?";
}

bool isa_parse(const char* s, Isa* out) {
  for (int i = 0; i < kIsaCount; ++i)
    if (std::strcmp(s, isa_name(Isa(i))) == 0) {
      *out = Isa(i);
      return true;
    }
  return false;
}

#if defined(__x86_64__) || defined(_M_X64)
static uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}
#endif

// One bit per level this CPU and OS support, read once.
static unsigned supported_levels() {
  static const unsigned mask = [] {
    unsigned m = 1u << int(Isa::Scalar);
#if defined(__x86_64__) || defined(_M_X64)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return m;
    bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29), avx = c & (1u << 28);
    if (!osxsave || !avx) return m;
    uint64_t xcr0 = xgetbv0();
    bool ymm_os = (xcr0 & 0x6) == 0x6;
    bool zmm_os = (xcr0 & 0xe6) == 0xe6;
    if (!ymm_os) return m;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return m;
    bool avx2 = b & (1u << 5);
    bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30),
         avx512vl = b & (1u << 31);
    bool avx512vnni = c & (1u << 11);
    unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
    __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
    bool avxvnni = a1 & (1u << 4), avx512bf16 = a1 & (1u << 5);
    if (!(avx2 && fma && f16c)) return m;
    m |= 1u << int(Isa::Avx2);
    if (avxvnni) m |= 1u << int(Isa::Avx2Vnni);
    if (zmm_os && avx512f && avx512dq && avx512bw && avx512vl) {
      m |= 1u << int(Isa::Avx512);
      if (avx512bf16 && avx512vnni) m |= 1u << int(Isa::Avx512Bf16);
    }
#endif
    return m;
  }();
  return mask;
}

bool cpu_isa_supported(Isa isa) { return supported_levels() & (1u << int(isa)); }

Isa cpu_isa_detected() {
  for (int i = kIsaCount - 1; i > 0; --i)
    if (cpu_isa_supported(Isa(i))) return Isa(i);
  return Isa::Scalar;
}

const CpuKernels* cpu_kernels_for(Isa isa) {
  if (!cpu_isa_supported(isa)) return nullptr;
  switch (isa) {
    case Isa::Scalar: return &kCpuKernelsScalar;
#if defined(DVL_HAVE_X86_KERNELS)
    case Isa::Avx2: return &kCpuKernelsAvx2;
    case Isa::Avx2Vnni: return &kCpuKernelsAvx2Vnni;
    case Isa::Avx512: return &kCpuKernelsAvx512;
    case Isa::Avx512Bf16: return &kCpuKernelsAvx512Bf16;
#else
    default: return nullptr;
#endif
  }
  return nullptr;
}

const CpuKernels& cpu_kernels() {
  static const CpuKernels* chosen = [] {
    Isa best = cpu_isa_detected();
    const char* env = std::getenv("DIFFUSIONVL_CPU_ISA");
    Isa forced;
    if (env && *env && isa_parse(env, &forced) && int(forced) < int(best)) best = forced;
    // The forced level, or the highest supported one below it.
    for (int i = int(best); i >= 0; --i)
      if (const CpuKernels* k = cpu_kernels_for(Isa(i))) return k;
    return &kCpuKernelsScalar;
  }();
  return *chosen;
}

const char* cpu_build_info() {
#if defined(DVL_HAVE_X86_KERNELS)
  return "x86-64: scalar, avx2, avx2_vnni, avx512, avx512_bf16";
#else
  return "scalar only";
#endif
}

}  // namespace dvl
