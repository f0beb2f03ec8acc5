// shape.cpp — reshape, gather_rows, scatter_rows, slice_cols, concat_rows (not written yet).
#include "ops.h"

namespace dvl {

void ops_register_shape(std::vector<OpDef>& t) { (void)t; }

}  // namespace dvl
