// sample.cpp — confidence_remask (not written yet).
#include "ops.h"

namespace dvl {

void ops_register_sample(std::vector<OpDef>& t) { (void)t; }

}  // namespace dvl
