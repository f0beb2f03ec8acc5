// attention_avx512.cpp — attention.cpp's inner loop (attention_kernel.h) built with the avx512
// level's flags (CMake and binding.gyp give *_avx512.cpp files those flags).
#define DVL_ATTN_VW 16
#include "attention_kernel.h"

namespace dvl {

void attention_item_avx512(const AttnArgs& A, int64_t g, int64_t r0, int64_t r1, float* scratch) {
  attn_item(A, g, r0, r1, scratch);
}

}  // namespace dvl
