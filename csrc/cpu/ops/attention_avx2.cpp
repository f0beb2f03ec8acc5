// attention_avx2.cpp — attention.cpp's inner loop (attention_kernel.h) built with the avx2
// level's flags (CMake and binding.gyp give *_avx2.cpp files those flags).
#define DVL_ATTN_VW 8
#include "attention_kernel.h"

namespace dvl {

void attention_item_avx2(const AttnArgs& A, int64_t g, int64_t r0, int64_t r1, float* scratch) {
  attn_item(A, g, r0, r1, scratch);
}

}  // namespace dvl
