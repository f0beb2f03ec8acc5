// attention_avx512_bf16.cpp — attention.cpp's inner loop (attention_kernel.h) built with the
// avx512_bf16 level's flags, for ops that ask for bf16 products (their bf16 attribute); the f32
// products otherwise, as attention_avx512.cpp.
#define DVL_ATTN_VW 16
#include "attention_kernel.h"

namespace dvl {

void attention_item_avx512_bf16(const AttnArgs& A, int64_t g, int64_t r0, int64_t r1, float* scratch) {
  attn_item_bf16(A, g, r0, r1, scratch);
}

}  // namespace dvl
