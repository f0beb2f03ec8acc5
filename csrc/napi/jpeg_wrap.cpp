// jpeg_wrap.cpp — a baseline JPEG decoder for small pictures, byte for byte what sharp gives.
//
// sharp (libvips over libjpeg-turbo) spends ≈ 0.85 ms of fixed cost on a 200 × 150 JPEG — a
// pipeline built and run on the libuv pool — where the decoding itself is ≈ 0.1 ms. This file
// decodes the common case on the JS thread and returns null for everything else (the caller
// then asks sharp): baseline sequential Huffman (SOF0/SOF1), 8-bit samples, one component
// (grey) or three (YCbCr: JFIF, or no Adobe marker and component ids 1, 2, 3), luma sampling
// 1×1, 2×1 or 2×2 with chroma 1×1, restart intervals; not progressive, arithmetic, 12-bit,
// CMYK, Adobe-transformed, Exif-rotated or ICC-profiled pictures, no data error of any kind,
// and no block whose IDCT leaves the range where libjpeg-turbo's SIMD IDCT (16-bit lanes: what
// sharp runs) equals the C algorithm reproduced here — valid pictures stay far inside it.
//
// What it reproduces (libjpeg's defaults, which libvips and Pillow keep; facts from the JPEG
// standard and the IJG library's documented algorithms, no code copied):
//   * IDCT "islow": the Loeffler–Ligtenberg–Moschytz integer IDCT with 13-bit constants, a
//     first pass over columns keeping 2 extra bits, the second over rows descaling by 18, the
//     columns whose AC terms are all zero (and in the second pass the rows) taking the DC
//     shortcut; results go through the range-limit table (+128, clamp, wrap-around beyond).
//     The arithmetic is 64-bit, as the library's JLONG.
//   * "Fancy" upsampling (for components more than 2 samples wide; narrower ones repeat): 2×1 — each output a 3:1 blend of its input and the nearer neighbour,
//     rounded +1 / +2 alternately, edge samples copied; 2×2 — the same across rows first
//     (3 · this row + the nearer row) then across columns with +8 / +7 and >> 4, the image's
//     top and bottom rows standing in for their missing neighbours. Edges at the component's
//     real width and height (ceil of the image's × its sampling), not at the padded blocks.
//   * YCbCr → RGB with 16-bit fixed-point tables (R = Y + 1.402·Cr', B = Y + 1.772·Cb',
//     G = Y − 0.34414·Cb' − 0.71414·Cr', each rounded as the library rounds them), clamped.
// test/unit/jpeg-fast.test.ts compares it with sharp on pictures sharp itself encodes at many
// sizes, qualities and both chroma samplings, on cjpeg's 2×1 / restart / 16-bit-table files, on
// corrupted copies (whatever decodes must equal sharp), and checks the refusals.
#include <cstdint>
#include <cstring>
#include <vector>

#include "addon.h"

namespace dvl {

namespace {

constexpr int kLook = 9;  // codes this long or shorter are found with one table lookup
constexpr int32_t kMaxDequant = 16383;  // see Jpeg::scan

struct Huff {
  // Canonical code: for each length L (1..16), codes [mincode[L], maxcode[L]] map to
  // values starting at valptr[L].
  int32_t mincode[17], maxcode[18], valptr[17];
  uint8_t vals[256];
  // For each kLook-bit window: the length of the code it starts with (0: a longer code) and
  // its value.
  uint8_t look_len[1 << kLook], look_val[1 << kLook];
  bool defined = false;
};

struct Comp {
  int id = 0, h = 1, v = 1, tq = 0, td = 0, ta = 0;
  int bw = 0, bh = 0;  // blocks across / down, MCU-padded
  int width = 0, height = 0;  // real sample width / height (ceil(image · h / hmax))
  std::vector<uint8_t> plane;  // bw·8 × bh·8 samples
  int pred = 0;
};

class Jpeg {
 public:
  Jpeg(const uint8_t* d, size_t n, double max_pixels) : p_(d), end_(d + n), max_pixels_(max_pixels) {}
  // RGB [H, W, 3] into out; false when the picture is outside what this decoder takes.
  bool decode(std::vector<uint8_t>& out, int& W, int& H);

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  double max_pixels_;
  uint16_t q_[4][64] = {};
  bool qdef_[4] = {};
  Huff dc_[4], ac_[4];
  std::vector<Comp> c_;
  int width_ = 0, height_ = 0, hmax_ = 1, vmax_ = 1, restart_ = 0;
  bool jfif_ = false, adobe_ = false, sof_ = false;
  // Entropy-coded segment reader: whole bytes (stuffed zeros removed) left-aligned in acc_,
  // cnt_ bits of them unread; filling stops at a marker or the end, past which the window
  // reads zeros and consuming fails.
  uint64_t acc_ = 0;
  int cnt_ = 0;
  void refill();
  int peek(int n) {
    if (cnt_ < n) refill();
    return int(acc_ >> (64 - n));
  }
  bool skip(int n) {
    if (cnt_ < n) {
      refill();
      if (cnt_ < n) return false;  // the data ran out (or a marker came) inside a code
    }
    acc_ <<= n;
    cnt_ -= n;
    return true;
  }

