// png_wrap.cpp — the PNG scanline unfilter of lib/image/png.ts's fast path, native.
//
// png.ts decodes small plain PNGs on the JS thread (node's zlib inflates); undoing the filters
// byte by byte in JS took ≈ 0.39 ms of a 150×200 RGB picture's 0.44 ms decode on the dev VM
// (Paeth's data-dependent choice defeats the branch predictor), the largest item of a request's
// picture reading. Same bytes as png.ts's `unfilter`, which stays the reference
// (test/unit/png-unfilter.test.ts compares both on random rows of every filter and channel count).
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "addon.h"

namespace dvl {

// raw: height rows of (1 filter byte + stride bytes); out: height × stride. bpp: bytes per pixel
// (1-8). False on a filter byte above 4. Row 0 has a zero row above it. out may be raw itself
// (in place): output byte y·stride + x is written after input byte y·(stride + 1) + 1 + x was
// read, and every input byte still to be read lies past it (y + 1 bytes further on); the rows
// above are final by then. Hence memmove for the straight copies.
static bool png_unfilter(const uint8_t* raw, size_t stride, size_t height, size_t bpp, uint8_t* out) {
  for (size_t y = 0; y < height; ++y) {
    const uint8_t* s = raw + y * (stride + 1) + 1;
    uint8_t* d = out + y * stride;
    const uint8_t* u = y > 0 ? d - stride : nullptr;
    const size_t lead = bpp < stride ? bpp : stride;
    switch (s[-1]) {
      case 0:
        std::memmove(d, s, stride);
        break;
      case 1:
        std::memmove(d, s, lead);
        for (size_t x = bpp; x < stride; ++x) d[x] = uint8_t(s[x] + d[x - bpp]);
        break;
      case 2:
        if (!u) std::memmove(d, s, stride);
        else for (size_t x = 0; x < stride; ++x) d[x] = uint8_t(s[x] + u[x]);
        break;
      case 3:
        if (!u) {
          std::memmove(d, s, lead);
          for (size_t x = bpp; x < stride; ++x) d[x] = uint8_t(s[x] + (d[x - bpp] >> 1));
        } else {
          for (size_t x = 0; x < lead; ++x) d[x] = uint8_t(s[x] + (u[x] >> 1));
          for (size_t x = bpp; x < stride; ++x) d[x] = uint8_t(s[x] + ((d[x - bpp] + u[x]) >> 1));
        }
        break;
      case 4:
        if (!u) {  // Paeth over a zero row is Sub
          std::memmove(d, s, lead);
          for (size_t x = bpp; x < stride; ++x) d[x] = uint8_t(s[x] + d[x - bpp]);
        } else {
          for (size_t x = 0; x < lead; ++x) d[x] = uint8_t(s[x] + u[x]);
          for (size_t x = bpp; x < stride; ++x) {
            // The neighbour (left a, up b, up-left c) closest to a + b − c; ties prefer a, then b.
            const int a = d[x - bpp], b = u[x], c = u[x - bpp];
            const int pa = std::abs(b - c), pb = std::abs(a - c), pc = std::abs(a + b - 2 * c);
            const int p = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
            d[x] = uint8_t(s[x] + p);
          }
        }
        break;
      default:
        return false;
    }
  }
  return true;
}

// pngUnfilter(raw: Uint8Array, stride, height, bpp, inPlace?) → Uint8Array of stride × height,
// or null when a row's filter byte is not 0-4. Throws on arguments that do not fit together.
// inPlace: the pixels overwrite raw and the result is raw's first stride × height bytes (no
// second picture-sized buffer: each one per request was external memory that V8 answered with
// full collections); raw is garbage after a null.
Napi::Value DvlAddon::JS_pngUnfilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "pngUnfilter(raw: Uint8Array, stride, height, bpp)").ThrowAsJavaScriptException();
    return env.Null();
  }
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  const double stride = info[1].As<Napi::Number>().DoubleValue(), height = info[2].As<Napi::Number>().DoubleValue(),
               bpp = info[3].As<Napi::Number>().DoubleValue();
  const bool ints = stride == double(int64_t(stride)) && height == double(int64_t(height)) && bpp == double(int64_t(bpp));
  if (ta.TypedArrayType() != napi_uint8_array || !ints || stride < 1 || height < 1 || bpp < 1 || bpp > 8 ||
      (stride + 1) * height != double(ta.ByteLength())) {
    Napi::RangeError::New(env, "pngUnfilter: raw must be a Uint8Array of height × (stride + 1) bytes, bpp 1-8").ThrowAsJavaScriptException();
    return env.Null();
  }
  uint8_t* raw = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  const size_t n = size_t(stride) * size_t(height);
  if (info.Length() > 4 && info[4].ToBoolean().Value()) {
    if (!png_unfilter(raw, size_t(stride), size_t(height), size_t(bpp), raw)) return env.Null();
    return Napi::Uint8Array::New(env, n, ta.ArrayBuffer(), ta.ByteOffset());
  }
  Napi::Uint8Array out = Napi::Uint8Array::New(env, n);
  if (!png_unfilter(raw, size_t(stride), size_t(height), size_t(bpp), out.Data())) return env.Null();
  return out;
}

}  // namespace dvl
