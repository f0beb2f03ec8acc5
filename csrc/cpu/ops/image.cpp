// image.cpp — image_resize (Pillow-exact bicubic) (not written yet).
#include "ops.h"

namespace dvl {

void ops_register_image(std::vector<OpDef>& t) { (void)t; }

}  // namespace dvl