  bool u16(size_t at, int& v) const {
    if (p_ + at + 2 > end_) return false;
    v = (p_[at] << 8) | p_[at + 1];
    return true;
  }
  bool read_dqt(const uint8_t* s, size_t len);
  bool read_dht(const uint8_t* s, size_t len);
  bool read_sof(const uint8_t* s, size_t len);
  bool scan(const uint8_t* s, size_t len);
  int getbits(int n);
  int decode_huff(const Huff& h);
  bool block(Comp& cp, int16_t* coef);
  bool idct(const int16_t* coef, const uint16_t* q, uint8_t* out, int stride) const;
  void upsample_convert(std::vector<uint8_t>& out) const;
};

const uint8_t kZigzag[64] = {0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33, 40, 48,
                             41, 34, 27, 20, 13, 6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23,
                             30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63};

bool Jpeg::read_dqt(const uint8_t* s, size_t len) {
  size_t i = 0;
  while (i < len) {
    const int pq = s[i] >> 4, tq = s[i] & 15;
    if (tq > 3 || pq > 1) return false;
    ++i;
    for (int k = 0; k < 64; ++k) {
      if (i + (pq ? 2 : 1) > len) return false;
      q_[tq][kZigzag[k]] = pq ? uint16_t((s[i] << 8) | s[i + 1]) : s[i];
      i += pq ? 2 : 1;
    }
    qdef_[tq] = true;
  }
  return true;
}

bool Jpeg::read_dht(const uint8_t* s, size_t len) {
  size_t i = 0;
  while (i < len) {
    if (i + 17 > len) return false;
    const int tc = s[i] >> 4, th = s[i] & 15;
    if (tc > 1 || th > 3) return false;
    Huff& h = tc ? ac_[th] : dc_[th];
    int count = 0;
    uint8_t lens[17];
    for (int l = 1; l <= 16; ++l) count += lens[l] = s[i + l];
    i += 17;
    if (count > 256 || i + size_t(count) > len) return false;
    std::memcpy(h.vals, s + i, size_t(count));
    i += size_t(count);
    int32_t code = 0, k = 0;
    for (int l = 1; l <= 16; ++l) {
      h.valptr[l] = k;
      h.mincode[l] = code;
      code += lens[l];
      k += lens[l];
      h.maxcode[l] = lens[l] ? code - 1 : -1;
      if (code > (1 << l)) return false;  // more codes than this length holds
      code <<= 1;
    }
    h.maxcode[17] = INT32_MAX;
    std::memset(h.look_len, 0, sizeof h.look_len);
    for (int l = 1, k2 = 0; l <= kLook; ++l) {
      for (int n2 = 0; n2 < lens[l]; ++n2, ++k2) {
        const int code2 = h.mincode[l] + n2;
        for (int f = 0; f < (1 << (kLook - l)); ++f) {
          const int w = (code2 << (kLook - l)) | f;
          h.look_len[w] = uint8_t(l);
          h.look_val[w] = h.vals[k2];
        }
      }
    }
    h.defined = true;
  }
  return true;
}

bool Jpeg::read_sof(const uint8_t* s, size_t len) {
  if (sof_ || len < 6 || s[0] != 8) return false;  // 8-bit samples only
  height_ = (s[1] << 8) | s[2];
  width_ = (s[3] << 8) | s[4];
  const int n = s[5];
  if (height_ < 1 || width_ < 1 || (n != 1 && n != 3) || len < size_t(6 + 3 * n)) return false;
  if (double(width_) * double(height_) > max_pixels_) return false;  // before anything is allocated
  for (int k = 0; k < n; ++k) {
    Comp cp;
    cp.id = s[6 + 3 * k];
    cp.h = s[7 + 3 * k] >> 4;
    cp.v = s[7 + 3 * k] & 15;
    cp.tq = s[8 + 3 * k];
    if (cp.tq > 3) return false;
    c_.push_back(cp);
  }
  if (n == 1) {
    c_[0].h = c_[0].v = 1;  // a single component is never interleaved: one block per MCU
  } else {
    // Luma 1×1, 2×1 or 2×2 over chroma 1×1.
    if (c_[1].h != 1 || c_[1].v != 1 || c_[2].h != 1 || c_[2].v != 1) return false;
    const int h = c_[0].h, v = c_[0].v;
    if (!((h == 1 && v == 1) || (h == 2 && v == 1) || (h == 2 && v == 2))) return false;
  }
  hmax_ = c_[0].h;
  vmax_ = c_[0].v;
  const int mcux = (width_ + 8 * hmax_ - 1) / (8 * hmax_), mcuy = (height_ + 8 * vmax_ - 1) / (8 * vmax_);
  for (Comp& cp : c_) {
    cp.bw = mcux * cp.h;
    cp.bh = mcuy * cp.v;
    if (n == 1) {
      cp.bw = (width_ + 7) / 8;
      cp.bh = (height_ + 7) / 8;
    }
    cp.width = (width_ * cp.h + hmax_ - 1) / hmax_;
    cp.height = (height_ * cp.v + vmax_ - 1) / vmax_;
    cp.plane.assign(size_t(cp.bw) * 8 * size_t(cp.bh) * 8, 0);
  }
  sof_ = true;
  return true;
}

void Jpeg::refill() {
  while (cnt_ <= 56 && p_ < end_) {
    const uint8_t b = *p_;
    if (b == 0xFF) {
      if (p_ + 1 >= end_ || p_[1] != 0) return;  // a marker (left for the caller) or the end
      p_ += 2;
    } else {
      ++p_;
    }
    acc_ |= uint64_t(b) << (56 - cnt_);
    cnt_ += 8;
  }
}

int Jpeg::getbits(int n) {
  const int v = peek(n);
  return skip(n) ? v : -1;
}

int Jpeg::decode_huff(const Huff& h) {
  const int w = peek(kLook);
  if (const int l = h.look_len[w]) return skip(l) ? h.look_val[w] : -1;
  const int code16 = peek(16);
  for (int l = kLook + 1; l <= 16; ++l) {
    const int code = code16 >> (16 - l);
    if (h.maxcode[l] >= 0 && code <= h.maxcode[l] && code >= h.mincode[l])
      return skip(l) ? h.vals[h.valptr[l] + code - h.mincode[l]] : -1;
  }
  return -1;  // no such code
}

// x of `s` bits as the signed value it codes (the standard's EXTEND).
static inline int extend(int x, int s) { return x < (1 << (s - 1)) ? x - (1 << s) + 1 : x; }

bool Jpeg::block(Comp& cp, int16_t* coef) {
  std::memset(coef, 0, 64 * sizeof(int16_t));
  const Huff& dc = dc_[cp.td];
  const Huff& ac = ac_[cp.ta];
  int s = decode_huff(dc);
  if (s < 0 || s > 11) return false;
  int diff = 0;
  if (s) {
    const int x = getbits(s);
    if (x < 0) return false;
    diff = extend(x, s);
  }
  cp.pred += diff;
  coef[0] = int16_t(cp.pred);
  for (int k = 1; k < 64;) {
    const int rs = decode_huff(ac);
    if (rs < 0) return false;
    const int r = rs >> 4, sz = rs & 15;
    if (sz == 0) {
      if (r != 15) break;  // end of block
      k += 16;
      continue;
    }
    k += r;
    if (k > 63 || sz > 10) return false;
    const int x = getbits(sz);
    if (x < 0) return false;
    coef[kZigzag[k]] = int16_t(extend(x, sz));
    ++k;
  }
  return true;
}

// One 8-point pass of the islow IDCT (see the file comment): x in frequency order → y before
// its descaling (the first pass descales by CB − P1, the second by CB + P1 + 3).
constexpr int CB = 13, P1 = 2;
static inline void idct8(const int64_t* x, int64_t* y) {
  constexpr int32_t F0298 = 2446, F0390 = 3196, F0541 = 4433, F0765 = 6270, F0899 = 7373, F1175 = 9633, F1501 = 12299,
                    F1847 = 15137, F1961 = 16069, F2053 = 16819, F2562 = 20995, F3072 = 25172;
  // Even part.
  const int64_t e1 = (x[2] + x[6]) * F0541;
  const int64_t e2 = e1 + x[6] * -F1847, e3 = e1 + x[2] * F0765;
  const int64_t e0 = (x[0] + x[4]) * (1 << CB), e1b = (x[0] - x[4]) * (1 << CB);
  const int64_t t10 = e0 + e3, t13 = e0 - e3, t11 = e1b + e2, t12 = e1b - e2;
  // Odd part.
  int64_t tmp0 = x[7], tmp1 = x[5], tmp2 = x[3], tmp3 = x[1];
  int64_t z1 = tmp0 + tmp3, z2 = tmp1 + tmp2, z3 = tmp0 + tmp2, z4 = tmp1 + tmp3;
  const int64_t z5 = (z3 + z4) * F1175;
  tmp0 *= F0298;
  tmp1 *= F2053;
  tmp2 *= F3072;
  tmp3 *= F1501;
  z1 *= -F0899;
  z2 *= -F2562;
  z3 = z3 * -F1961 + z5;
  z4 = z4 * -F0390 + z5;
  tmp0 += z1 + z3;
  tmp1 += z2 + z4;
  tmp2 += z2 + z3;
  tmp3 += z1 + z4;
  y[0] = t10 + tmp3;
  y[7] = t10 - tmp3;
  y[1] = t11 + tmp2;
  y[6] = t11 - tmp2;
  y[2] = t12 + tmp1;
  y[5] = t12 - tmp1;
  y[3] = t13 + tmp0;
  y[4] = t13 - tmp0;
}

// The islow IDCT of a block, dequantizing as it reads; false for a block sharp must decode.
bool Jpeg::idct(const int16_t* coef, const uint16_t* q, uint8_t* out, int stride) const {
  auto descale = [](int64_t x, int n) { return int32_t((x + (int64_t(1) << (n - 1))) >> n); };
  int32_t ws[64];
  int64_t x[8], y[8];
  for (int c = 0; c < 8; ++c) {
    const int16_t* in = coef + c;
    const uint16_t* qt = q + c;
    if (!in[8] && !in[16] && !in[24] && !in[32] && !in[40] && !in[48] && !in[56]) {
      const int32_t dc = int32_t(int64_t(in[0]) * qt[0] * (1 << P1));
      for (int r = 0; r < 8; ++r) ws[r * 8 + c] = dc;
      continue;
    }
    for (int k = 0; k < 8; ++k) x[k] = int64_t(in[8 * k]) * qt[8 * k];
    idct8(x, y);
    for (int k = 0; k < 8; ++k) ws[k * 8 + c] = descale(y[k], CB - P1);
  }
  // libjpeg-turbo's SIMD IDCT (what sharp runs) keeps the first pass's results in 16 bits and
  // adds them in pairs: beyond ±16383 it no longer computes what this code (the C algorithm)
  // does. Valid data stays far inside (results of an 8-bit picture's block are within about
  // ±4500); corrupt data beyond goes to sharp.
  for (int k = 0; k < 64; ++k)
    if (ws[k] > kMaxDequant || ws[k] < -kMaxDequant) return false;
  // The library's range-limit table indexed by (value & 1023): value + 128 clamped to 0..255
  // for values in [−512, 511], wrapping beyond (only corrupt data gets there).
  static const struct Limit {
    uint8_t t[1024];
    Limit() {
      for (int k = 0; k < 1024; ++k) t[k] = uint8_t(k < 128 ? k + 128 : k < 512 ? 255 : k < 896 ? 0 : k - 896);
    }
  } lim;
  // The C algorithm wraps beyond ±512 (the table), the SIMD one saturates: such blocks go to sharp.
  bool wrapped = false;
  auto limit = [&wrapped](int64_t v) -> uint8_t {
    wrapped = wrapped || v < -512 || v > 511;
    return lim.t[v & 1023];
  };
  for (int r = 0; r < 8; ++r) {
    const int32_t* w = ws + r * 8;
    uint8_t* o = out + r * stride;
    if (!w[1] && !w[2] && !w[3] && !w[4] && !w[5] && !w[6] && !w[7]) {
      const uint8_t v = limit(descale(w[0], P1 + 3));
      for (int c = 0; c < 8; ++c) o[c] = v;
      continue;
    }
    for (int k = 0; k < 8; ++k) x[k] = w[k];
    idct8(x, y);
    for (int k = 0; k < 8; ++k) o[k] = limit(descale(y[k], CB + P1 + 3));
  }
  return !wrapped;
}

bool Jpeg::scan(const uint8_t* s, size_t len) {
  const int n = s[0];
  if (!sof_ || n != int(c_.size()) || len < size_t(1 + 2 * n + 3)) return false;  // interleaved, all components
  for (int k = 0; k < n; ++k) {
    Comp& cp = c_[size_t(k)];
    if (s[1 + 2 * k] != cp.id) return false;
    cp.td = s[2 + 2 * k] >> 4;
    cp.ta = s[2 + 2 * k] & 15;
    if (cp.td > 3 || cp.ta > 3 || !dc_[cp.td].defined || !ac_[cp.ta].defined || !qdef_[cp.tq]) return false;
  }
  if (s[1 + 2 * n] != 0 || s[2 + 2 * n] != 63 || s[3 + 2 * n] != 0) return false;  // Ss, Se, Ah/Al of a baseline scan
  const int mcux = n == 1 ? c_[0].bw : (width_ + 8 * hmax_ - 1) / (8 * hmax_);
  const int mcuy = n == 1 ? c_[0].bh : (height_ + 8 * vmax_ - 1) / (8 * vmax_);
  int16_t coef[64];
  int todo = restart_;
  int next_rst = 0;
  for (int my = 0; my < mcuy; ++my) {
    for (int mx = 0; mx < mcux; ++mx) {
      if (restart_ && todo == 0) {
        // Drop the interval's padding bits, expect RSTn, reset the predictions.
        acc_ = 0;
        cnt_ = 0;
        if (p_ + 2 > end_ || p_[0] != 0xFF || p_[1] != 0xD0 + next_rst) return false;
        p_ += 2;
        next_rst = (next_rst + 1) & 7;
        for (Comp& cp : c_) cp.pred = 0;
        todo = restart_;
      }
      for (Comp& cp : c_) {
        for (int by = 0; by < cp.v; ++by) {
          for (int bx = 0; bx < cp.h; ++bx) {
            if (!block(cp, coef)) return false;
            // Valid data keeps every dequantized coefficient within about ±1600 (an 8-bit block's
            // DCT is within ±1024, plus half a quantization step). libjpeg-turbo's SIMD IDCT
            // dequantizes in 16 bits, so corrupt data beyond that decodes differently from this
            // exact arithmetic: such pictures go to sharp.
            const uint16_t* qt = q_[cp.tq];
            for (int k = 0; k < 64; ++k) {
              const int32_t dq = int32_t(coef[k]) * qt[k];
              if (dq > kMaxDequant || dq < -kMaxDequant) return false;
            }
            const int X = mx * cp.h + bx, Y = my * cp.v + by;
            const int stride = cp.bw * 8;
            if (!idct(coef, q_[cp.tq], cp.plane.data() + size_t(Y) * 8 * size_t(stride) + size_t(X) * 8, stride)) return false;
          }
        }
      }
      if (restart_) --todo;
    }
  }
  return true;
}

void Jpeg::upsample_convert(std::vector<uint8_t>& out) const {
  const int W = width_, H = height_;
  out.assign(size_t(W) * size_t(H) * 3, 0);
  const Comp& y = c_[0];
  const int ys = y.bw * 8;
  if (c_.size() == 1) {
    for (int r = 0; r < H; ++r)
      for (int x = 0; x < W; ++x) {
        const uint8_t v = y.plane[size_t(r) * size_t(ys) + size_t(x)];
        uint8_t* o = &out[(size_t(r) * size_t(W) + size_t(x)) * 3];
        o[0] = o[1] = o[2] = v;
      }
    return;
  }
  // Chroma planes brought to the image's size (fancy upsampling, see the file comment).
  std::vector<uint8_t> cb(size_t(W) * size_t(H)), cr(size_t(W) * size_t(H));
  for (int ci = 1; ci <= 2; ++ci) {
    const Comp& c = c_[size_t(ci)];
    std::vector<uint8_t>& dst = ci == 1 ? cb : cr;
    const int cs = c.bw * 8, cw = c.width, ch = c.height;
    const uint8_t* P = c.plane.data();
    if (hmax_ == 1 && vmax_ == 1) {
      for (int r = 0; r < H; ++r) std::memcpy(&dst[size_t(r) * size_t(W)], P + size_t(r) * size_t(cs), size_t(W));
      continue;
    }
    std::vector<int> colsum(static_cast<size_t>(cw));
    std::vector<uint8_t> row(size_t(cw) * 2);
    for (int r = 0; r < H; ++r) {
      const int sr = vmax_ == 2 ? r / 2 : r;
      const uint8_t* in0 = P + size_t(sr) * size_t(cs);
      uint8_t* o = &dst[size_t(r) * size_t(W)];
      if (cw <= 2) {  // the library upsamples 1-2 samples wide by repeating them
        for (int x = 0; x < W; ++x) o[x] = in0[x / 2];
        continue;
      }
      if (vmax_ == 1) {  // 2×1
        // Outputs 2i, 2i+1 from input i; only the first W are kept.
        row[0] = in0[0];
        row[1] = uint8_t((in0[0] * 3 + in0[1] + 2) >> 2);
        for (int i = 1; i < cw - 1; ++i) {
          const int v = in0[i] * 3;
          row[size_t(2 * i)] = uint8_t((v + in0[i - 1] + 1) >> 2);
          row[size_t(2 * i + 1)] = uint8_t((v + in0[i + 1] + 2) >> 2);
        }
        row[size_t(2 * cw - 2)] = uint8_t((in0[cw - 1] * 3 + in0[cw - 2] + 1) >> 2);
        row[size_t(2 * cw - 1)] = in0[cw - 1];
        std::memcpy(o, row.data(), size_t(W));
        continue;
      }
      // 2×2: the nearer row is above for even output rows, below for odd ones; the picture's
      // first and last chroma rows stand in for their missing neighbours.
      const int nr = (r % 2 == 0) ? (sr > 0 ? sr - 1 : 0) : (sr + 1 < ch ? sr + 1 : ch - 1);
      const uint8_t* in1 = P + size_t(nr) * size_t(cs);
      for (int i = 0; i < cw; ++i) colsum[size_t(i)] = in0[i] * 3 + in1[i];
      {
        row[0] = uint8_t((colsum[0] * 4 + 8) >> 4);
        row[1] = uint8_t((colsum[0] * 3 + colsum[1] + 7) >> 4);
        for (int i = 1; i < cw - 1; ++i) {
          row[size_t(2 * i)] = uint8_t((colsum[size_t(i)] * 3 + colsum[size_t(i - 1)] + 8) >> 4);
          row[size_t(2 * i + 1)] = uint8_t((colsum[size_t(i)] * 3 + colsum[size_t(i + 1)] + 7) >> 4);
        }
        row[size_t(2 * cw - 2)] = uint8_t((colsum[size_t(cw - 1)] * 3 + colsum[size_t(cw - 2)] + 8) >> 4);
        row[size_t(2 * cw - 1)] = uint8_t((colsum[size_t(cw - 1)] * 4 + 7) >> 4);
      }
      std::memcpy(o, row.data(), size_t(W));
    }
  }
  // YCbCr → RGB, the library's tables.
  int32_t cr_r[256], cb_b[256], cr_g[256], cb_g[256];
  constexpr int SB = 16;
  constexpr int32_t HALF = 1 << (SB - 1);
  auto fix = [](double x) { return int32_t(x * (1 << SB) + 0.5); };
  for (int i = 0; i < 256; ++i) {
    const int32_t x = i - 128;
    cr_r[i] = (fix(1.40200) * x + HALF) >> SB;
    cb_b[i] = (fix(1.77200) * x + HALF) >> SB;
    cr_g[i] = -fix(0.71414) * x;
    cb_g[i] = -fix(0.34414) * x + HALF;
  }
  auto clamp = [](int32_t v) { return uint8_t(v < 0 ? 0 : v > 255 ? 255 : v); };
  for (int r = 0; r < H; ++r) {
    const uint8_t* yy = y.plane.data() + size_t(r) * size_t(ys);
    const uint8_t* b = &cb[size_t(r) * size_t(W)];
    const uint8_t* rr = &cr[size_t(r) * size_t(W)];
    uint8_t* o = &out[size_t(r) * size_t(W) * 3];
    for (int x = 0; x < W; ++x) {
      const int32_t Y = yy[x];
      o[3 * x] = clamp(Y + cr_r[rr[x]]);
      o[3 * x + 1] = clamp(Y + ((cb_g[b[x]] + cr_g[rr[x]]) >> SB));
      o[3 * x + 2] = clamp(Y + cb_b[b[x]]);
    }
  }
}

bool Jpeg::decode(std::vector<uint8_t>& out, int& W, int& H) {
  if (end_ - p_ < 4 || p_[0] != 0xFF || p_[1] != 0xD8) return false;
  p_ += 2;
  bool scanned = false, eoi = false;
  while (p_ + 2 <= end_) {
    if (p_[0] != 0xFF) return false;
    const uint8_t m = p_[1];
    if (m == 0xFF) { ++p_; continue; }  // fill byte
    if (m == 0xD9) { eoi = true; break; }
    int len;
    if (!u16(2, len) || len < 2 || p_ + 2 + len > end_) return false;
    const uint8_t* s = p_ + 4;
    const size_t n = size_t(len - 2);
    p_ += 2 + len;
    switch (m) {
      case 0xC0: case 0xC1: if (!read_sof(s, n)) return false; break;
      case 0xC4: if (!read_dht(s, n)) return false; break;
      case 0xDB: if (!read_dqt(s, n)) return false; break;
      case 0xDD: if (n < 2) return false; restart_ = (s[0] << 8) | s[1]; break;
      case 0xE0: if (n >= 5 && std::memcmp(s, "JFIF", 5) == 0) jfif_ = true; break;
      case 0xE1: if (n >= 6 && std::memcmp(s, "Exif\0\0", 6) == 0) return false; break;  // may rotate: sharp's job
      case 0xE2: if (n >= 12 && std::memcmp(s, "ICC_PROFILE", 12) == 0) return false; break;  // a colour profile: sharp's
      case 0xEE: adobe_ = true; break;
      case 0xDA: {
        if (scanned || !scan(s, n)) return false;  // one scan only (progressive and multi-scan: sharp)
        scanned = true;
        break;
      }
      default:
        if ((m >= 0xC2 && m <= 0xCF) || m == 0xDC || m == 0xDE || m == 0xDF) return false;  // other frames
        break;  // APPn, COM: skipped
    }
  }
  if (!scanned || !eoi) return false;  // without its end marker libvips calls the file truncated
  // Three components are YCbCr under JFIF, or with no Adobe marker and ids 1, 2, 3 (the
  // library's other guesses — RGB ids, Adobe transforms — go to sharp).
  if (c_.size() == 3 && !jfif_ && (adobe_ || c_[0].id != 1 || c_[1].id != 2 || c_[2].id != 3)) return false;
  W = width_;
  H = height_;
  upsample_convert(out);
  return true;
}

}  // namespace

// jpegDecode(bytes: Uint8Array, maxPixels) → { data: Uint8Array RGB [H, W, 3], width, height },
// or null when this decoder does not take the picture (see the file comment: the caller asks
// sharp then), or when it has more than maxPixels pixels.
Napi::Value DvlAddon::JS_jpegDecode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "jpegDecode(bytes: Uint8Array, maxPixels)").ThrowAsJavaScriptException();
    return env.Null();
  }
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(env, "jpegDecode: bytes must be a Uint8Array").ThrowAsJavaScriptException();
    return env.Null();
  }
  const double maxPixels = info[1].As<Napi::Number>().DoubleValue();
  const uint8_t* d = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  std::vector<uint8_t> rgb;
  int W = 0, H = 0;
  try {
    Jpeg j(d, ta.ByteLength(), maxPixels);
    if (!j.decode(rgb, W, H)) return env.Null();
  } catch (const std::bad_alloc&) {
    return env.Null();
  }
  Napi::Object o = Napi::Object::New(env);
  Napi::Uint8Array data = Napi::Uint8Array::New(env, rgb.size());
  std::memcpy(data.Data(), rgb.data(), rgb.size());
  o.Set("data", data);
  o.Set("width", double(W));
  o.Set("height", double(H));
  return o;
}

}  // namespace dvl
