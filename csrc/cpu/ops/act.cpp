// act.cpp — silu, swiglu, gelu, gelu_tanh, softmax (not written yet).
#include "ops.h"

namespace dvl {

void ops_register_act(std::vector<OpDef>& t) { (void)t; }

}  // namespace dvl
